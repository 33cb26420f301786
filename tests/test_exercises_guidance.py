"""The CFG exercise checker accepts the right answer and explains the usual wrong ones."""

import pytest

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.guidance import check_cfg_mix


def test_accepts_the_formula(capsys):
    check_cfg_mix(lambda c, u, w: u + w * (c - u))
    check_cfg_mix(lambda c, u, w: w * c + (1 - w) * u)  # the same, rearranged
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "wrong, needle",
    [
        (lambda c, u, w: c + w * (u - c), "swapped"),
        (lambda c, u, w: (1 + w) * c - w * u, "Ho & Salimans"),
        (lambda c, u, w: w * (c - u), "missing"),
        (lambda c, u, w: u + w * c, r"out_uncond \+ w"),
        (lambda c, u, w: (u + w * (c - u))[0], "shape"),
    ],
)
def test_rejects_plausible_mistakes(wrong, needle):
    with pytest.raises(ExerciseError, match=needle):
        check_cfg_mix(wrong)


def test_not_written_yet():
    def stub(c, u, w):
        raise NotImplementedError("your code here")

    assert check_cfg_mix(stub) is check_cfg_mix.reference  # not done: the reference is handed back
