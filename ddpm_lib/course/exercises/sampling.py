"""Checkers for notebook 05 (sampling).

- ``check_ddpm_step(fn)``: ``fn(eps_hat, x_t, z, betas, t) -> x_{t-1}`` (eq. 11 plus sigma_t z, with
  sigma_t^2 = beta-tilde_t, and no noise at t = 0). Named mistakes: ``alpha_bars[t - 1]`` at t = 0 (the
  negative index), dividing by sqrt(abar_t) instead of sqrt(alpha_t), both sign errors, noise at t = 0,
  sigma_t^2 = beta_t, a missing square root, new noise drawn instead of ``z``.
- ``check_ddim_step(fn)``: ``fn(eps_hat, x_t, alpha_bar_t, alpha_bar_prev) -> x_prev`` (Song et al. 2021,
  eq. 12 with eta = 0).
- ``check_slerp(fn)``: ``fn(z0, z1, alpha) -> z`` spherical interpolation (Shoemake 1985).

``t`` is a 0-based timestep (index 0 is the paper's step 1), passed last as in the library, and ``betas`` a 1-D tensor. The references
below are written out independently of :mod:`ddpm_lib.diffusion.samplers`, in float64 with explicit products.
When an answer is wrong the checker compares it with the usual mistakes and names the one it matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lib.course.exercises import (
    ExerciseError,
    call_student,
    call_t_last,
    check_tensor,
    exercise,
    passed,
)
from ddpm_lib.course.exercises.forward import (
    _alpha_bar as _ab,  # prod_{s=0..t} (1 - beta_s), float64
)

__all__ = ["check_ddpm_step", "check_ddim_step", "check_ddim_sigma", "check_slerp"]


def _betas(T: int = 50) -> torch.Tensor:
    return torch.linspace(1e-4 * 1000 / T, 0.02 * 1000 / T, T, dtype=torch.float64).float()


def _match_mistakes(name: str, got, expected, mistakes) -> None:
    """Raise the most specific hint if ``got`` equals a known wrong answer, else the generic one."""
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all():
        for hint, wrong in mistakes:
            if torch.allclose(got.double(), wrong.double(), atol=1e-5, rtol=1e-4) and not torch.allclose(
                wrong.double(), expected.double(), atol=1e-5, rtol=1e-4
            ):
                raise ExerciseError(f"{name}: not quite. {hint}")


# --- one DDPM step --------------------------------------------------------------------------------


def reference_ddpm_step(eps_hat, x_t, z, betas, t: int) -> torch.Tensor:
    b = float(betas[t])
    ab_t, ab_prev = _ab(betas, t), _ab(betas, t - 1)
    mean = (x_t.double() - b / math.sqrt(1 - ab_t) * eps_hat.double()) / math.sqrt(1 - b)
    if t == 0:
        return mean.to(x_t.dtype)
    var = (1 - ab_prev) / (1 - ab_t) * b
    return (mean + math.sqrt(var) * z.double()).to(x_t.dtype)


@exercise(reference=reference_ddpm_step, library=('ddpm_lib.diffusion.samplers.DDPMSampler',))
def check_ddpm_step(fn: Callable) -> None:
    name = "ddpm_step"
    betas = _betas()
    g = torch.Generator().manual_seed(6)
    for t in (49, 20, 1, 0):
        eps_hat = torch.randn(4, 2, generator=g)
        x_t = torch.randn(4, 2, generator=g)
        z = torch.randn(4, 2, generator=g)
        got = call_t_last(name, fn, (eps_hat.clone(), x_t.clone(), z.clone(), betas.clone(), t), old_order=(0, 1, 4, 3, 2),
                          expected=reference_ddpm_step(eps_hat, x_t, z, betas, t),
                          signature="def ddpm_step_mine(eps_hat, x_t, z, betas, t)")
        again = call_student(name, fn, eps_hat.clone(), x_t.clone(), z.clone(), betas.clone(), t)
        if isinstance(got, torch.Tensor) and isinstance(again, torch.Tensor) and got.shape == again.shape \
                and not torch.equal(got, again):
            raise ExerciseError(f"{name}: two calls with the same inputs gave different results (t = {t}). Use the "
                                "noise `z` that is passed in; don't draw new noise inside the step.")
        expected = reference_ddpm_step(eps_hat, x_t, z, betas, t)
        b, ab_t, ab_prev = float(betas[t]), _ab(betas, t), _ab(betas, t - 1)
        mean = (x_t - b / math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(1 - b)
        noise_term = expected - mean  # sigma_t z (0 at t = 0)
        nan = mean * float("nan")
        ab_last = _ab(betas, len(betas) - 1)  # what alpha_bars[t - 1] gives at t = 0: the LAST entry
        mistakes = [
            ("At t = 0, alpha_bars[t - 1] is alpha_bars[-1]: Python's negative index picks the LAST entry, not "
             "abar_{-1} = 1. And the last step adds no noise at all: at t = 0 return the mean.",
             mean + math.sqrt((1 - ab_last) / (1 - ab_t) * b) * z if t == 0 else nan),
            ("Divide by sqrt(alpha_t) = sqrt(1 - beta_t), the one-step factor, not by sqrt(abar_t) (eq. 11: "
             "mu = (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)).",
             (x_t - b / math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t) + noise_term),
            ("Sign: SUBTRACT the predicted noise, x_t - beta_t / sqrt(1 - abar_t) eps-hat (eq. 11).",
             (x_t + b / math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(1 - b) + noise_term),
            ("Sign: ADD the noise term, mean + sigma_t z (Ho et al. alg. 2).", mean - noise_term if t > 0 else nan),
            ("Multiply by sqrt(alpha_t)? Eq. 11 DIVIDES the bracket by sqrt(alpha_t).",
             (x_t - b / math.sqrt(1 - ab_t) * eps_hat) * math.sqrt(1 - b) + noise_term),
            ("At t = 0 (the last step) add no noise: return the mean itself (Ho et al. alg. 2, z = 0 when t = 1).",
             mean + math.sqrt(b) * z if t == 0 else mean * float("nan")),
            ("The noise scale here is sigma_t = sqrt(beta-tilde_t) = sqrt((1 - abar_{t-1}) / (1 - abar_t) beta_t), "
             "not sqrt(beta_t).", mean + math.sqrt(b) * z if t > 0 else mean * float("nan")),
            ("sigma_t multiplies z with a square root: sigma_t = sqrt(beta-tilde_t).",
             mean + (1 - ab_prev) / (1 - ab_t) * b * z if t > 0 else mean * float("nan")),
            ("Divide the whole bracket (x_t - beta_t / sqrt(1 - abar_t) eps) by sqrt(alpha_t) (eq. 11).",
             (x_t - b / math.sqrt(1 - ab_t) * eps_hat) + (expected - mean)),
            ("The eps coefficient is beta_t / sqrt(1 - abar_t), with the square root.",
             (x_t - b / (1 - ab_t) * eps_hat) / math.sqrt(1 - b) + (expected - mean)),
        ]
        _match_mistakes(name, got, expected, mistakes)
        check_tensor(name, got, expected, hint="x_{t-1} = (x_t - beta_t/sqrt(1-abar_t) eps)/sqrt(alpha_t) + sigma_t z, z unused at t = 0.")
    passed(name, "One step of Ho et al.'s algorithm 2.")


# --- one DDIM step --------------------------------------------------------------------------------


def reference_ddim_step(eps_hat, x_t, alpha_bar_t: float, alpha_bar_prev: float) -> torch.Tensor:
    x0 = (x_t.double() - math.sqrt(1 - alpha_bar_t) * eps_hat.double()) / math.sqrt(alpha_bar_t)
    return (math.sqrt(alpha_bar_prev) * x0 + math.sqrt(1 - alpha_bar_prev) * eps_hat.double()).to(x_t.dtype)


@exercise(reference=reference_ddim_step, library=('ddpm_lib.diffusion.samplers.DDIMSampler',))
def check_ddim_step(fn: Callable) -> None:
    name = "ddim_step"
    g = torch.Generator().manual_seed(7)
    for ab_t, ab_prev in ((0.01, 0.2), (0.5, 0.7), (0.9, 1.0)):
        eps_hat = torch.randn(3, 1, 2, 2, generator=g)
        x_t = torch.randn(3, 1, 2, 2, generator=g)
        got = call_student(name, fn, eps_hat.clone(), x_t.clone(), ab_t, ab_prev)
        expected = reference_ddim_step(eps_hat, x_t, ab_t, ab_prev)
        x0 = (x_t - math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t)
        mistakes = [
            ("The direction term uses the *previous* noise level: sqrt(1 - abar_prev) eps-hat.",
             math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_t) * eps_hat),
            ("Scale x0-hat by sqrt(abar_prev), with the square root.", ab_prev * x0 + math.sqrt(1 - ab_prev) * eps_hat),
            ("x0-hat = (x_t - sqrt(1 - abar_t) eps-hat) / sqrt(abar_t): divide by sqrt(abar_t).",
             math.sqrt(ab_prev) * (x_t - math.sqrt(1 - ab_t) * eps_hat) + math.sqrt(1 - ab_prev) * eps_hat),
        ]
        _match_mistakes(name, got, expected, mistakes)
        check_tensor(name, got, expected, hint="x_prev = sqrt(abar_prev) x0-hat + sqrt(1 - abar_prev) eps-hat (eq. 12, eta = 0).")
    passed(name, "Deterministic DDIM: Song et al. eq. 12 with sigma = 0.")


# --- slerp ----------------------------------------------------------------------------------------


def reference_slerp(z0, z1, alpha: float) -> torch.Tensor:
    a, b = z0.double().flatten(), z1.double().flatten()
    cos = float(torch.dot(a, b) / (a.norm() * b.norm()))
    theta = math.acos(max(-1.0, min(1.0, cos)))
    if theta < 1e-6:
        return ((1 - alpha) * z0.double() + alpha * z1.double()).to(z0.dtype)
    out = (math.sin((1 - alpha) * theta) * z0.double() + math.sin(alpha * theta) * z1.double()) / math.sin(theta)
    return out.to(z0.dtype)


@exercise(reference=reference_slerp, library=())
def check_slerp(fn: Callable) -> None:
    name = "slerp"
    g = torch.Generator().manual_seed(8)
    z0 = torch.randn(1, 8, 8, generator=g)
    z1 = torch.randn(1, 8, 8, generator=g)
    for alpha in (0.0, 0.3, 0.5, 1.0):
        got = call_student(name, fn, z0.clone(), z1.clone(), alpha)
        expected = reference_slerp(z0, z1, alpha)
        mistakes = [
            ("That is linear interpolation: its midpoint has a smaller norm than either noise, so it does not look like "
             "a typical N(0, I) draw. Interpolate the angle: sin((1-a) theta) z0 + sin(a theta) z1, over sin(theta).",
             (1 - alpha) * z0 + alpha * z1),
            ("Check which end gets which weight: alpha = 0 must give z0 and alpha = 1 must give z1.",
             reference_slerp(z0, z1, 1 - alpha)),
        ]
        _match_mistakes(name, got, expected, mistakes)
        check_tensor(name, got, expected, atol=1e-4, hint="theta = arccos(<z0, z1> / (|z0| |z1|)) over all entries.")
    passed(name, "Spherical interpolation keeps the norm of typical Gaussian noise.")


# --- DDIM's noise level (eq. 16) ----------------------------------------------------------------------


def reference_ddim_sigma(alpha_bar_t: float, alpha_bar_prev: float, eta: float) -> float:
    """sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev) (Song et al. 2021, eq. 16)."""
    return eta * math.sqrt((1 - alpha_bar_prev) / (1 - alpha_bar_t)) * math.sqrt(1 - alpha_bar_t / alpha_bar_prev)


def _ddim_sigma_mistakes(ab_t: float, ab_prev: float, eta: float):
    """(hint, value) of the usual wrong answers to eq. 16, most specific first."""
    first, second = (1 - ab_prev) / (1 - ab_t), 1 - ab_t / ab_prev
    yield ("you returned sigma^2, the variance; eq. 16 gives the standard deviation sigma (take the square roots, "
           "and eta outside them).", eta**2 * first * second)
    yield ("eta multiplies sigma, outside the square roots: eta = 1/2 halves the standard deviation.",
           math.sqrt(eta * first * second))
    yield ("the first factor is upside down: sqrt((1 - abar_prev) / (1 - abar_t)), the PREVIOUS step's noise "
           "on top (with eta = 1 and consecutive steps sigma^2 is then beta-tilde_t).",
           eta * math.sqrt(1 / first * second))
    yield ("the second factor is sqrt(1 - abar_t / abar_prev), the beta between the two visited steps, not "
           "sqrt(1 - abar_t).", eta * math.sqrt(first * (1 - ab_t)))
    yield ("that is eta sqrt(1 - abar_t / abar_prev) alone, the fixed_large choice sigma^2 = beta; eq. 16 also has "
           "the factor sqrt((1 - abar_prev) / (1 - abar_t)).", eta * math.sqrt(second))


@exercise(reference=reference_ddim_sigma, library=("ddpm_lib.diffusion.samplers.DDIMSampler",))
def check_ddim_sigma(fn: Callable) -> None:
    """Check ``fn(alpha_bar_t, alpha_bar_prev, eta) -> float`` against eq. 16 of Song et al. 2021."""
    name = "ddim_sigma"
    for ab_t, ab_prev, eta in ((0.3, 0.5, 1.0), (0.01, 0.2, 0.5), (0.9, 0.95, 1.0), (0.4, 0.7, 0.0), (0.6, 1.0, 1.0)):
        try:
            got = call_student(name, fn, ab_t, ab_prev, eta)
        except ExerciseError as e:
            if isinstance(e.__cause__, ValueError) and "math domain" in str(e.__cause__):
                raise ExerciseError(f"{name}: your code took the square root of a negative number (abar_t = {ab_t}, "
                                    f"abar_prev = {ab_prev}). The second factor is sqrt(1 - abar_t / abar_prev): "
                                    "abar_t <= abar_prev, so the ratio is at most 1. Is it upside down?") from None
            raise
        if isinstance(got, torch.Tensor) and got.numel() == 1:
            got = got.item()
        if not isinstance(got, (int, float)):
            raise ExerciseError(f"{name}: return a Python float (sigma), got {type(got).__name__}.")
        expected = reference_ddim_sigma(ab_t, ab_prev, eta)
        if math.isnan(got):
            raise ExerciseError(f"{name}: the result is NaN (abar_t = {ab_t}, abar_prev = {ab_prev}): a square root of a "
                                "negative number? The second factor is sqrt(1 - abar_t / abar_prev), and "
                                "abar_t <= abar_prev.")
        if not math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
            for hint, wrong in _ddim_sigma_mistakes(ab_t, ab_prev, eta):
                if math.isclose(got, wrong, rel_tol=1e-6, abs_tol=1e-9) and not math.isclose(wrong, expected, rel_tol=1e-6):
                    raise ExerciseError(f"{name}: not quite (abar_t = {ab_t}, abar_prev = {ab_prev}, eta = {eta}): {hint}")
            raise ExerciseError(f"{name}: wrong value at abar_t = {ab_t}, abar_prev = {ab_prev}, eta = {eta}. "
                                "Read eq. 16 again: eta times two square-root factors.")
    passed(name, "That is eq. 16 of Song et al. (DDIM): with eta = 1 and every timestep visited it is DDPM's "
                 "fixed_small standard deviation, sqrt(beta-tilde_t).")
