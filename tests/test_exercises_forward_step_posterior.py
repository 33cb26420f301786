"""Notebook 01's one-step and posterior checkers: right answers (tensor, float64, NumPy) pass, the usual mistakes
are named. The "student" functions are written from Ho et al. 2020 eqs. 2, 6 and 7, not taken from ddpm_lib."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.forward import check_posterior, check_q_step, reference_posterior

# --- one step (eq. 2) ------------------------------------------------------------------------------


def step_right(x_prev, noise, betas, t):
    b = betas[t]
    return (1 - b).sqrt() * x_prev + b.sqrt() * noise


def step_right_numpy(x_prev, noise, betas, t):
    b = float(betas.numpy()[t])
    return np.sqrt(1 - b) * x_prev.numpy() + np.sqrt(b) * noise.numpy()


def step_right_float32(x_prev, noise, betas, t):
    b = betas.float()[t]
    return ((1 - b).sqrt() * x_prev.float() + b.sqrt() * noise.float()).double()


def test_q_step_accepts_right_answers(capsys):
    for fn in (step_right, step_right_numpy, step_right_float32):
        assert check_q_step(fn) is fn
    assert capsys.readouterr().out.count("Correct") == 3


@pytest.mark.parametrize("wrong, words", [
    (lambda x, n, b, t: (1 - b[t - 1]).sqrt() * x + b[t - 1].sqrt() * n, "betas[-1]"),  # negative index at t = 0
    (lambda x, n, b, t: torch.cumprod(1 - b, 0)[t].sqrt() * x + (1 - torch.cumprod(1 - b, 0)[t]).sqrt() * n, "eq. 4"),
    (lambda x, n, b, t: (1 - b[t]) * x + b[t] * n, "standard deviations"),
    (lambda x, n, b, t: (1 - b[t]).sqrt() * x + b[t] * n, "noise term needs a square root"),
    (lambda x, n, b, t: x + b[t].sqrt() * n, "variance-exploding"),
    (lambda x, n, b, t: b[t].sqrt() * x + (1 - b[t]).sqrt() * n, "swapped"),
    (lambda x, n, b, t: x.mul_((1 - b[t]).sqrt()).add_(b[t].sqrt() * n), "in place"),
    (lambda x, n, b, t: step_right(x, n, b, t)[0], "shape"),
    (lambda x, n, b, t: step_right(x, n, b, t) * 1.001, "values differ"),
])
def test_q_step_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_q_step(wrong)
    assert words in str(info.value), str(info.value)


# --- posterior (eqs. 6-7) --------------------------------------------------------------------------


def _abars(betas):
    return torch.cumprod(1 - betas, 0)


def posterior_right(x0, x_t, betas, t):
    ab = _abars(betas)
    ab_prev = ab[t - 1] if t > 0 else torch.tensor(1.0, dtype=betas.dtype)
    mean = (ab_prev.sqrt() * betas[t] / (1 - ab[t])) * x0 + ((1 - betas[t]).sqrt() * (1 - ab_prev) / (1 - ab[t])) * x_t
    return mean, (1 - ab_prev) / (1 - ab[t]) * betas[t]


def posterior_right_padded(x0, x_t, betas, t):
    # the same algebra with a padded table abar_prev = [1, abar_0, ..., abar_{T-2}], a NumPy float variance,
    # and the variance broadcast to the image's shape
    ab = _abars(betas)
    ab_prev = torch.cat([torch.ones(1, dtype=ab.dtype), ab[:-1]])[t]
    alpha = 1 - betas[t]
    mean = (ab_prev.sqrt() * (1 - alpha) * x0 + alpha.sqrt() * (1 - ab_prev) * x_t) / (1 - ab[t])
    var = np.float64(((1 - ab_prev) * (1 - alpha) / (1 - ab[t])).item())
    return mean, torch.full_like(x0, float(var))


def _wrong(mean_fn=None, var_fn=None):
    def fn(x0, x_t, betas, t):
        mean, var = posterior_right(x0, x_t, betas, t)
        ab = _abars(betas)
        return (mean_fn(x0, x_t, t, betas, ab) if mean_fn else mean), (var_fn(t, betas, ab) if var_fn else var)
    return fn


def _neg_index(x0, x_t, betas, t):
    ab = _abars(betas)
    ab_prev = ab[t - 1]  # at t = 0 this is ab[-1]
    mean = (ab_prev.sqrt() * betas[t] / (1 - ab[t])) * x0 + ((1 - betas[t]).sqrt() * (1 - ab_prev) / (1 - ab[t])) * x_t
    return mean, (1 - ab_prev) / (1 - ab[t]) * betas[t]


def _prev(t, ab):
    return ab[t - 1] if t > 0 else torch.tensor(1.0, dtype=ab.dtype)


def test_posterior_accepts_right_answers(capsys):
    for fn in (posterior_right, posterior_right_padded):
        assert check_posterior(fn) is fn
    assert capsys.readouterr().out.count("Correct") == 2


@pytest.mark.parametrize("wrong, words", [
    (_neg_index, "alpha_bars[-1]"),
    (_wrong(mean_fn=lambda x0, xt, t, b, ab: posterior_right(xt, x0, b, t)[0]), "swapped"),
    (_wrong(mean_fn=lambda x0, xt, t, b, ab: (ab[t].sqrt() * b[t] / (1 - ab[t])) * x0
            + ((1 - b[t]).sqrt() * (1 - ab[t]) / (1 - ab[t])) * xt), "PREVIOUS step"),
    (_wrong(mean_fn=lambda x0, xt, t, b, ab: (_prev(t, ab) * b[t] / (1 - ab[t])) * x0
            + ((1 - b[t]) * (1 - _prev(t, ab)) / (1 - ab[t])) * xt), "square roots"),
    (_wrong(mean_fn=lambda x0, xt, t, b, ab: (_prev(t, ab).sqrt() * b[t] / (1 - ab[t])) * x0
            + (ab[t].sqrt() * (1 - _prev(t, ab)) / (1 - ab[t])) * xt), "one step"),
    (_wrong(var_fn=lambda t, b, ab: b[t]), "FORWARD step"),
    (_wrong(var_fn=lambda t, b, ab: ((1 - _prev(t, ab)) / (1 - ab[t]) * b[t]).sqrt()), "not its square root"),
    (_wrong(var_fn=lambda t, b, ab: torch.rand(2)), "different values"),
    (_wrong(var_fn=lambda t, b, ab: "small"), "as a number"),
    (lambda x0, xt, b, t: posterior_right(x0, xt, b, t)[0], "pair"),
    (_wrong(mean_fn=lambda x0, xt, t, b, ab: posterior_right(x0, xt, b, t)[0] + 1e-3), "values differ"),
])
def test_posterior_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_posterior(wrong)
    assert words in str(info.value), str(info.value)


def test_posterior_reference_is_bayes_rule():
    """Closed-form check of the reference, independent of eq. 7: for one pixel, q(x_{t-1} | x_0) = N(a x0, 1 - abar_{t-1})
    and q(x_t | x_{t-1}) = N(sqrt(alpha_t) x_{t-1}, beta_t); the Gaussian posterior's precision is the sum of the two
    precisions, and its mean the precision-weighted combination."""
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float64)
    ab = _abars(betas)
    x0, xt = torch.tensor([0.3]), torch.tensor([-0.7])
    for t in (1, 10, 500, 999):
        a_t = 1 - betas[t].item()
        prec = 1 / (1 - ab[t - 1].item()) + a_t / betas[t].item()
        mean = (math.sqrt(ab[t - 1].item()) * 0.3 / (1 - ab[t - 1].item()) + math.sqrt(a_t) * -0.7 / betas[t].item()) / prec
        got_mean, got_var = reference_posterior(x0, xt, betas, t)
        assert got_var == pytest.approx(1 / prec, rel=1e-9)
        assert got_mean.item() == pytest.approx(mean, rel=1e-6)
    m0, v0 = reference_posterior(x0, xt, betas, 0)
    assert v0 == 0 and m0.item() == pytest.approx(0.3)  # at t = 0, x_0 is known exactly


# --- the argument order: t last, after the schedule, as in ddpm_lib -----------------------------------


def test_the_old_argument_order_is_named():
    """A right answer whose def line still takes t before the schedule (the course's order before issue 20) is
    told to move t last, for all three exercises of notebook 01."""
    from ddpm_lib.course.exercises.forward import check_add_noise

    def add_noise_t_first(x0, noise, t, betas):
        ab = torch.cumprod(1 - betas, 0)[t].reshape(-1, 1, 1, 1)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    cases = [
        (check_q_step, lambda x, t, n, b: step_right(x, n, b, t), "def q_step_mine(x_prev, noise, betas, t)"),
        (check_add_noise, add_noise_t_first, "def add_noise_mine(x0, noise, betas, t)"),
        (check_posterior, lambda x0, xt, t, b: posterior_right(x0, xt, b, t), "def posterior_mine(x0, x_t, betas, t)"),
    ]
    for checker, fn, signature in cases:
        with pytest.raises(ExerciseError) as info:
            checker(fn)
        assert "t comes LAST" in str(info.value) and signature in str(info.value), str(info.value)
