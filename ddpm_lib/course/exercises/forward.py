"""Checkers for notebook 01 (the forward process).

- ``check_q_step(fn)``: ``fn(x_prev, noise, betas, t) -> x_t``, one step of the chain,
  x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise (Ho et al. 2020, eq. 2).
- ``check_posterior(fn)``: ``fn(x0, x_t, betas, t) -> (mean, variance)`` of q(x_{t-1} | x_t, x_0)
  (eqs. 6-7): mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,
  variance = (1 - abar_{t-1}) / (1 - abar_t) beta_t, with abar_{t-1} = 1 at t = 0.
- ``check_add_noise(fn)`` tests a student's ``fn(x0, noise, betas, t) -> x_t`` that samples
q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al. 2020, eq. 4), where
alpha_bar_t = prod_{s <= t} (1 - beta_s) and ``t`` holds 0-based timesteps (index 0 = the paper's step 1).
Every function takes ``t`` last, after the schedule, as :mod:`ddpm_lib.diffusion.forward` does
(``add_noise(schedule, x0, noise, t)``).

The reference below is written independently of :mod:`ddpm_lib.diffusion.forward`: a float64 loop over the
samples, with alpha_bar computed as an explicit product. When the answer is wrong, the checker compares
it with the results of the usual mistakes and names the one it matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ddpm_lib.course.exercises import (
    ExerciseError,
    call_student,
    call_t_last,
    check_tensor,
    exercise,
    passed,
)

__all__ = ["check_add_noise", "check_posterior", "check_q_step"]

NAME = "add_noise"


def _alpha_bar(betas: torch.Tensor, t: int) -> float:
    """prod_{s=0..t} (1 - beta_s), as a plain float64 product (t may be -1: the empty product, 1)."""
    out = 1.0
    for s in range(t + 1):
        out *= 1.0 - float(betas[s])
    return out


def _per_sample(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, coefs) -> torch.Tensor:
    """Build x_t sample by sample: out[i] = a_i * x0[i] + b_i * noise[i], with (a_i, b_i) = coefs(t_i)."""
    x0d, nd = x0.double(), noise.double()
    rows = []
    for i, ti in enumerate(t.tolist()):
        a, b = coefs(ti)
        rows.append(a * x0d[i] + b * nd[i])
    return torch.stack(rows).to(x0.dtype)


def reference_add_noise(x0: torch.Tensor, noise: torch.Tensor, betas: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The right answer: sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise, one sample at a time."""

    def coefs(ti):
        ab = _alpha_bar(betas, ti)
        return math.sqrt(ab), math.sqrt(1.0 - ab)

    return _per_sample(x0, noise, t, coefs)


def _mistakes(x0, noise, t, betas):
    """(hint, wrong x_t) for the usual mistakes, most specific first."""
    T = betas.shape[0]

    def with_coefs(fn):
        return _per_sample(x0, noise, t, fn)

    def ab(ti):
        return _alpha_bar(betas, ti)

    yield (
        "you used the one-step alpha_t = 1 - beta_t where eq. 4 needs the cumulative product "
        "alpha_bar_t = (1 - beta_0)(1 - beta_1)...(1 - beta_t) (torch.cumprod).",
        with_coefs(lambda ti: (math.sqrt(1 - float(betas[ti])), math.sqrt(float(betas[ti])))),
    )
    def prod_betas(ti):
        out = 1.0
        for s in range(ti + 1):
            out *= float(betas[s])
        return out

    yield (
        "alpha_bar is the cumulative product of (1 - beta), not of beta: torch.cumprod(betas, 0) multiplies the "
        "small betas together and is ~0 from the first steps on. Use torch.cumprod(1 - betas, 0).",
        with_coefs(lambda ti: (math.sqrt(prod_betas(ti)), math.sqrt(1 - prod_betas(ti)))),
    )
    yield (
        "the coefficients need square roots: x_t = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) noise "
        "(the *variance* of x_t is 1 - alpha_bar_t, so the noise is scaled by its square root).",
        with_coefs(lambda ti: (ab(ti), 1 - ab(ti))),
    )
    yield (
        "the noise term is missing its square root: scale the noise by sqrt(1 - alpha_bar_t), not 1 - alpha_bar_t.",
        with_coefs(lambda ti: (math.sqrt(ab(ti)), 1 - ab(ti))),
    )
    yield (
        "the x0 term is missing its square root: scale x0 by sqrt(alpha_bar_t), not alpha_bar_t.",
        with_coefs(lambda ti: (ab(ti), math.sqrt(1 - ab(ti)))),
    )
    yield (
        "x0 and noise are swapped: x0 gets sqrt(alpha_bar_t) (close to 1 for small t) and the noise "
        "gets sqrt(1 - alpha_bar_t).",
        with_coefs(lambda ti: (math.sqrt(1 - ab(ti)), math.sqrt(ab(ti)))),
    )
    yield (
        "you wrote sqrt(1 - alpha_bar_t) for the noise as sqrt(beta_t) (beta is the *one-step* variance); "
        "the accumulated noise variance is 1 - alpha_bar_t.",
        with_coefs(lambda ti: (math.sqrt(ab(ti)), math.sqrt(float(betas[ti])))),
    )
    yield (
        "alpha_bars[t - 1] at t = 0 is alpha_bars[-1], the LAST entry (Python's negative indexing), not the "
        "value for step 0: with 0-based t, alpha_bars = torch.cumprod(1 - betas, 0) and alpha_bars[t] is already "
        "the right one (it includes beta_t).",
        with_coefs(lambda ti: (math.sqrt(ab(ti - 1 if ti > 0 else T - 1)), math.sqrt(1 - ab(ti - 1 if ti > 0 else T - 1)))),
    )
    yield (
        "off by one in t: index t is the 0-based step, so alpha_bar_t = prod_{s=0..t} (1 - beta_s) "
        "includes beta_t itself (alpha_bars = torch.cumprod(1 - betas, 0); use alpha_bars[t]).",
        with_coefs(lambda ti: (math.sqrt(ab(ti - 1)), math.sqrt(1 - ab(ti - 1)))),
    )
    yield (
        "off by one in t: you used alpha_bar_{t+1}; with 0-based t, alpha_bars[t] = torch.cumprod(1 - betas, 0)[t].",
        with_coefs(lambda ti: (math.sqrt(ab(min(ti + 1, T - 1))), math.sqrt(1 - ab(min(ti + 1, T - 1))))),
    )
    yield (
        "alpha_bar is a product, not 1 - (sum of betas): 1 - sum(beta) is only its first-order approximation "
        "and goes negative for large t. Use torch.cumprod(1 - betas, 0).",
        with_coefs(lambda ti: (math.sqrt(max(1 - float(betas[: ti + 1].sum()), 0.0)),
                               math.sqrt(min(float(betas[: ti + 1].sum()), 1.0)))),
    )
    t0 = int(t[0])
    yield (
        "every sample got the timestep of the first one: index the schedule with the whole tensor "
        "(alpha_bars[t], shape (B,)) and reshape to (B, 1, 1, 1) so each sample uses its own t.",
        with_coefs(lambda ti: (math.sqrt(ab(t0)), math.sqrt(1 - ab(t0)))),
    )


def _cases(dtype=torch.float32):
    """(description, x0, noise, t, betas): several T, batch sizes and shapes, t covering 0 and T-1."""
    g = torch.Generator().manual_seed(1234)
    linear = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    # a short schedule with big, uneven betas: alpha_t and alpha_bar_t differ a lot from the first steps on
    short = 0.02 + 0.3 * torch.rand(12, generator=g, dtype=torch.float64)
    cases = []
    for desc, betas, shape, ts in [
        ("T=12, batch of 4 images 1x5x7", short, (4, 1, 5, 7), [3, 0, 11, 6]),
        ("T=1000 linear, batch of 5 images 3x4x4", linear, (5, 3, 4, 4), [999, 10, 500, 0, 250]),
        ("T=12, batch of 1 image 2x3x3", short, (1, 2, 3, 3), [7]),
        ("T=1000 linear, batch of 3 images 1x8x8", linear, (3, 1, 8, 8), [123, 700, 42]),
    ]:
        x0 = torch.rand(shape, generator=g, dtype=dtype) * 2 - 1
        noise = torch.randn(shape, generator=g, dtype=dtype)
        cases.append((desc, x0, noise, torch.tensor(ts, dtype=torch.long), betas.to(dtype)))
    return cases


def _broadcast_hint(msg: str) -> str:
    if "size of tensor" in msg or "must match" in msg or "broadcast" in msg:
        return (
            " Hint: this looks like a broadcasting problem. alpha_bars[t] has shape (B,); reshape it to "
            "(B, 1, 1, 1) (e.g. alpha_bars[t].view(-1, 1, 1, 1) or [:, None, None, None]) before multiplying "
            "images of shape (B, C, H, W)."
        )
    if "index" in msg and "out of" in msg:
        return " Hint: t holds 0-based steps 0..T-1, so index alpha_bars[t] directly (no t - 1 or t + 1)."
    return ""


@exercise(reference=reference_add_noise, library=('ddpm_lib.diffusion.forward.add_noise',))
def check_add_noise(fn: Callable) -> None:
    """Check ``fn(x0, noise, betas, t)`` against q(x_t | x_0) (Ho et al. eq. 4) on several inputs."""
    for desc, x0, noise, t, betas in _cases():
        x0_before, noise_before, t_before, betas_before = x0.clone(), noise.clone(), t.clone(), betas.clone()
        try:
            got = call_t_last(NAME, fn, (x0, noise, betas, t), old_order=(0, 1, 3, 2),
                              expected=reference_add_noise(x0, noise, betas, t),
                              signature="def add_noise_mine(x0, noise, betas, t)")
        except ExerciseError as e:
            raise ExerciseError(f"{e} (input: {desc}).{_broadcast_hint(str(e))}") from None
        if not (torch.equal(x0, x0_before) and torch.equal(noise, noise_before) and torch.equal(t, t_before)
                and torch.equal(betas, betas_before)):
            raise ExerciseError(
                f"{NAME}: your function changed its inputs in place (input: {desc}). Build a new tensor "
                "instead of using +=, *= or .mul_()."
            )
        expected = reference_add_noise(x0, noise, betas, t)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all():
            again = call_student(NAME, fn, x0, noise, betas, t)
            if isinstance(again, torch.Tensor) and not torch.allclose(got, again):
                raise ExerciseError(
                    f"{NAME}: two calls with the same inputs gave different results. Use the `noise` argument; "
                    "do not draw fresh noise with torch.randn inside the function."
                )
            if not torch.allclose(got.detach().double(), expected.double(), atol=1e-5, rtol=1e-4):
                for hint, wrong in _mistakes(x0, noise, t, betas):
                    if torch.allclose(got.detach().double(), wrong.double(), atol=1e-5, rtol=1e-4):
                        raise ExerciseError(f"{NAME}: wrong values (input: {desc}). Hint: {hint}")
        check_tensor(
            f"{NAME} (input: {desc})",
            got,
            expected,
            atol=1e-5,
            rtol=1e-4,
            hint="eq. 4 needs alpha_bar_t, the cumulative product (torch.cumprod) of (1 - beta) up to and including the "
            "0-based step t, one value per image, shaped to broadcast over channels and pixels.",
        )
    passed(NAME, "Your x_t matches Ho et al.'s eq. 4 for every batch size, shape and t tried.")


# --- one step of the chain (eq. 2) ----------------------------------------------------------------


def reference_q_step(x_prev: torch.Tensor, noise: torch.Tensor, betas: torch.Tensor, t: int) -> torch.Tensor:
    """x_t = sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise (eq. 2; 0-based int t), in float64, returned in x_prev's dtype."""
    b = float(betas[int(t)])
    return (math.sqrt(1.0 - b) * x_prev.double() + math.sqrt(b) * noise.double()).to(x_prev.dtype)


def _step_mistakes(x_prev, t, noise, betas):
    T = betas.shape[0]
    b = float(betas[t])
    ab = _alpha_bar(betas, t)
    b_prev = float(betas[t - 1 if t > 0 else T - 1])
    x, n = x_prev.double(), noise.double()
    yield ("betas[t - 1] is the previous step's beta (and at t = 0 it is betas[-1], the LAST one, by Python's "
           "negative indexing): with 0-based t, step t uses betas[t]."), math.sqrt(1 - b_prev) * x + math.sqrt(b_prev) * n
    yield ("that is eq. 4, the jump from x_0 to x_t, applied to x_{t-1}: one step uses beta_t alone, "
           "sqrt(1 - beta_t) x_{t-1} + sqrt(beta_t) noise, not the cumulative alpha_bar_t."), \
        math.sqrt(ab) * x + math.sqrt(1 - ab) * n
    yield ("the coefficients are standard deviations: sqrt(1 - beta_t) and sqrt(beta_t) "
           "(beta_t is the VARIANCE of the added noise)."), (1 - b) * x + b * n
    yield ("the noise term needs a square root: beta_t is the variance of the noise, so scale it by sqrt(beta_t)."), \
        math.sqrt(1 - b) * x + b * n
    yield ("the x_{t-1} term needs a square root: scale it by sqrt(1 - beta_t)."), (1 - b) * x + math.sqrt(b) * n
    yield ("x_{t-1} must be shrunk by sqrt(1 - beta_t): without it the variance grows by beta_t at every step "
           "(a 'variance-exploding' process), instead of staying at 1."), x + math.sqrt(b) * n
    yield ("x_{t-1} and the noise are swapped: x_{t-1} gets sqrt(1 - beta_t) (close to 1), the noise sqrt(beta_t)."), \
        math.sqrt(b) * x + math.sqrt(1 - b) * n


@exercise(reference=reference_q_step, library=('ddpm_lib.diffusion.forward.q_step',))
def check_q_step(fn: Callable) -> None:
    """Check ``fn(x_prev, noise, betas, t) -> x_t`` (eq. 2) for t = 0, a middle t and T - 1, on two schedules."""
    name = "q_step"
    g = torch.Generator().manual_seed(11)
    short = 0.02 + 0.3 * torch.rand(12, generator=g, dtype=torch.float64)
    linear = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    for betas, shape, ts in [(short, (4, 1, 5, 7), (0, 5, 11)), (linear, (2, 3, 4, 4), (0, 1, 499, 999))]:
        for t in ts:
            desc = f"T={betas.shape[0]}, t={t}, x_prev of shape {shape}"
            x_prev = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
            noise = torch.randn(shape, generator=g, dtype=torch.float64)
            before = (x_prev.clone(), noise.clone(), betas.clone())
            got = call_t_last(name, fn, (x_prev, noise, betas, t), old_order=(0, 3, 1, 2),
                              expected=reference_q_step(x_prev, noise, betas, t),
                              signature="def q_step_mine(x_prev, noise, betas, t)")
            if not (torch.equal(x_prev, before[0]) and torch.equal(noise, before[1]) and torch.equal(betas, before[2])):
                raise ExerciseError(f"{name}: your function changed its inputs in place ({desc}). Build a new tensor "
                                    "instead of using +=, *= or .mul_().")
            if isinstance(got, np.ndarray):
                got = torch.from_numpy(got)
            expected = reference_q_step(x_prev, noise, betas, t)
            if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all() and not (
                    torch.allclose(got.detach().double(), expected, atol=1e-9, rtol=1e-6)):
                for hint, wrong in _step_mistakes(x_prev, t, noise, betas):
                    if torch.allclose(got.detach().double(), wrong, atol=1e-9, rtol=1e-6):
                        raise ExerciseError(f"{name}: wrong values ({desc}). Hint: {hint}")
            check_tensor(f"{name} ({desc})", got, expected, atol=1e-7, rtol=1e-5,
                         hint="x_t = sqrt(1 - betas[t]) * x_prev + sqrt(betas[t]) * noise, with the 0-based t as given.")
    passed(name, "One step of eq. 2: shrink by sqrt(1 - beta_t), add noise of variance beta_t.")


# --- the posterior q(x_{t-1} | x_t, x_0) (eqs. 6-7) ------------------------------------------------


def _posterior_parts(betas: torch.Tensor, t: int, ab_prev: float | None = None):
    """(x0 coefficient, x_t coefficient, variance) of eq. 7, in float64 (ab_prev overridable for the mistakes)."""
    b = float(betas[t])
    ab_t = _alpha_bar(betas, t)
    ab_prev = _alpha_bar(betas, t - 1) if ab_prev is None else ab_prev
    return (math.sqrt(ab_prev) * b / (1 - ab_t), math.sqrt(1 - b) * (1 - ab_prev) / (1 - ab_t),
            (1 - ab_prev) / (1 - ab_t) * b)


def reference_posterior(x0: torch.Tensor, x_t: torch.Tensor, betas: torch.Tensor, t: int):
    """(mean, variance) of q(x_{t-1} | x_t, x_0), Ho et al. eqs. 6-7, 0-based int t (abar_{t-1} = 1 at t = 0).

    The mean has x0's shape and dtype; the variance is a Python float (the same for every pixel).
    """
    c0, ct, var = _posterior_parts(betas, int(t))
    return (c0 * x0.double() + ct * x_t.double()).to(x0.dtype), var


def _posterior_mean_mistakes(x0, x_t, t, betas):
    T = betas.shape[0]
    b = float(betas[t])
    ab_t, ab_prev = _alpha_bar(betas, t), _alpha_bar(betas, t - 1)
    x0d, xtd = x0.double(), x_t.double()
    if t == 0:
        c0, ct, _ = _posterior_parts(betas, t, ab_prev=_alpha_bar(betas, T - 1))
        yield ("alpha_bars[t - 1] at t = 0 is alpha_bars[-1], the LAST entry (Python's negative indexing). At t = 0 "
               "there is no earlier step: abar_{t-1} is the empty product, 1 (so the mean is x_0 itself and the "
               "variance 0). Use `alpha_bars[t - 1] if t > 0 else 1.0`."), c0 * x0d + ct * xtd
    c0, ct, _ = _posterior_parts(betas, t)
    yield ("the x_0 and x_t weights are swapped: x_0 gets sqrt(abar_{t-1}) beta_t / (1 - abar_t), "
           "x_t gets sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)."), ct * x0d + c0 * xtd
    c0w, ctw, _ = _posterior_parts(betas, t, ab_prev=ab_t)
    yield ("the numerators use abar_{t-1}, the product up to the PREVIOUS step (1 at t = 0), not abar_t."), \
        c0w * x0d + ctw * xtd
    yield ("take square roots: sqrt(abar_{t-1}) in the x_0 weight and sqrt(alpha_t) in the x_t weight."), \
        (ab_prev * b / (1 - ab_t)) * x0d + ((1 - b) * (1 - ab_prev) / (1 - ab_t)) * xtd
    yield ("the x_t weight uses alpha_t = 1 - beta_t (one step), not abar_t: sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t)."), \
        c0 * x0d + (math.sqrt(ab_t) * (1 - ab_prev) / (1 - ab_t)) * xtd


def _variance_hint(var_got: float, t: int, betas: torch.Tensor) -> str:
    T = betas.shape[0]
    b = float(betas[t])
    _, _, var = _posterior_parts(betas, t)
    candidates = [
        (b, "beta_t is the variance of the FORWARD step q(x_t | x_{t-1}); the posterior's is smaller: "
            "beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) * beta_t (eq. 7)."),
        (math.sqrt(var), "return the VARIANCE beta-tilde_t, not its square root (the standard deviation)."),
    ]
    if t == 0:
        candidates.insert(0, (_posterior_parts(betas, t, ab_prev=_alpha_bar(betas, T - 1))[2],
                              "alpha_bars[t - 1] at t = 0 is alpha_bars[-1], the LAST entry: at t = 0 use abar_{t-1} = 1, "
                              "which makes the variance 0 (x_0 is known exactly)."))
    for value, hint in candidates:
        if math.isclose(var_got, value, rel_tol=1e-5, abs_tol=1e-12) and not math.isclose(var, value, rel_tol=1e-5, abs_tol=1e-12):
            return hint
    return f"expected beta-tilde_t = (1 - abar_{{t-1}}) / (1 - abar_t) * beta_t = {var:.6g}, got {var_got:.6g}."


def _as_variance(name: str, var, mean_shape) -> float:
    """A float, a 0-d tensor, or a tensor whose entries are all equal (e.g. broadcast to the image) -> float."""
    if isinstance(var, (int, float)):
        return float(var)
    if isinstance(var, np.ndarray):
        var = torch.from_numpy(var)
    if isinstance(var, torch.Tensor):
        flat = var.detach().double().flatten()
        if flat.numel() >= 1 and torch.all(flat == flat[0]):
            return float(flat[0])
        raise ExerciseError(f"{name}: the variance is the same for every pixel; return one number (a float or a 0-d "
                            f"tensor), got a tensor of shape {tuple(var.shape)} with different values.")
    raise ExerciseError(f"{name}: return the variance as a number (float or 0-d tensor), got {type(var).__name__}.")


@exercise(reference=reference_posterior, library=('ddpm_lib.diffusion.forward.q_posterior', 'ddpm_lib.diffusion.forward.posterior_coefficients'))
def check_posterior(fn: Callable) -> None:
    """Check ``fn(x0, x_t, betas, t) -> (mean, variance)`` (eqs. 6-7) for t = 0, small, middle and last t."""
    name = "posterior"
    g = torch.Generator().manual_seed(12)
    short = 0.02 + 0.3 * torch.rand(12, generator=g, dtype=torch.float64)
    linear = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    for betas, ts in [(linear, (0, 1, 10, 500, 999)), (short, (0, 3, 11))]:
        for t in ts:
            desc = f"T={betas.shape[0]}, t={t}"
            x0 = torch.rand(3, 1, 4, 4, generator=g, dtype=torch.float64) * 2 - 1
            x_t = torch.randn(3, 1, 4, 4, generator=g, dtype=torch.float64)
            got = call_t_last(name, fn, (x0.clone(), x_t.clone(), betas.clone(), t), old_order=(0, 1, 3, 2),
                              expected=reference_posterior(x0, x_t, betas, t),
                              signature="def posterior_mine(x0, x_t, betas, t)")
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise ExerciseError(f"{name}: return a pair (mean, variance), got {type(got).__name__}"
                                    + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "") + ".")
            mean, var = got
            if isinstance(mean, np.ndarray):
                mean = torch.from_numpy(mean)
            expected_mean, expected_var = reference_posterior(x0, x_t, betas, t)
            if isinstance(mean, torch.Tensor) and mean.shape == expected_mean.shape and torch.isfinite(mean).all() and not (
                    torch.allclose(mean.detach().double(), expected_mean, atol=1e-8, rtol=1e-6)):
                for hint, wrong in _posterior_mean_mistakes(x0, x_t, t, betas):
                    if torch.allclose(mean.detach().double(), wrong, atol=1e-8, rtol=1e-6):
                        raise ExerciseError(f"{name}: wrong mean ({desc}). Hint: {hint}")
            check_tensor(f"{name}: the mean ({desc})", mean, expected_mean, atol=1e-6, rtol=1e-5,
                         hint="mean = sqrt(abar_{t-1}) beta_t / (1 - abar_t) * x0 + sqrt(alpha_t) (1 - abar_{t-1}) / "
                              "(1 - abar_t) * x_t, with abar_{t-1} = 1 at t = 0.")
            v = _as_variance(name, var, expected_mean.shape)
            if not math.isclose(v, expected_var, rel_tol=1e-5, abs_tol=1e-12):
                raise ExerciseError(f"{name}: wrong variance ({desc}). Hint: {_variance_hint(v, t, betas)}")
    passed(name, "Eqs. 6-7: the reverse step is Gaussian when x_0 is known; at t = 0 it is x_0 itself.")
