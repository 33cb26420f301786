"""Notebook 05's checkers accept right answers (written here independently) and reject plausible wrong ones."""

import math

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.sampling import (
    check_ddim_step,
    check_ddpm_step,
    check_slerp,
)


def _ab(betas, t):
    return torch.cumprod(1 - betas.double(), 0)[t].item() if t >= 0 else 1.0


def ddpm_step_right(eps_hat, x_t, z, betas, t):
    b, ab_t, ab_prev = betas[t].item(), _ab(betas, t), _ab(betas, t - 1)
    mean = (x_t - b / math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(1 - b)
    return mean if t == 0 else mean + math.sqrt((1 - ab_prev) / (1 - ab_t) * b) * z


def ddpm_step_large_variance(eps_hat, x_t, z, betas, t):
    b, ab_t = betas[t].item(), _ab(betas, t)
    mean = (x_t - b / math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(1 - b)
    return mean + math.sqrt(b) * z


def ddim_step_right(eps_hat, x_t, ab_t, ab_prev):
    x0 = (x_t - math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t)
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_prev) * eps_hat


def ddim_step_wrong_direction(eps_hat, x_t, ab_t, ab_prev):
    x0 = (x_t - math.sqrt(1 - ab_t) * eps_hat) / math.sqrt(ab_t)
    return math.sqrt(ab_prev) * x0 + math.sqrt(1 - ab_t) * eps_hat


def slerp_right(z0, z1, a):
    theta = torch.acos((z0 * z1).sum() / (z0.norm() * z1.norm()))
    return (torch.sin((1 - a) * theta) * z0 + torch.sin(a * theta) * z1) / torch.sin(theta)


def lerp(z0, z1, a):
    return (1 - a) * z0 + a * z1


def not_written(*args):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("checker, right, wrong, hint", [
    (check_ddpm_step, ddpm_step_right, ddpm_step_large_variance, r"not sqrt\(beta_t\)"),
    (check_ddim_step, ddim_step_right, ddim_step_wrong_direction, "previous"),
    (check_slerp, slerp_right, lerp, "linear interpolation"),
])
def test_checker_accepts_right_rejects_wrong(checker, right, wrong, hint, capsys):
    checker(right)
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match=hint):
        checker(wrong)
    assert checker(not_written) is checker.reference  # not done: the reference is handed back
