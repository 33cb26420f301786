"""Notebook 04's loss checker names the common slips with a specific message (issue 19 item 5, issue 24 item 6).

Each wrong loss below is written the way a student writes it; the checker must answer with the one-line
hint for that slip, not with "got X, expected Y", and never with the solution's code.
"""

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.training import check_diffusion_loss


def _mse(model, x_t, t, noise):
    return ((model(x_t, t) - noise) ** 2).mean()


def loss_no_sqrt_on_noise(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    return _mse(model, ab.sqrt() * x0 + (1 - ab) * noise, t, noise)


def loss_no_sqrt_on_x0(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    return _mse(model, ab * x0 + (1 - ab).sqrt() * noise, t, noise)


def loss_alpha_not_alpha_bar(model, x0, noise, alpha_bars, t):
    alphas = torch.cat([alpha_bars[:1], alpha_bars[1:] / alpha_bars[:-1]])  # one step's 1 - beta_t
    a = alphas[t].reshape(-1, 1, 1, 1)
    return _mse(model, a.sqrt() * x0 + (1 - a).sqrt() * noise, t, noise)


def loss_index_t_minus_1(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t - 1].reshape(-1, 1, 1, 1)  # at t = 0 this reads alpha_bars[-1]
    return _mse(model, ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, noise)


def loss_no_reshape(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t]  # shape (B,): broadcasts against the LAST dimension of x0
    return _mse(model, ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, noise)


def loss_off_target(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    return 1.37 * _mse(model, ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t, noise)


@pytest.mark.parametrize("fn, words", [
    (loss_no_sqrt_on_noise, ["noise term needs a square root", "sqrt(1 - abar_t)"]),
    (loss_no_sqrt_on_x0, ["x0 term needs a square root"]),
    (loss_alpha_not_alpha_bar, ["alpha_t", "alpha_bar_t", "product"]),
    (loss_index_t_minus_1, ["alpha_bars[t - 1]", "wraps around", "alpha_bars[-1]"]),
    (loss_no_reshape, ["shape (B,)", "(B, 1, 1, 1)", "LAST dimensions"]),
])
def test_named_slip(fn, words):
    with pytest.raises(ExerciseError) as info:
        check_diffusion_loss(fn)
    message = str(info.value)
    for w in words:
        assert w in message, (w, message)
    assert "expected" not in message  # a named slip, not "got X, expected Y"
    assert "your code raised" not in message  # the broadcasting error is explained, not passed on raw


def test_unnamed_slip_gets_a_hint_not_the_solution():
    with pytest.raises(ExerciseError) as info:
        check_diffusion_loss(loss_off_target)
    message = str(info.value)
    assert "none of the usual slips" in message
    for code in (".reshape(-1, 1, 1, 1)", "ab.sqrt() * x0", "(1 - ab).sqrt() * noise", "mse_loss("):
        assert code not in message, code


def test_broadcasting_hint_keeps_the_students_traceback():
    with pytest.raises(ExerciseError) as info:
        check_diffusion_loss(loss_no_reshape)
    assert isinstance(info.value.__cause__, RuntimeError)  # shown above the hint in Jupyter (_render_traceback_)
