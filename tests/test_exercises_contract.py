"""The checker contract (ddpm_lib.course.exercises): every checker hands back the function to use; outcome() grades.

- not done (NotImplementedError): exactly one friendly line, no exception, the checker's reference returned;
- correct: the student's own function returned;
- wrong: ExerciseError with the hint;
- outcome(key, fn) gives (status, message) without printing: what ddpm_lib.course.grade records;
- capture mode (DDPM_GRADE_CAPTURE, in a student's kernel while grading): the answer the instructor notebook
  names is stored, the reference returned, nothing graded and nothing written.
"""

from __future__ import annotations

import json

import pytest

from ddpm_lib.course import exercises
from ddpm_lib.course.exercises import ExerciseError, load_all

CHECKERS = load_all()


def test_every_checker_module_registers_checkers_with_a_reference():
    assert len(CHECKERS) >= 12
    for key, checker in CHECKERS.items():
        assert checker.__name__ == f"check_{key}"
        assert callable(checker.reference)


def _todo(*args, **kwargs):
    raise NotImplementedError("your code here")


@pytest.mark.parametrize("key", sorted(CHECKERS))
def test_not_done_prints_one_line_and_returns_the_reference(key, capsys):
    checker = CHECKERS[key]
    assert checker(_todo) is checker.reference
    out = capsys.readouterr()
    assert out.out == "_todo: not done yet: the rest of the notebook uses the reference solution\n"
    assert out.err == ""
    assert exercises.outcome(key, _todo) == ("not done", exercises.NOT_DONE_LINE)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("key", sorted(CHECKERS))
def test_the_reference_passes_its_own_checker(key, capsys):
    """The function handed back to a student who has not done the exercise is a correct answer."""
    checker = CHECKERS[key]
    assert checker(checker.reference) is checker.reference
    assert "Correct" in capsys.readouterr().out
    assert exercises.outcome(key, checker.reference) == ("correct", "")


@pytest.mark.parametrize("key", sorted(CHECKERS))
def test_every_checker_declares_the_library_code_it_stands_for(key):
    """"uses library" detection needs the objects: every declared name resolves, and the reference is listed."""
    from ddpm_lib.course.libcalls import forbidden

    checker = CHECKERS[key]
    found = forbidden(key)
    assert len(found) == len(checker.library) + 1
    assert found[-1][1] is checker.reference
    assert all(name.startswith("ddpm_lib.") for name in checker.library)


def _wrong_everywhere(*args, **kwargs):
    return "certainly not the answer"


def test_wrong_answer_raises_and_is_graded_wrong(capsys):
    from ddpm_lib.course.exercises.guidance import check_cfg_mix

    with pytest.raises(ExerciseError, match="torch.Tensor"):
        check_cfg_mix(_wrong_everywhere)
    status, message = exercises.outcome("cfg_mix", _wrong_everywhere)
    assert status == "wrong" and "torch.Tensor" in message and message.startswith("cfg_mix")


def test_student_exception_is_wrong_and_shows_only_the_students_frames():
    from ddpm_lib.course.exercises.guidance import check_cfg_mix

    def broken_mix(c, u, w):
        return c.view(7, -1)  # 96 numbers do not split into 7 rows

    with pytest.raises(ExerciseError, match="your code raised RuntimeError") as info:
        check_cfg_mix(broken_mix)
    shown = "\n".join(info.value._render_traceback_())
    assert "return c.view(7, -1)" in shown and "ddpm_lib/exercises" not in shown
    assert shown.splitlines()[-1].startswith("ExerciseError: cfg_mix: your code raised RuntimeError")
    assert exercises.outcome("cfg_mix", broken_mix)[0] == "wrong"


def test_a_crashing_checker_is_graded_error():
    @exercises.exercise(reference=abs, name="demo_crash")
    def check_demo(fn):
        raise KeyError("bug in the checker")

    try:
        with pytest.raises(KeyError):
            check_demo(abs)
        status, message = exercises.outcome("demo_crash", abs)
    finally:
        exercises.CHECKERS.pop("demo_crash", None)
    assert status == "error" and "KeyError" in message and "checker itself" in message


def test_capture_mode_stores_the_instructors_name_and_returns_the_reference(tmp_path, monkeypatch, capsys):
    """In the student's kernel while grading: nothing is checked or written; the function bound to the name the
    instructor notebook uses is what the grader will call, even if the cell passes something else."""
    from ddpm_lib.course.exercises.guidance import check_cfg_mix

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DDPM_GRADE_CAPTURE", json.dumps({"cfg_mix": "mix_mine"}))
    monkeypatch.setitem(globals(), "mix_mine", _wrong_everywhere)
    exercises.CAPTURED.clear()
    try:
        assert check_cfg_mix(abs) is check_cfg_mix.reference
        assert exercises.CAPTURED["cfg_mix"] is _wrong_everywhere
        assert "handed in for grading" in capsys.readouterr().out
    finally:
        exercises.CAPTURED.clear()
    assert list(tmp_path.iterdir()) == []
