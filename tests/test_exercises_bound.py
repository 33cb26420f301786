"""The derivation's exercises (notebook 04 section 0: the KL of two Gaussians; notebook 05: DDIM's sigma of
eq. 16): right answers written here independently pass, and each named mistake gets its own message."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.bound import check_gaussian_kl
from ddpm_lib.course.exercises.sampling import check_ddim_sigma

# --- the KL of two Gaussians -------------------------------------------------------------------------


def kl_right(m1, v1, m2, v2):
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def kl_swapped(m1, v1, m2, v2):
    return kl_right(m2, v2, m1, v1)


def kl_std_form(m1, v1, m2, v2):  # log(s2/s1) + (s1^2 + d^2)/(2 s2^2) - 1/2 with s = var
    return torch.log(v2 / v1) + (v1**2 + (m1 - m2) ** 2) / (2 * v2**2) - 0.5


def kl_no_half(m1, v1, m2, v2):
    return torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1


def kl_no_minus_one(m1, v1, m2, v2):
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2)


def kl_log_upside_down(m1, v1, m2, v2):
    return 0.5 * (torch.log(v1 / v2) + (v1 + (m1 - m2) ** 2) / v2 - 1)


def kl_not_squared(m1, v1, m2, v2):
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2)) / v2 - 1)


def kl_wrong_denominator(m1, v1, m2, v2):
    return 0.5 * (torch.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v1 - 1)


def kl_summed(m1, v1, m2, v2):
    return kl_right(m1, v1, m2, v2).sum()


def test_right_kl_passes(capsys):
    assert check_gaussian_kl(kl_right) is kl_right
    assert "Correct: gaussian_kl" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (kl_swapped, "swapped"),
    (kl_std_form, "standard-deviation form"),
    (kl_no_half, "1/2 in front is missing"),
    (kl_no_minus_one, "the -1 is missing"),
    (kl_log_upside_down, "log ratio is upside down"),
    (kl_not_squared, "square the difference"),
    (kl_wrong_denominator, "not by var1"),
    (kl_summed, "one KL per element"),
])
def test_each_named_kl_mistake_gets_its_message(wrong, words):
    with pytest.raises(ExerciseError, match=words) as info:
        check_gaussian_kl(wrong)
    assert "1/2 [log(var2" not in str(info.value)  # the message never spells out the solution


def test_an_unrecognised_wrong_kl_gets_the_generic_hint():
    with pytest.raises(ExerciseError, match="values differ from the reference"):
        check_gaussian_kl(lambda m1, v1, m2, v2: kl_right(m1, v1, m2, v2) * 1.3 + 0.01)


# --- DDIM's sigma (eq. 16 of Song et al. 2021) -----------------------------------------------------------


def sigma_right(ab_t, ab_prev, eta):
    beta = 1 - ab_t / ab_prev
    return eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * beta)


def sigma_variance(ab_t, ab_prev, eta):
    return sigma_right(ab_t, ab_prev, eta) ** 2


def sigma_eta_inside(ab_t, ab_prev, eta):
    return math.sqrt(eta * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev))


def sigma_first_upside_down(ab_t, ab_prev, eta):
    return eta * math.sqrt((1 - ab_t) / (1 - ab_prev) * (1 - ab_t / ab_prev))


def sigma_one_minus_abar_t(ab_t, ab_prev, eta):
    return eta * math.sqrt((1 - ab_prev) / (1 - ab_t) * (1 - ab_t))


def sigma_fixed_large(ab_t, ab_prev, eta):
    return eta * math.sqrt(1 - ab_t / ab_prev)


def sigma_ratio_upside_down(ab_t, ab_prev, eta):
    return eta * math.sqrt((1 - ab_prev) / (1 - ab_t)) * math.sqrt(1 - ab_prev / ab_t)


def sigma_ratio_upside_down_torch(ab_t, ab_prev, eta):
    return eta * torch.tensor((1 - ab_prev) / (1 - ab_t) * (1 - ab_prev / ab_t)).sqrt().item()


def test_right_sigma_passes(capsys):
    assert check_ddim_sigma(sigma_right) is sigma_right
    assert "Correct: ddim_sigma" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, words", [
    (sigma_variance, "you returned sigma\\^2"),
    (sigma_eta_inside, "eta multiplies sigma, outside"),
    (sigma_first_upside_down, "first factor is upside down"),
    (sigma_one_minus_abar_t, "not sqrt\\(1 - abar_t\\)"),
    (sigma_fixed_large, "fixed_large"),
    (sigma_ratio_upside_down, "square root of a negative number"),
    (sigma_ratio_upside_down_torch, "NaN"),
])
def test_each_named_sigma_mistake_gets_its_message(wrong, words):
    with pytest.raises(ExerciseError, match=words):
        check_ddim_sigma(wrong)


def test_ddim_sigma_with_eta_1_is_ddpms_fixed_small_std():
    """The checker's reference, at consecutive steps and eta = 1, is sqrt(beta-tilde_t) of the library's schedule."""
    from ddpm_lib.diffusion.schedules import make_schedule

    s = make_schedule("linear", 1000)
    ab = torch.cumprod(1 - s.betas.double(), 0)
    for t in (1, 10, 500, 999):
        sigma = check_ddim_sigma.reference(float(ab[t]), float(ab[t - 1]), 1.0)
        assert math.isclose(sigma**2, float(s.posterior_variance[t]), rel_tol=1e-5)


# --- make student and make grade on notebook 04's new exercise -----------------------------------------


def test_student_copy_and_grading_of_the_kl_exercise(tmp_path, capsys):
    """The exercise cell of the real notebook 04, alone in a notebook: the student copy is "not done", the
    instructor's answer "correct", and an answer with the Gaussians swapped "wrong" with that mistake named."""
    import csv
    import json
    import re
    from pathlib import Path

    from ddpm_lib.course import grade, student

    nb04 = json.loads((Path(__file__).resolve().parent.parent / "notebooks" / "04_training.ipynb").read_text())
    [cell] = [c for c in nb04["cells"] if "def gaussian_kl_mine" in "".join(c["source"])]
    nb = {"cells": [{"cell_type": "code", "id": "imp", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": "import torch"}, cell],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    name = "04_training.ipynb"
    instructor, sub = tmp_path / "instructor", tmp_path / "sub"
    for d in (instructor, sub / "bob", sub / "carol"):
        d.mkdir(parents=True)
    (instructor / name).write_text(json.dumps(nb))
    (sub / "bob" / name).write_text(json.dumps(nb))
    src = "".join(cell["source"])
    wrong = re.sub(r"### BEGIN SOLUTION\n.*?### END SOLUTION", "return 0.5 * (torch.log(var1 / var2) + (var2 + "
                   "(mean1 - mean2) ** 2) / var1 - 1)", src, flags=re.S)
    assert wrong != src
    (sub / "carol" / name).write_text(json.dumps({**nb, "cells": [nb["cells"][0], {**cell, "source": wrong}]}))
    student.write_student_copies([instructor / name], sub / "alice")
    out = tmp_path / "grades.csv"
    assert grade.main([str(sub), "--out", str(out), "--timeout", "300", "--instructor", str(instructor)]) == 0
    rows = {r["student"]: r for r in csv.DictReader(out.open(encoding="utf-8"))}
    assert {s: rows[s]["exercise"] for s in rows} == {"alice": "gaussian_kl", "bob": "gaussian_kl", "carol": "gaussian_kl"}
    assert rows["alice"]["status"] == "not done" and rows["bob"]["status"] == "correct"
    assert rows["carol"]["status"] == "wrong" and "swapped" in rows["carol"]["message"]
