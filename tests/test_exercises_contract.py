"""The checker contract (ddpm_lib.course.exercises): every checker hands back the function to use and records its outcome.

- not done (NotImplementedError): exactly one friendly line, no exception, the checker's reference returned;
- correct: the student's own function returned;
- wrong: ExerciseError with the hint (or, when grading with DDPM_GRADE_CONTINUE=1, the hint printed and the
  reference returned);
- each outcome appended as one JSON line to $DDPM_GRADE_LOG.
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
def test_not_done_prints_one_line_and_returns_the_reference(key, capsys, tmp_path, monkeypatch):
    log = tmp_path / "grades.jsonl"
    monkeypatch.setenv("DDPM_GRADE_LOG", str(log))
    checker = CHECKERS[key]
    assert checker(_todo) is checker.reference
    out = capsys.readouterr()
    assert out.out == "_todo: not done yet: the rest of the notebook uses the reference solution\n"
    assert out.err == ""
    [entry] = [json.loads(line) for line in log.read_text().splitlines()]
    assert entry["exercise"] == key and entry["status"] == "not done"
    assert entry["checker"].endswith(f".check_{key}")


@pytest.mark.parametrize("key", sorted(CHECKERS))
def test_the_reference_passes_its_own_checker(key, capsys, tmp_path, monkeypatch):
    """The function handed back to a student who has not done the exercise is a correct answer."""
    log = tmp_path / "grades.jsonl"
    monkeypatch.setenv("DDPM_GRADE_LOG", str(log))
    checker = CHECKERS[key]
    assert checker(checker.reference) is checker.reference
    assert "Correct" in capsys.readouterr().out
    assert json.loads(log.read_text())["status"] == "correct"


def _wrong_everywhere(*args, **kwargs):
    return "certainly not the answer"


def test_wrong_answer_raises_records_and_continues_when_grading(capsys, tmp_path, monkeypatch):
    from ddpm_lib.course.exercises.guidance import check_cfg_mix

    log = tmp_path / "grades.jsonl"
    monkeypatch.setenv("DDPM_GRADE_LOG", str(log))
    monkeypatch.delenv("DDPM_GRADE_CONTINUE", raising=False)
    with pytest.raises(ExerciseError, match="torch.Tensor"):
        check_cfg_mix(_wrong_everywhere)
    monkeypatch.setenv("DDPM_GRADE_CONTINUE", "1")
    assert check_cfg_mix(_wrong_everywhere) is check_cfg_mix.reference
    assert capsys.readouterr().out.startswith("Wrong: cfg_mix")
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert [e["status"] for e in entries] == ["wrong", "wrong"]
    assert "torch.Tensor" in entries[0]["message"]


def test_student_exception_is_wrong_and_shows_only_the_students_frames(tmp_path, monkeypatch):
    from ddpm_lib.course.exercises.guidance import check_cfg_mix

    monkeypatch.setenv("DDPM_GRADE_LOG", str(tmp_path / "log"))

    def broken_mix(c, u, w):
        return c.view(7, -1)  # 96 numbers do not split into 7 rows

    with pytest.raises(ExerciseError, match="your code raised RuntimeError") as info:
        check_cfg_mix(broken_mix)
    shown = "\n".join(info.value._render_traceback_())
    assert "return c.view(7, -1)" in shown and "ddpm_lib/exercises" not in shown
    assert shown.splitlines()[-1].startswith("ExerciseError: cfg_mix: your code raised RuntimeError")
    assert json.loads((tmp_path / "log").read_text())["status"] == "wrong"


def test_a_crashing_checker_is_recorded_as_error(tmp_path, monkeypatch):
    log = tmp_path / "log"
    monkeypatch.setenv("DDPM_GRADE_LOG", str(log))

    @exercises.exercise(reference=abs, name="demo_crash")
    def check_demo(fn):
        raise KeyError("bug in the checker")

    try:
        with pytest.raises(KeyError):
            check_demo(abs)
    finally:
        exercises.CHECKERS.pop("demo_crash", None)
    entry = json.loads(log.read_text())
    assert entry["status"] == "error" and "KeyError" in entry["message"]


def test_no_log_without_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.delenv("DDPM_GRADE_LOG", raising=False)
    monkeypatch.chdir(tmp_path)
    exercises.record("x", "correct")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="status"):
        exercises.record("x", "fine")
