"""Notebook 00's checker accepts the right answer and names the usual mistakes."""

from __future__ import annotations

import pytest
import torch

from ddpm_lib.exercises import ExerciseError
from ddpm_lib.exercises.welcome import check_to_model_range


def test_accepts_right_answers(capsys):
    check_to_model_range(lambda p: p.float() / 127.5 - 1)
    check_to_model_range(lambda p: (p.double() * 2 / 255 - 1).float())
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, words",
    [
        (lambda p: p.float() / 255, "[0, 1]"),
        (lambda p: p.float() / 255 - 0.5, "[-0.5, 0.5]"),
        (lambda p: p.float() / 128 - 1, "127.5"),
        (lambda p: p // 127 - 1, "dtype"),
        (lambda p: p.float()[0], "shape"),
    ],
)
def test_rejects_plausible_mistakes_with_specific_hints(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_to_model_range(wrong)
    assert words in str(info.value)


def test_not_written_yet():
    def stub(p):
        raise NotImplementedError("your code here")

    with pytest.raises(ExerciseError, match="not written yet"):
        check_to_model_range(stub)


def test_reference_matches_the_endpoints():
    from ddpm_lib.exercises.welcome import reference_to_model_range

    out = reference_to_model_range(torch.tensor([0, 255, 51], dtype=torch.uint8))
    assert out.tolist() == pytest.approx([-1.0, 1.0, -0.6])
