"""Notebook 00's checkers accept right answers (float32, float64, NumPy) and name the usual mistakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.welcome import (
    check_to_model_range,
    check_to_pixels,
    reference_to_pixels,
)


def test_to_model_range_accepts_right_answers(capsys):
    check_to_model_range(lambda p: p.float() / 127.5 - 1)
    check_to_model_range(lambda p: (p.double() * 2 / 255 - 1).float())
    check_to_model_range(lambda p: p.double() / 127.5 - 1)  # float64 is fine
    check_to_model_range(lambda p: p.numpy().astype(np.float64) / 127.5 - 1)  # NumPy too
    check_to_model_range(lambda p: (p - 127.5) / 127.5)  # uint8 - float is float: no overflow
    assert capsys.readouterr().out.count("Correct") == 5


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda p: p.float() / 255, "[0, 1]"),
        (lambda p: p.float() / 255 - 0.5, "[-0.5, 0.5]"),
        (lambda p: p.float() / 128 - 1, "127.5"),
        (lambda p: p // 127 - 1, "dtype"),
        (lambda p: p.float()[0], "shape"),
        # uint8 arithmetic wraps around modulo 256 before the division turns it into floats
        (lambda p: p * 2 / 255 - 1, "overflowed"),
        (lambda p: (2 * p - 255) / 255, "overflowed"),
        (lambda p: (p - 128) / 128, "overflowed"),
        (lambda p: torch.where(p >= 128, (p * 3).float() / 127.5 - 1, p.float() / 127.5 - 1), "overflowed"),
    ],
)
def test_to_model_range_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_to_model_range(wrong)
    assert words in str(info.value)


def test_to_model_range_overflow_really_is_what_uint8_does():
    p = torch.tensor([200], dtype=torch.uint8)
    assert (p * 2).item() == 144 and (p - 228).item() == 228  # the numbers the hint quotes


def test_not_written_yet_hands_back_a_working_reference():
    def stub(p):
        raise NotImplementedError("your code here")

    ref = check_to_model_range(stub)
    assert ref is check_to_model_range.reference
    assert ref(torch.tensor([0, 255, 51], dtype=torch.uint8)).tolist() == pytest.approx([-1.0, 1.0, -0.6])
    ref = check_to_pixels(stub)
    assert ref(torch.tensor([-1.0, 1.0, -0.6, 7.0, -7.0])).tolist() == [0, 255, 51, 255, 0]


def test_reference_matches_the_endpoints():
    from ddpm_lib.course.exercises.welcome import reference_to_model_range

    out = reference_to_model_range(torch.tensor([0, 255, 51], dtype=torch.uint8))
    assert out.tolist() == pytest.approx([-1.0, 1.0, -0.6])


# --- to_pixels ---------------------------------------------------------------------------------


def test_to_pixels_accepts_right_answers(capsys):
    check_to_pixels(lambda x: ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    check_to_pixels(lambda x: ((x.clamp(-1, 1) + 1) / 2 * 255).round().byte())
    check_to_pixels(lambda x: torch.round((x.double() + 1) * 127.5).clamp(0, 255).to(torch.uint8))  # float64
    check_to_pixels(lambda x: np.clip(np.rint((x.numpy() + 1) * 127.5), 0, 255).astype(np.uint8))  # NumPy
    assert capsys.readouterr().out.count("Correct") == 4


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda x: ((x + 1) * 127.5).round().to(torch.uint8), "BEFORE converting"),  # no clamp: wraps
        (lambda x: ((x + 1) * 127.5).round().to(torch.uint8).clamp(0, 255), "too late"),
        (lambda x: ((x + 1) * 127.5).clamp(0, 255).to(torch.uint8), "truncates"),
        (lambda x: ((x + 1) * 127.5).to(torch.uint8), "truncates"),
        (lambda x: ((x + 1) * 128).round().clamp(0, 255).to(torch.uint8), "127.5"),
        (lambda x: (x * 127.5 + 1).round().clamp(0, 255).to(torch.uint8), "shifted after scaling"),
        (lambda x: ((x + 1) * 127.5).round().clamp(0, 255), "the values are right"),
        (lambda x: (x + 1) * 127.5, "torch.uint8"),
        (lambda x: ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)[0], "shape"),
        (lambda x: ((x + 1) * 127.0).round().clamp(0, 255).to(torch.uint8), "pixels differ"),
        (lambda x: [1, 2], "torch.Tensor"),
    ],
)
def test_to_pixels_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_to_pixels(wrong)
    assert words in str(info.value)


def test_to_pixels_reference_inverts_to_model_range_exactly():
    p = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(reference_to_pixels(p.float() / 127.5 - 1), p)
