"""Checkers for notebook 08 (beyond DDPM).

- ``check_score_from_eps(fn)``: ``fn(eps_hat, alpha_bar) -> score`` = -eps / sqrt(1 - abar) (Tweedie; Song et al.
  2021, "Score-based generative modeling through SDEs", sec. 3). Named mistakes: the sign, a missing square root,
  multiplying instead of dividing, sqrt(abar) in place of sqrt(1 - abar).
- ``check_heun_step(fn)``: ``fn(x, sigma, sigma_next, denoise) -> x_next``, one step of Karras et al. 2022,
  Algorithm 1 (deterministic; lines 4-8), with ``denoise(x, sigma)`` the denoiser D and Euler's step when
  sigma_next = 0. Named mistakes: no correction (Euler), the new slope alone, the new slope taken at x instead
  of at Euler's x', the step reversed, correcting on the last step (a division by sigma_next = 0).
- ``check_flow_matching_pair(fn)``: ``fn(x0, noise, t) -> (x_t, v)`` = ((1 - t) x0 + t eps, eps - x0)
  (Lipman et al. 2023 eq. 20-23, Liu et al. 2023 eq. 1). Named mistakes: the reversed velocity x0 - eps,
  the ends swapped, the DDPM target eps, the variance-preserving mix sqrt(1 - t) x0 + sqrt(t) eps.

The references are written out here in float64, independently of :mod:`ddpm_lib.diffusion.edm`,
:class:`ddpm_lib.diffusion.samplers.EDMSampler` and :mod:`ddpm_lib.diffusion.flow_matching`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lib.course.exercises import ExerciseError, call_student, check_tensor, exercise, passed

__all__ = ["check_score_from_eps", "check_heun_step", "check_flow_matching_pair", "ShrinkDenoiser"]


def _same(a, b) -> bool:
    return (isinstance(a, torch.Tensor) and a.shape == b.shape and bool(torch.isfinite(a).all())
            and torch.allclose(a.double(), b.double(), atol=1e-6, rtol=1e-5))


def _named(name: str, got, expected, mistakes) -> None:
    for hint, wrong in mistakes:
        if _same(got, wrong) and not _same(wrong, expected):
            raise ExerciseError(f"{name}: not quite. {hint}")


# --- the score from eps ------------------------------------------------------------------------------


def reference_score_from_eps(eps_hat, alpha_bar) -> torch.Tensor:
    return (-eps_hat.double() / math.sqrt(1.0 - float(alpha_bar))).to(eps_hat.dtype)


@exercise(reference=reference_score_from_eps, library=("ddpm_lib.diffusion.edm.score_from_eps",))
def check_score_from_eps(fn: Callable) -> None:
    name = "score_from_eps"
    g = torch.Generator().manual_seed(80)
    for ab in (0.9, 0.5, 0.04):
        eps = torch.randn(6, 2, generator=g)
        got = call_student(name, fn, eps.clone(), ab)
        expected = reference_score_from_eps(eps, ab)
        s1, sa = math.sqrt(1 - ab), math.sqrt(ab)
        _named(name, got, expected, [
            ("the score points back towards the data, against the noise that was added: score = MINUS eps / sqrt(1 - abar).",
             eps / s1),
            ("divide by the noise's standard deviation sqrt(1 - abar), not by its variance 1 - abar.", -eps / (1 - ab)),
            ("that is the other direction (eps from the score): here DIVIDE eps by sqrt(1 - abar).", -eps * s1),
            ("the noise in x_t = sqrt(abar) x0 + sqrt(1 - abar) eps has standard deviation sqrt(1 - abar), not sqrt(abar).",
             -eps / sa),
        ])
        check_tensor(name, got, expected, hint="grad log p_t(x_t) = -eps / sqrt(1 - abar_t).")
    passed(name, "An eps-model is a score model: grad log p_t = -eps / sqrt(1 - abar_t).")


# --- one Heun step (EDM, Algorithm 1) ------------------------------------------------------------------


class ShrinkDenoiser:
    """A denoiser D(x, sigma) for the checker (picklable, so the grader can hand it to the student's kernel):
    the exact one for data N(m, s^2 I), D = m + s^2 / (s^2 + sigma^2) (x - m), plus a small non-linear term so
    that different mistakes give different answers. It counts its calls."""

    def __init__(self, s: float = 0.5, m: float = 0.2):
        self.s, self.m, self.calls = s, m, 0

    def __call__(self, x, sigma):
        self.calls += 1
        sigma = float(sigma)
        k = self.s**2 / (self.s**2 + sigma**2)
        return (self.m + k * (x.double() - self.m) + 0.05 * torch.tanh(x.double()) * sigma / (1 + sigma)).to(x.dtype)


def reference_heun_step(x, sigma, sigma_next, denoise) -> torch.Tensor:
    sigma, sigma_next = float(sigma), float(sigma_next)
    d = (x.double() - denoise(x, sigma).double()) / sigma
    x_next = x.double() + (sigma_next - sigma) * d
    if sigma_next == 0:
        return x_next.to(x.dtype)
    d_next = (x_next - denoise(x_next.to(x.dtype), sigma_next).double()) / sigma_next
    return (x.double() + (sigma_next - sigma) * 0.5 * (d + d_next)).to(x.dtype)


@exercise(reference=reference_heun_step, library=("ddpm_lib.diffusion.samplers.EDMSampler",))
def check_heun_step(fn: Callable) -> None:
    name = "heun_step"
    g = torch.Generator().manual_seed(81)
    for sigma, sigma_next in ((10.0, 4.0), (1.5, 0.7), (0.3, 0.0)):
        x = torch.randn(5, 3, generator=g, dtype=torch.float64) * math.sqrt(0.25 + sigma**2)
        D = ShrinkDenoiser()
        got = call_student(name, fn, x.clone(), sigma, sigma_next, D)
        expected = reference_heun_step(x, sigma, sigma_next, ShrinkDenoiser())
        dt = sigma_next - sigma
        d = (x - D(x, sigma)) / sigma
        x_euler = x + dt * d
        mistakes = [
            ("that is Euler's step alone. Heun evaluates the slope again at Euler's point x' (at sigma_next) and "
             "steps with the AVERAGE of the two slopes (Karras et al., Algorithm 1, lines 6-7).", x_euler if sigma_next > 0 else x * math.nan),
            ("the step is (sigma_next - sigma) times the slope: from sigma down to sigma_next, a negative step.",
             x - dt * d),
        ]
        if sigma_next > 0:
            d_new = (x_euler - D(x_euler, sigma_next)) / sigma_next
            d_at_x = (x - D(x, sigma_next)) / sigma_next
            mistakes += [
                ("you stepped with the second slope alone: use the average (d + d') / 2 of the slope at x and the slope "
                 "at Euler's point x'.", x + dt * d_new),
                ("the second slope is taken at Euler's point x' = x + (sigma_next - sigma) d, not at x.",
                 x + dt * 0.5 * (d + d_at_x)),
                ("start the corrected step from x, not from Euler's point x': x_next = x + (sigma_next - sigma) (d + d') / 2.",
                 x_euler + dt * 0.5 * (d + d_new)),
            ]
        elif isinstance(got, torch.Tensor) and not torch.isfinite(got).all():
            raise ExerciseError(f"{name}: the result holds NaN or inf at sigma_next = 0: the correction divides by "
                                "sigma_next. The last step, to sigma = 0, is Euler's step alone (Algorithm 1, line 6).")
        _named(name, got, expected, mistakes)
        check_tensor(name, got, expected, atol=1e-6, rtol=1e-6,
                     hint="d = (x - D(x; sigma)) / sigma; x' = x + (sigma_next - sigma) d; if sigma_next > 0 average d with "
                          "d' = (x' - D(x'; sigma_next)) / sigma_next.")
    passed(name, "Heun's step of Karras et al.'s Algorithm 1: two denoiser calls per step, one on the last.")


# --- flow matching: the path and its velocity ------------------------------------------------------------


def reference_flow_matching_pair(x0, noise, t) -> tuple[torch.Tensor, torch.Tensor]:
    tt = t.double().reshape(-1, *([1] * (x0.ndim - 1)))
    x_t = (1.0 - tt) * x0.double() + tt * noise.double()
    return x_t.to(x0.dtype), (noise.double() - x0.double()).to(x0.dtype)


@exercise(reference=reference_flow_matching_pair, library=("ddpm_lib.diffusion.flow_matching.interpolate",
                                                           "ddpm_lib.diffusion.flow_matching.velocity_target"))
def check_flow_matching_pair(fn: Callable) -> None:
    name = "flow_matching_pair"
    g = torch.Generator().manual_seed(82)
    x0 = torch.rand(4, 1, 3, 3, generator=g) * 2 - 1
    noise = torch.randn(4, 1, 3, 3, generator=g)
    t = torch.tensor([0.0, 0.25, 0.6, 1.0])
    got = call_student(name, fn, x0.clone(), noise.clone(), t.clone())
    if not (isinstance(got, (tuple, list)) and len(got) == 2):
        raise ExerciseError(f"{name}: return a pair (x_t, v), got {type(got).__name__}.")
    x_t, v = got
    exp_xt, exp_v = reference_flow_matching_pair(x0, noise, t)
    tt = t.reshape(-1, 1, 1, 1)
    _named(name, x_t, exp_xt, [
        ("the ends are swapped: t = 0 is the data and t = 1 the noise, x_t = (1 - t) x0 + t eps.", tt * x0 + (1 - tt) * noise),
        ("flow matching mixes linearly, (1 - t) x0 + t eps, not with the square roots of the variance-preserving "
         "process.", (1 - tt).sqrt() * x0 + tt.sqrt() * noise),
    ])
    check_tensor(f"{name} (x_t)", x_t, exp_xt, hint="x_t = (1 - t) x0 + t eps, with t reshaped to (B, 1, 1, 1).")
    _named(name, v, exp_v, [
        ("the velocity is d x_t / d t = eps - x0: it points from the data to the noise. x0 - eps is the reverse.", x0 - noise),
        ("that is DDPM's target, the noise. Flow matching regresses the velocity d x_t / d t = eps - x0.", noise),
    ])
    check_tensor(f"{name} (v)", v, exp_v, hint="v = d x_t / d t.")
    passed(name, "The straight path from data to noise and its constant velocity eps - x0.")
