"""Checkers for notebook 02 (noise schedules).

``check_cosine_schedule(fn)`` tests a student's ``fn(num_timesteps, s=0.008, max_beta=0.999) -> betas``
implementing the cosine schedule of Nichol & Dhariwal 2021 (eq. 17 and sec. 3.2):

    alpha_bar(tau) = cos^2( (tau + s) / (1 + s) * pi / 2 ),   tau = t / T in [0, 1]
    beta_t = min(1 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta),   t = 0..T-1

The answer is compared with :func:`reference_cosine_betas`, written out here in float64 independently of
:mod:`ddpm_lib.schedules`; when it is wrong, the checker compares it with the results of the usual
mistakes (computed here, in float64) and names the one
it matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from ddpm_lib.exercises import ExerciseError, call_student, check_tensor, exercise, passed

__all__ = ["check_cosine_schedule"]

NAME = "cosine schedule"


def _f(tau, s):
    return np.cos((tau + s) / (1 + s) * math.pi / 2) ** 2


def reference_cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> torch.Tensor:
    """Nichol & Dhariwal's cosine betas (eq. 17), written out point by point in float64 (shape (T,))."""
    T = num_timesteps
    f = [math.cos((t / T + s) / (1 + s) * math.pi / 2) ** 2 for t in range(T + 1)]
    return torch.tensor([min(1.0 - f[t + 1] / f[t], max_beta) for t in range(T)], dtype=torch.float64)


def _betas_from(alpha_bar_at, T, max_beta, clip=True):
    t = np.arange(T, dtype=np.float64)
    b = 1.0 - alpha_bar_at(t + 1) / alpha_bar_at(t)
    return np.minimum(b, max_beta) if clip else b


def _mistakes(T: int, s: float, max_beta: float):
    """(hint, wrong betas) for the usual mistakes, most specific first."""
    right_ab = lambda t: _f(t / T, s)  # noqa: E731
    yield (
        "the betas are not clipped: the last one is 1 - alpha_bar(1)/alpha_bar((T-1)/T) = 1 (alpha_bar(1) = 0), "
        "which would make the reverse process divide by zero. Clip with np.minimum(betas, max_beta) "
        "or torch.clamp(betas, max=max_beta).",
        _betas_from(right_ab, T, max_beta, clip=False),
    )
    yield (
        "you returned alpha_bar(t/T) for t = 1..T; the exercise asks for the betas: "
        "beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), clipped at max_beta.",
        right_ab(np.arange(1, T + 1, dtype=np.float64)),
    )
    yield (
        "you returned alpha_bar(t/T) for t = 0..T-1; the exercise asks for the betas: "
        "beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), clipped at max_beta.",
        right_ab(np.arange(T, dtype=np.float64)),
    )
    yield (
        "you returned alpha_bar_t = f(t/T) / f(0) for t = 1..T; the exercise asks for the betas: "
        "beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), clipped at max_beta.",
        right_ab(np.arange(1, T + 1, dtype=np.float64)) / right_ab(0.0),
    )
    yield (
        "you returned alpha_t = 1 - beta_t; return the betas themselves.",
        1.0 - _betas_from(right_ab, T, max_beta),
    )
    yield (
        "alpha_bar(tau) is the *square* of the cosine: cos(((tau + s) / (1 + s)) * pi / 2) ** 2.",
        _betas_from(lambda t: np.cos((t / T + s) / (1 + s) * math.pi / 2), T, max_beta),
    )
    yield (
        "the offset s is missing: use ((t/T + s) / (1 + s)) * pi / 2 inside the cosine "
        "(s keeps beta_0 from being vanishingly small).",
        _betas_from(lambda t: _f(t / T, 0.0), T, max_beta),
    )
    yield (
        "the (1 + s) denominator is missing: divide (t/T + s) by (1 + s) so that alpha_bar(1) = cos^2(pi/2) = 0.",
        _betas_from(lambda t: np.cos((t / T + s) * math.pi / 2) ** 2, T, max_beta),
    )
    yield (
        "off by one in the time grid: tau = t / T with t = 0..T (T+1 points, e.g. np.arange(T + 1) / T "
        "or np.linspace(0, 1, T + 1)), not T points spaced 1/(T-1) apart.",
        _betas_from(lambda t: _f(t / max(T - 1, 1), s), T, max_beta) if T > 1 else np.full(1, -1.0),
    )
    yield (
        "off by one: beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T) for t = 0..T-1; you started one step early "
        "(alpha_bar(t/T) / alpha_bar((t-1)/T)).",
        _betas_from(lambda t: _f((t - 1) / T, s), T, max_beta),
    )
    yield (
        "the ratio is upside down: beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T) (the later step on top), "
        "which lies between 0 and 1.",
        np.minimum(1.0 - right_ab(np.arange(T) * 1.0) / right_ab(np.arange(T) + 1.0), max_beta),
    )
    yield (
        "beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T) is a ratio, not a difference alpha_bar(t/T) - alpha_bar((t+1)/T).",
        np.minimum(right_ab(np.arange(T) * 1.0) - right_ab(np.arange(T) + 1.0), max_beta),
    )


def _is_single_precision(got) -> bool:
    dtype = getattr(got, "dtype", None)
    return dtype in (torch.float32, torch.float16, torch.bfloat16, np.float32, np.float16)


def _as_tensor(name: str, got) -> torch.Tensor:
    if isinstance(got, np.ndarray):
        return torch.from_numpy(np.asarray(got, dtype=np.float64))
    if isinstance(got, (list, tuple)):
        try:
            return torch.tensor(got, dtype=torch.float64)
        except (TypeError, ValueError):
            pass
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{name}: return a 1-D torch.Tensor (or NumPy array) of T betas, got {type(got).__name__}.")
    return got.detach().cpu().double()


@exercise(reference=reference_cosine_betas)
def check_cosine_schedule(fn: Callable) -> None:
    """Check ``fn(num_timesteps, s=..., max_beta=...)`` against the reference cosine schedule for several T, s, max_beta."""
    cases = [(1000, 0.008, 0.999), (10, 0.008, 0.999), (100, 0.008, 0.999), (50, 0.02, 0.999), (20, 0.008, 0.5), (1, 0.008, 0.999)]
    single = False
    for T, s, max_beta in cases:
        desc = f"num_timesteps={T}, s={s}, max_beta={max_beta}"
        raw = call_student(NAME, fn, T, s=s, max_beta=max_beta)
        # float32 arithmetic loses ~1e-5 in the last betas, where alpha_bar is tiny: allow for it
        single = single or _is_single_precision(raw)
        atol, rtol = (1e-4, 1e-4) if _is_single_precision(raw) else (2e-6, 1e-5)
        got = _as_tensor(NAME, raw)
        expected = reference_cosine_betas(T, s=s, max_beta=max_beta)
        if tuple(got.shape) != (T,):
            extra = " (T + 1 values: use t = 0..T-1 for the betas; alpha_bar needs the T + 1 points t = 0..T)" if got.numel() == T + 1 else ""
            raise ExerciseError(f"{NAME}: expected {T} betas of shape ({T},) for {desc}, got shape {tuple(got.shape)}{extra}.")
        if torch.isfinite(got).all() and not torch.allclose(got, expected, atol=atol, rtol=rtol):
            if s != 0.008 and torch.allclose(got, reference_cosine_betas(T, max_beta=max_beta), atol=atol, rtol=rtol):
                raise ExerciseError(f"{NAME}: wrong values for {desc}. Hint: use the argument `s`, not a fixed 0.008.")
            if max_beta != 0.999 and torch.allclose(got, reference_cosine_betas(T, s=s), atol=atol, rtol=rtol):
                raise ExerciseError(f"{NAME}: wrong values for {desc}. Hint: clip at the argument `max_beta`, not a fixed 0.999.")
            for hint, wrong in _mistakes(T, s, max_beta):
                w = torch.from_numpy(np.asarray(wrong, dtype=np.float64))
                if w.shape == got.shape and torch.allclose(got, w, atol=atol, rtol=rtol, equal_nan=True):
                    raise ExerciseError(f"{NAME}: wrong values for {desc}. Hint: {hint}")
        check_tensor(
            f"{NAME} ({desc})",
            got,
            expected,
            atol=atol,
            rtol=rtol,
            hint="alpha_bar(tau) = cos(((tau + s) / (1 + s)) * pi / 2) ** 2 with tau = t / T for t = 0..T, then "
            "beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta) for t = 0..T-1.",
        )
    note = (
        " (You computed in float32: fine for training, but the last betas, where alpha_bar is tiny, are only "
        "accurate to ~1e-5; ddpm_lib computes schedules in float64.)"
        if single
        else ""
    )
    passed(NAME, "Your betas match Nichol & Dhariwal's cosine schedule for every T, s and max_beta tried." + note)
