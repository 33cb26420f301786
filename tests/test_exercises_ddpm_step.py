"""Notebook 05's DDPM-step and posterior-mean checkers name the classic mistakes: alpha_bars[t - 1] at t = 0 (Python's
negative index), dividing by sqrt(abar_t) instead of sqrt(alpha_t), the two sign errors, and fresh noise instead of z.
Each wrong step below is written the way a student would (with cumprod tables), independently of the checker."""

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.sampling import check_ddpm_step


def _tables(betas):
    b = betas.double()
    return b, torch.cumprod(1 - b, 0)


def step(eps_hat, x_t, z, betas, t, *, divide_by="alpha", eps_sign=-1.0, z_sign=1.0, noise_at_0=False,
         negative_index=False, fresh_noise=False):
    b, ab = _tables(betas)
    ab_prev = ab[t - 1] if (t > 0 or negative_index) else torch.tensor(1.0, dtype=torch.float64)
    denom = (1 - b[t]).sqrt() if divide_by == "alpha" else ab[t].sqrt()
    mean = (x_t.double() + eps_sign * b[t] / (1 - ab[t]).sqrt() * eps_hat.double()) / denom
    if t == 0 and not noise_at_0:
        return mean.float()
    if fresh_noise:
        z = torch.randn_like(x_t)
    sigma = ((1 - ab_prev) / (1 - ab[t]) * b[t]).sqrt()
    return (mean + z_sign * sigma * z.double()).float()


def right(eps_hat, x_t, z, betas, t):
    return step(eps_hat, x_t, z, betas, t)


def right_float32_no_branch(eps_hat, x_t, z, betas, t):
    # a correct variant: float32 tables, the t = 0 case handled by multiplying z by (t > 0)
    alphas = 1 - betas
    ab = torch.cumprod(alphas, 0)
    ab_prev = torch.cat([torch.ones(1), ab[:-1]])[t]
    sigma = ((1 - ab_prev) / (1 - ab[t]) * betas[t]).sqrt()
    return (x_t - betas[t] / (1 - ab[t]).sqrt() * eps_hat) / alphas[t].sqrt() + float(t > 0) * sigma * z


@pytest.mark.parametrize("fn", [right, right_float32_no_branch])
def test_correct_steps_pass(fn, capsys):
    assert check_ddpm_step(fn) is fn
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("kwargs, hint", [
    ({"negative_index": True, "noise_at_0": True}, "negative index"),
    ({"divide_by": "alpha_bar"}, r"not by sqrt\(abar_t\)"),
    ({"eps_sign": +1.0}, "SUBTRACT the predicted noise"),
    ({"z_sign": -1.0}, "ADD the noise term"),
    ({"fresh_noise": True}, "use the noise `z`|Use the noise `z`"),
])
def test_ddpm_step_mistakes(kwargs, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_ddpm_step(lambda eps_hat, x_t, z, betas, t: step(eps_hat, x_t, z, betas, t, **kwargs))


def noise_at_last_step(eps_hat, x_t, z, betas, t):
    # sigma_0 = sqrt(beta_0) on the last step (with beta-tilde, sigma_0 would be 0 anyway)
    if t > 0:
        return right(eps_hat, x_t, z, betas, t)
    return step(eps_hat, x_t, z, betas, 0) + betas[0].sqrt() * z


def test_noise_on_the_last_step():
    with pytest.raises(ExerciseError, match="add no noise"):
        check_ddpm_step(noise_at_last_step)


def test_the_old_argument_order_is_named():
    """A right step whose def line still takes t before the schedule, (eps_hat, x_t, t, betas, z), is told to
    move t last."""
    with pytest.raises(ExerciseError, match=r"t comes LAST.*def ddpm_step_mine\(eps_hat, x_t, z, betas, t\)"):
        check_ddpm_step(lambda eps_hat, x_t, t, betas, z: right(eps_hat, x_t, z, betas, t))
