"""Notebook 04's checkers accept right answers and reject plausible wrong ones with the right hint."""

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.training import (
    check_diffusion_loss,
    check_ema_update,
    check_ema_warmup,
)


def loss_right(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return torch.nn.functional.mse_loss(model(x_t, t), noise)


def loss_no_sqrt(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    return ((model(ab * x0 + (1 - ab) * noise, t) - noise) ** 2).mean()


def loss_x0_target(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    return ((model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t) - x0) ** 2).mean()


def loss_sum(model, x0, noise, alpha_bars, t):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    return ((model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t) - noise) ** 2).sum()


def loss_item(model, x0, noise, alpha_bars, t):
    return loss_right(model, x0, noise, alpha_bars, t).item()


def loss_detached(model, x0, noise, alpha_bars, t):
    return loss_right(model, x0, noise, alpha_bars, t).detach()


def loss_clean_input(model, x0, noise, alpha_bars, t):
    return ((model(x0, t) - noise) ** 2).mean()


def test_loss_checker(capsys):
    check_diffusion_loss(loss_right)
    assert "Correct" in capsys.readouterr().out
    for fn, hint in [(loss_no_sqrt, "square roots"), (loss_x0_target, "NOISE"), (loss_sum, "not the sum"),
                     (loss_item, "item"), (loss_detached, "no gradient"), (loss_clean_input, "noisy image")]:
        with pytest.raises(ExerciseError, match=hint):
            check_diffusion_loss(fn)

    def todo(*a):
        raise NotImplementedError

    assert check_diffusion_loss(todo) is check_diffusion_loss.reference  # not done: the reference is handed back


def ema_right(ema, params, decay):
    for e, p in zip(ema, params):
        e.mul_(decay).add_(p, alpha=1 - decay)


def ema_rebind(ema, params, decay):
    for e, p in zip(ema, params):
        e = decay * e + (1 - decay) * p  # noqa: PLW2901 - the mistake under test


def ema_swapped(ema, params, decay):
    for e, p in zip(ema, params):
        e.copy_((1 - decay) * e + decay * p)


def ema_returns_new(ema, params, decay):
    return [decay * e + (1 - decay) * p for e, p in zip(ema, params)]


def test_ema_checkers(capsys):
    check_ema_update(ema_right)
    check_ema_warmup(lambda n, d: min(d, (1 + n) / (10 + n)))
    assert capsys.readouterr().out.count("Correct") == 2
    with pytest.raises(ExerciseError, match="rebinds"):
        check_ema_update(ema_rebind)
    with pytest.raises(ExerciseError, match="swapped"):
        check_ema_update(ema_swapped)
    with pytest.raises(ExerciseError, match="in place"):
        check_ema_update(ema_returns_new)
    with pytest.raises(ExerciseError, match="min"):
        check_ema_warmup(lambda n, d: max(d, (1 + n) / (10 + n)))
    with pytest.raises(ExerciseError, match="never exceed"):
        check_ema_warmup(lambda n, d: (1 + n) / (10 + n))


@pytest.mark.parametrize("fn, words", [
    (lambda n, d: d, "no warm-up"),  # n = 0 gives max(d, 0.1) = d: must not be called "use min, not max"
    (lambda n, d: max(d, (1 + n) / (10 + n)), "SMALLER of the two"),
    (lambda n, d: min(d, (1 + n) / (100 + n)), "expected min"),
    (lambda n, d: None, "return a number"),
])
def test_ema_warmup_names_the_mistake(fn, words):
    with pytest.raises(ExerciseError, match=words.replace("(", r"\(")):
        check_ema_warmup(fn)


def test_ema_warmup_accepts_numpy_and_tensor_values(capsys):
    import numpy as np
    import torch

    check_ema_warmup(lambda n, d: np.minimum(np.float64(d), (1 + n) / (10 + n)))
    check_ema_warmup(lambda n, d: torch.tensor([d, (1 + n) / (10 + n)], dtype=torch.float64).min())
    assert capsys.readouterr().out.count("Correct") == 2


def test_the_old_argument_order_is_named():
    """A right loss whose def line still takes t before the noise and the table, (model, x0, t, noise,
    alpha_bars), is told to move t last."""
    with pytest.raises(ExerciseError, match=r"t comes LAST.*def diffusion_loss_mine\(model, x0, noise, alpha_bars, t\)"):
        check_diffusion_loss(lambda model, x0, t, noise, alpha_bars: loss_right(model, x0, noise, alpha_bars, t))
