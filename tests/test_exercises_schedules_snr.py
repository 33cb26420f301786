"""Notebook 02's log-SNR and betas-from-alpha_bar checkers: right answers (torch, NumPy, float32) pass, the usual
mistakes are named. The "student" functions are written from the definitions, not taken from ddpm_lib."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.schedules import (
    check_betas_from_alpha_bar,
    check_log_snr,
    reference_log_snr,
)

# --- log-SNR ---------------------------------------------------------------------------------------


def log_snr_right(betas):
    ab = torch.cumprod(1 - betas, 0)
    return torch.log(ab / (1 - ab))


def log_snr_right_numpy_stable(betas):
    log_ab = np.cumsum(np.log1p(-betas.double().numpy()))  # log alpha_bar, summed
    return log_ab - np.log(-np.expm1(log_ab))  # log(ab) - log(1 - ab)


def log_snr_right_float32(betas):
    ab = torch.cumprod(1 - betas.float(), 0)
    return torch.log(ab) - torch.log1p(-ab)


def test_log_snr_accepts_right_answers(capsys):
    for fn in (log_snr_right, log_snr_right_numpy_stable, log_snr_right_float32):
        assert check_log_snr(fn) is fn
    assert capsys.readouterr().out.count("Correct") == 3


def _wrap(f):
    def fn(betas):
        ab = torch.cumprod(1 - betas, 0)
        return f(betas, ab)
    return fn


@pytest.mark.parametrize("wrong, words", [
    (_wrap(lambda b, ab: torch.log(torch.cumprod(b, 0) / (1 - torch.cumprod(b, 0)))), "cumprod(betas, 0)"),
    (_wrap(lambda b, ab: torch.log((1 - b) / b)), "one-step"),
    (_wrap(lambda b, ab: torch.log((1 - ab) / ab)), "upside down"),
    (_wrap(lambda b, ab: torch.log(ab.sqrt() / (1 - ab).sqrt())), "POWERS"),
    (_wrap(lambda b, ab: torch.log10(ab / (1 - ab))), "log10"),
    (_wrap(lambda b, ab: ab / (1 - ab)), "LOG of the SNR"),
    (_wrap(lambda b, ab: torch.log((1 - torch.cumsum(b, 0)) / torch.cumsum(b, 0))), "not 1 - (sum of betas)"),
    (_wrap(lambda b, ab: torch.log(torch.cat([ab.new_ones(1), ab[:-1]]) / (1 - torch.cat([ab.new_ones(1), ab[:-1]])))),
     "alpha_bar_{t-1}"),
    (_wrap(lambda b, ab: torch.log(ab / (1 - ab))[1:]), "shape"),
    (_wrap(lambda b, ab: torch.log(ab / (1 - ab)) + 0.01), "values differ"),
])
def test_log_snr_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_log_snr(wrong)
    assert words in str(info.value), str(info.value)


def test_log_snr_reference_closed_form():
    # constant betas: alpha_bar_t = (1 - b)^(t+1) exactly
    b = 0.1
    lam = reference_log_snr(torch.full((5,), b, dtype=torch.float64))
    want = [math.log((1 - b) ** k / (1 - (1 - b) ** k)) for k in range(1, 6)]
    assert lam.tolist() == pytest.approx(want, rel=1e-12)


# --- betas from a continuous alpha_bar ------------------------------------------------------------


def from_ab_right(alpha_bar, num_timesteps, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    ab = alpha_bar(tau)
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def from_ab_right_numpy_loop(alpha_bar, num_timesteps, max_beta=0.999):
    # like diffusers' betas_for_alpha_bar: one pair of neighbours at a time, in NumPy
    return np.array([min(1 - alpha_bar((i + 1) / num_timesteps) / alpha_bar(i / num_timesteps), max_beta)
                     for i in range(num_timesteps)])


def from_ab_right_float32(alpha_bar, num_timesteps, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float32) / num_timesteps
    ab = alpha_bar(tau)
    return torch.minimum(1 - ab[1:] / ab[:-1], torch.tensor(max_beta))


def test_betas_from_alpha_bar_accepts_right_answers(capsys):
    for fn in (from_ab_right, from_ab_right_numpy_loop, from_ab_right_float32):
        assert check_betas_from_alpha_bar(fn) is fn
    assert capsys.readouterr().out.count("Correct") == 3


def _variant(transform):
    def fn(alpha_bar, num_timesteps, max_beta=0.999):
        tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
        return transform(alpha_bar(tau), max_beta)
    return fn


@pytest.mark.parametrize("wrong, words", [
    (_variant(lambda ab, m: 1 - ab[1:] / ab[:-1]), "not clipped"),
    (_variant(lambda ab, m: (1 - ab[1:] / ab[:-1]).clamp(1e-4, m)), "do not clip from below"),
    (_variant(lambda ab, m: (1 - ab[1:] / ab[:-1]).clamp(max=0.999)), "not a fixed 0.999"),
    (_variant(lambda ab, m: (1 - ab[:-1] / ab[1:]).clamp(max=m)), "upside down"),
    (_variant(lambda ab, m: (ab[:-1] - ab[1:]).clamp(max=m)), "not a difference"),
    (_variant(lambda ab, m: ab[1:]), "returned alpha_bar itself"),
    (_variant(lambda ab, m: (1 - ab[1:] / ab[:-1]).clamp(max=m) * torch.where(ab[1:] > 0.5, 1.0, -1.0)),
     "betas are negative"),
    (lambda alpha_bar, T, max_beta=0.999: from_ab_right(alpha_bar, T - 1, max_beta), "T + 1 points"),
    (_variant(lambda ab, m: (1 - ab[1:] / ab[:-1]).clamp(max=m) * 1.01), "values differ"),
])
def test_betas_from_alpha_bar_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_betas_from_alpha_bar(wrong)
    assert words in str(info.value), str(info.value)
