"""Checkers for notebook 01 (the forward process).

``check_add_noise(fn)`` tests a student's ``fn(x0, noise, t, betas) -> x_t`` that samples
q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I) (Ho et al. 2020, eq. 4), where
alpha_bar_t = prod_{s <= t} (1 - beta_s) and ``t`` holds 0-based timesteps (index 0 = the paper's step 1).

The reference below is written independently of :mod:`ddpm_lib.forward`: a float64 loop over the
samples, with alpha_bar computed as an explicit product. When the answer is wrong, the checker compares
it with the results of the usual mistakes and names the one it matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lib.exercises import ExerciseError, call_student, check_tensor, passed

__all__ = ["check_add_noise"]

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


def reference_add_noise(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor, betas: torch.Tensor) -> torch.Tensor:
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


def check_add_noise(fn: Callable) -> None:
    """Check ``fn(x0, noise, t, betas)`` against q(x_t | x_0) (Ho et al. eq. 4) on several inputs."""
    for desc, x0, noise, t, betas in _cases():
        x0_before, noise_before, t_before, betas_before = x0.clone(), noise.clone(), t.clone(), betas.clone()
        try:
            got = call_student(NAME, fn, x0, noise, t, betas)
        except ExerciseError as e:
            if "not written yet" in str(e):
                raise
            raise ExerciseError(f"{e} (input: {desc}).{_broadcast_hint(str(e))}") from None
        if not (torch.equal(x0, x0_before) and torch.equal(noise, noise_before) and torch.equal(t, t_before)
                and torch.equal(betas, betas_before)):
            raise ExerciseError(
                f"{NAME}: your function changed its inputs in place (input: {desc}). Build a new tensor "
                "instead of using +=, *= or .mul_()."
            )
        expected = reference_add_noise(x0, noise, t, betas)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all():
            again = call_student(NAME, fn, x0, noise, t, betas)
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
            hint="x_t = sqrt(alpha_bar_t) * x0 + sqrt(1 - alpha_bar_t) * noise, with "
            "alpha_bars = torch.cumprod(1 - betas, dim=0) indexed by t and reshaped to (B, 1, 1, 1).",
        )
    passed(NAME, "Your x_t matches Ho et al.'s eq. 4 for every batch size, shape and t tried.")
