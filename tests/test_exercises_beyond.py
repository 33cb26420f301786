"""Notebook 08's checkers accept right answers (written here independently) and name plausible wrong ones."""

import math

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.beyond import (
    check_flow_matching_pair,
    check_heun_step,
    check_score_from_eps,
)


def score_right(eps, ab):
    return -eps / (1 - ab) ** 0.5


def score_no_sqrt(eps, ab):
    return -eps / (1 - ab)


def score_sign(eps, ab):
    return eps / math.sqrt(1 - ab)


def heun_right(x, s, s_next, D):
    d = (x - D(x, s)) / s
    xe = x + (s_next - s) * d
    if s_next == 0:
        return xe
    return x + (s_next - s) * (d + (xe - D(xe, s_next)) / s_next) / 2


def heun_euler_only(x, s, s_next, D):
    return x + (s_next - s) * (x - D(x, s)) / s


def heun_slope_at_x(x, s, s_next, D):
    d = (x - D(x, s)) / s
    if s_next == 0:
        return x + (s_next - s) * d
    return x + (s_next - s) * (d + (x - D(x, s_next)) / s_next) / 2


def heun_always_corrects(x, s, s_next, D):
    d = (x - D(x, s)) / s
    xe = x + (s_next - s) * d
    return x + (s_next - s) * (d + (xe - D(xe, s_next)) / torch.tensor(s_next, dtype=x.dtype)) / 2


def fm_right(x0, eps, t):
    t = t.view(-1, 1, 1, 1)
    return x0 + t * (eps - x0), eps - x0


def fm_reversed(x0, eps, t):
    t = t.view(-1, 1, 1, 1)
    return (1 - t) * x0 + t * eps, x0 - eps


def fm_swapped(x0, eps, t):
    t = t.view(-1, 1, 1, 1)
    return t * x0 + (1 - t) * eps, eps - x0


def fm_ddpm_target(x0, eps, t):
    t = t.view(-1, 1, 1, 1)
    return (1 - t) * x0 + t * eps, eps


def not_written(*args):
    raise NotImplementedError


@pytest.mark.parametrize("checker, right, wrong, hint", [
    (check_score_from_eps, score_right, score_no_sqrt, "not by its variance"),
    (check_score_from_eps, score_right, score_sign, "MINUS"),
    (check_heun_step, heun_right, heun_euler_only, "Euler's step alone"),
    (check_heun_step, heun_right, heun_slope_at_x, "Euler's point x'"),
    (check_heun_step, heun_right, heun_always_corrects, "sigma_next = 0"),
    (check_flow_matching_pair, fm_right, fm_reversed, "x0 - eps is the reverse"),
    (check_flow_matching_pair, fm_right, fm_swapped, "ends are swapped"),
    (check_flow_matching_pair, fm_right, fm_ddpm_target, "DDPM's target"),
])
def test_checker_accepts_right_and_names_the_mistake(checker, right, wrong, hint, capsys):
    assert checker(right) is right
    assert "Correct" in capsys.readouterr().out
    with pytest.raises(ExerciseError, match=hint):
        checker(wrong)
    assert checker(not_written) is checker.reference
