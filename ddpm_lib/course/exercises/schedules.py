"""Checkers for notebook 02 (noise schedules).

- ``check_log_snr(fn)``: ``fn(betas) -> lambda``, the log signal-to-noise ratio
  lambda_t = log(alpha_bar_t / (1 - alpha_bar_t)), alpha_bar_t = prod_{s <= t} (1 - beta_s) (Kingma et al. 2021).
- ``check_betas_from_alpha_bar(fn)``: ``fn(alpha_bar, num_timesteps, max_beta=0.999) -> betas``, any schedule
  given by a continuous alpha_bar(tau), tau in [0, 1]: beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta)
  (Nichol & Dhariwal 2021, sec. 3.2).
- ``check_cosine_schedule(fn)`` tests a student's ``fn(num_timesteps, s=0.008, max_beta=0.999) -> betas``
implementing the cosine schedule of Nichol & Dhariwal 2021 (eq. 17 and sec. 3.2):

    alpha_bar(tau) = cos^2( (tau + s) / (1 + s) * pi / 2 ),   tau = t / T in [0, 1]
    beta_t = min(1 - alpha_bar((t + 1) / T) / alpha_bar(t / T), max_beta),   t = 0..T-1

The answer is compared with :func:`reference_cosine_betas`, written out here in float64 independently of
:mod:`ddpm_lib.diffusion.schedules`; when it is wrong, the checker compares it with the results of the usual
mistakes (computed here, in float64) and names the one
it matches.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import numpy as np
import torch

from ddpm_lib.course.exercises import ExerciseError, call_student, check_tensor, exercise, passed

__all__ = ["check_betas_from_alpha_bar", "check_cosine_schedule", "check_log_snr"]

_NEGATIVE = (
    "some of your betas are negative (the first at t = {t}): beta_t = 1 - alpha_bar_{{t+1}} / alpha_bar_t is negative "
    "wherever alpha_bar INCREASES, and a negative variance is meaningless. alpha_bar must fall from ~1 to ~0{extra}."
)
_LOWER_CLIP = (
    "do not clip from below: only the large betas at the end are clipped (at max_beta). The first betas are tiny on "
    "purpose (the cosine's sqrt(beta_1) is about one pixel bin, 1/127.5); a lower clip at 1e-4 replaces them."
)

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
        _NEGATIVE.format(t=int(np.argmax(_betas_from(lambda t: np.cos((t / T + s) / (1 + s) * math.pi) ** 2, T,
                                                         max_beta) < 0)) if T > 1 else 0,
                         extra=": with pi instead of pi / 2 the angle reaches pi, and cos^2 comes back up to 1 after "
                               "tau = 0.5. Use ((tau + s) / (1 + s)) * pi / 2, which ends at pi / 2, where cos^2 = 0"),
        _betas_from(lambda t: np.cos((t / T + s) / (1 + s) * math.pi) ** 2, T, max_beta),
    )
    yield _LOWER_CLIP, np.clip(_betas_from(right_ab, T, max_beta, clip=False), 1e-4, max_beta)
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


@exercise(reference=reference_cosine_betas, library=('ddpm_lib.diffusion.schedules.cosine_betas',))
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
            if (got < 0).any():
                raise ExerciseError(f"{NAME}: wrong values for {desc}. Hint: "
                                    + _NEGATIVE.format(t=int((got < 0).nonzero()[0]), extra=""))
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


# --- the log-SNR of a schedule --------------------------------------------------------------------


def reference_log_snr(betas) -> torch.Tensor:
    """lambda_t = log(alpha_bar_t / (1 - alpha_bar_t)), alpha_bar_t = prod_{s<=t} (1 - beta_s), as a float64 product loop."""
    values = np.asarray(betas.detach().cpu().double() if isinstance(betas, torch.Tensor) else betas, dtype=np.float64)
    out, ab = [], 1.0
    for b in values.tolist():
        ab *= 1.0 - b
        out.append(math.log(ab) - math.log1p(-ab))
    return torch.tensor(out, dtype=torch.float64)


def _log_snr_mistakes(betas: torch.Tensor):
    b = betas.double()
    ab = torch.cumprod(1 - b, 0)
    lam = torch.log(ab / (1 - ab))
    wrong_ab = torch.cumprod(b, 0)
    yield ("alpha_bar is the cumulative product of (1 - beta), not of beta: torch.cumprod(betas, 0) multiplies "
           "the small betas together and collapses to 0 at once. Use torch.cumprod(1 - betas, 0).",
           torch.log(wrong_ab / (1 - wrong_ab)))
    yield ("you used the one-step alpha_t = 1 - beta_t; the SNR needs the cumulative alpha_bar_t = "
           "torch.cumprod(1 - betas, 0).", torch.log((1 - b) / b))
    yield ("the ratio is upside down: SNR = alpha_bar / (1 - alpha_bar) (signal power over noise power), "
           "which is large at t = 0 and small at t = T - 1.", -lam)
    yield ("SNR is a ratio of POWERS (variances): alpha_bar / (1 - alpha_bar), not of the amplitudes "
           "sqrt(alpha_bar) / sqrt(1 - alpha_bar) (whose log is half as large).", lam / 2)
    yield ("use the natural logarithm (torch.log), not log10.", lam / math.log(10))
    yield ("return the LOG of the SNR, lambda = log(alpha_bar / (1 - alpha_bar)).", ab / (1 - ab))
    yield ("alpha_bar is a product, not 1 - (sum of betas): use torch.cumprod(1 - betas, 0).",
           torch.log((1 - torch.cumsum(b, 0)) / torch.cumsum(b, 0)))


def _log_snr_cases():
    g = torch.Generator().manual_seed(21)
    linear = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    cosine = reference_cosine_betas(50)
    short = 0.02 + 0.3 * torch.rand(12, generator=g, dtype=torch.float64)
    return [("linear, T=1000", linear), ("cosine, T=50", cosine), ("random, T=12", short)]


@exercise(reference=reference_log_snr, library=('ddpm_lib.diffusion.schedules.NoiseSchedule',))
def check_log_snr(fn: Callable) -> None:
    """Check ``fn(betas) -> lambda`` (shape (T,)) on three schedules, float64 and float32 inputs."""
    name = "log_snr"
    for desc, betas in _log_snr_cases():
        for dtype in (torch.float64, torch.float32):
            given = betas.to(dtype)
            raw = call_student(name, fn, given.clone())
            got = _as_tensor(name, raw)
            expected = reference_log_snr(given)
            # float32 loses ~1e-7 relative in alpha_bar, i.e. up to ~1e-3 in lambda where 1 - alpha_bar ~ 1e-4
            atol = 2e-3 if (_is_single_precision(raw) or dtype == torch.float32) else 1e-8
            where = f"{desc}, {str(dtype).removeprefix('torch.')} betas"
            if tuple(got.shape) != tuple(expected.shape):
                raise ExerciseError(f"{name}: expected one value per step, shape {tuple(expected.shape)}, got "
                                    f"{tuple(got.shape)} ({where}).")
            if torch.allclose(got, expected, atol=atol, rtol=1e-6):
                continue
            for hint, wrong in _log_snr_mistakes(given):
                if torch.allclose(got, wrong, atol=atol, rtol=1e-6, equal_nan=True):
                    raise ExerciseError(f"{name}: wrong values ({where}). Hint: {hint}")
            if not torch.isfinite(got).all():
                first = int((~torch.isfinite(got)).nonzero()[0])
                raise ExerciseError(
                    f"{name}: your log-SNR is infinite or NaN at t = {first} ({where}). "
                    + ("At t = 0, alpha_bar_0 = 1 - beta_0 < 1: did you use alpha_bar_{t-1} (1 at t = 0, so log(1/0))? "
                       "alpha_bars[t] = torch.cumprod(1 - betas, 0)[t] includes beta_t." if first == 0 else
                       "Check that alpha_bar stays strictly between 0 and 1."))
            check_tensor(f"{name} ({where})", got, expected, atol=atol, rtol=1e-6,
                         hint="lambda_t is the log of alpha_bar_t / (1 - alpha_bar_t), where alpha_bar_t is the "
                              "cumulative product of (1 - beta) up to and including step t.")
    passed(name, "lambda_t = log(alpha_bar_t / (1 - alpha_bar_t)) falls from large positive (clean) to large negative (noise).")


# --- betas from a continuous alpha_bar ---------------------------------------------------------------


def _alpha_bar_value(kind: str, tau):
    """One test curve alpha_bar(tau), written for floats, NumPy arrays and torch tensors alike."""
    lib = torch if isinstance(tau, torch.Tensor) else np
    if kind == "cosine":
        return lib.cos((tau + 0.02) / 1.02 * math.pi / 2) ** 2
    if kind == "exponential":
        return lib.exp(-6.0 * tau)
    if kind == "linear":
        return 1.0 - tau
    return 1.0 / (1.0 + lib.exp(8.0 * (tau - 0.5)))  # a logistic curve (does not reach 0 at tau = 1)


def _alpha_bar_curve(kind: str):
    """alpha_bar(tau) test curves (a partial of a module-level function, so that the grader can send it to a kernel)."""
    return functools.partial(_alpha_bar_value, kind)


def reference_betas_from_alpha_bar(alpha_bar: Callable, num_timesteps: int, max_beta: float = 0.999) -> torch.Tensor:
    """beta_t = min(1 - alpha_bar((t+1)/T) / alpha_bar(t/T), max_beta), t = 0..T-1, point by point in float64."""
    T = num_timesteps
    ab = [float(alpha_bar(np.float64(t / T))) for t in range(T + 1)]
    return torch.tensor([min(1.0 - ab[t + 1] / ab[t], max_beta) for t in range(T)], dtype=torch.float64)


def _from_alpha_bar_mistakes(alpha_bar, T: int, max_beta: float):
    tau = np.arange(T + 1, dtype=np.float64) / T
    ab = np.asarray(alpha_bar(tau), dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = 1.0 - ab[1:] / ab[:-1]
        yield ("the betas are not clipped: where alpha_bar reaches 0 the last beta is 1, and the reverse process would "
               "divide by sqrt(1 - beta) = 0. Clip at the argument max_beta.", raw)
        yield _LOWER_CLIP, np.clip(raw, 1e-4, max_beta)
        yield ("clip at the argument `max_beta`, not a fixed 0.999.", np.minimum(raw, 0.999))
        yield ("the ratio is upside down: beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T), the later step on top "
               "(yours are negative).", np.minimum(1.0 - ab[:-1] / ab[1:], max_beta))
        yield ("beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T) is a ratio, not a difference.",
               np.minimum(ab[:-1] - ab[1:], max_beta))
        yield ("you returned alpha_bar itself; return the betas, 1 - alpha_bar((t+1)/T) / alpha_bar(t/T).", ab[1:])


@exercise(reference=reference_betas_from_alpha_bar, library=('ddpm_lib.diffusion.schedules.betas_from_alpha_bar',))
def check_betas_from_alpha_bar(fn: Callable) -> None:
    """Check ``fn(alpha_bar, num_timesteps, max_beta=0.999) -> betas`` (shape (T,)) on four curves."""
    name = "betas_from_alpha_bar"
    cases = [("cosine", 1000, 0.999), ("cosine", 20, 0.5), ("exponential", 10, 0.999), ("linear", 8, 0.999),
             ("logistic", 50, 0.999)]
    for kind, T, max_beta in cases:
        curve = _alpha_bar_curve(kind)
        desc = f"{kind} alpha_bar, num_timesteps={T}, max_beta={max_beta}"
        raw = call_student(name, fn, curve, T, max_beta=max_beta)
        got = _as_tensor(name, raw)
        atol = 1e-4 if _is_single_precision(raw) else 1e-9
        expected = reference_betas_from_alpha_bar(curve, T, max_beta)
        if tuple(got.shape) != (T,):
            raise ExerciseError(f"{name}: expected {T} betas of shape ({T},) for {desc}, got shape {tuple(got.shape)}."
                                + (" alpha_bar needs the T + 1 points tau = t / T, t = 0..T, but there are only T betas "
                                   "(one per pair of neighbours)." if got.numel() in (T + 1, T - 1) else ""))
        if torch.allclose(got, expected, atol=atol, rtol=1e-6):
            continue
        for hint, wrong in _from_alpha_bar_mistakes(curve, T, max_beta):
            w = torch.from_numpy(np.asarray(wrong, dtype=np.float64))
            if w.shape == got.shape and torch.allclose(got, w, atol=atol, rtol=1e-6, equal_nan=True):
                raise ExerciseError(f"{name}: wrong values ({desc}). Hint: {hint}")
        if torch.isfinite(got).all() and (got < 0).any():
            raise ExerciseError(f"{name}: wrong values ({desc}). Hint: "
                                + _NEGATIVE.format(t=int((got < 0).nonzero()[0]), extra=""))
        check_tensor(f"{name} ({desc})", got, expected, atol=atol, rtol=1e-6,
                     hint="evaluate alpha_bar once at the T + 1 points tau = t / T (t = 0..T), divide each value "
                          "by the one before it, and clip the betas at max_beta.")
    passed(name, "Any alpha_bar curve becomes a schedule: beta_t = 1 - alpha_bar_{t+1} / alpha_bar_t, clipped.")
