"""Notebook 04's training-step checker: Algorithm 1 written here two ways passes; each named mistake gets its hint."""

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.training import check_train_step, reference_train_step


def _loss(model, x0, t, noise, alpha_bars):
    ab = alpha_bars[t].reshape(-1, 1, 1, 1)
    return torch.nn.functional.mse_loss(model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t), noise)


def make_step(*, high=0, one_t=False, noise_first=False, zero_grad=True, step=True, generator_used=True,
              returns="item", zero_at_end=False):
    def train_step(model, opt, x0, alpha_bars, generator):
        T = alpha_bars.shape[0]
        gen = generator if generator_used else None
        n_t = 1 if one_t else x0.shape[0]
        if noise_first:
            noise = torch.randn(x0.shape, generator=gen)
            t = torch.randint(0, T - high, (n_t,), generator=gen)
        else:
            t = torch.randint(0, T - high, (n_t,), generator=gen)
            noise = torch.randn(x0.shape, generator=gen)
        loss = _loss(model, x0, t.expand(x0.shape[0]), noise, alpha_bars)
        if zero_grad and not zero_at_end:
            opt.zero_grad()
        loss.backward()
        if step:
            opt.step()
        if zero_at_end:
            opt.zero_grad()
        return {"item": loss.item(), "tensor": loss, "none": None}[returns]
    return train_step


@pytest.mark.parametrize("fn", [make_step(), make_step(noise_first=True), make_step(zero_at_end=True), reference_train_step])
def test_correct_variants_pass(fn, capsys):
    assert check_train_step(fn) is fn
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, hint", [
    ({"zero_grad": False}, "zero_grad"),
    ({"high": 1}, "EXCLUSIVE"),
    ({"one_t": True}, "one timestep per image"),
    ({"generator_used": False}, "generator"),
    ({"step": False}, "did not change"),
    ({"returns": "tensor"}, "Python float"),
    ({"returns": "none"}, "None"),
])
def test_named_mistakes(kwargs, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_train_step(make_step(**kwargs))


def test_not_done_hands_back_a_reference_that_trains(capsys):
    def train_step_mine(model, opt, x0, alpha_bars, generator):
        raise NotImplementedError("your code here")

    ref = check_train_step(train_step_mine)
    assert capsys.readouterr().out.strip() == ("train_step_mine: not done yet: the rest of the notebook uses the "
                                               "reference solution")
    # the reference lowers the loss of a one-parameter model on a fixed batch (an independent check that it trains)
    torch.manual_seed(0)
    model = torch.nn.Conv2d(1, 1, 1)
    wrapped = lambda x, t: model(x)  # noqa: E731
    opt = torch.optim.SGD(model.parameters(), lr=0.2)
    x0 = torch.rand(64, 1, 4, 4) * 2 - 1
    alpha_bars = torch.cumprod(1 - torch.linspace(1e-3, 0.2, 20), 0)
    gen = torch.Generator().manual_seed(0)
    losses = [ref(wrapped, opt, x0, alpha_bars, gen) for _ in range(60)]
    assert sum(losses[-10:]) < 0.9 * sum(losses[:10])
