"""ddpm_lib.course.grade (make grade) on a small class: every exercise gets the right status, crashes and hangs included.

Three students hand in notebooks 00 and 02 (the whole course in the slow version):
- alice: the unanswered student copies (make student)       -> every exercise "not done";
- bob: the instructor copies                                 -> every exercise "correct";
- carol: a wrong answer in the first exercise of one notebook -> that one "wrong", the rest of it "correct";
         and a notebook that raises in its first cell          -> all its exercises "error" (not reached).
Every verdict is computed by the grader's checkers on what the student's functions return in their kernel
(tests/test_grade_hostile.py: what a hostile notebook can and cannot do to that).
"""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest

from ddpm_lib.course import grade, student

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
SMALL = ["00_welcome.ipynb", "02_noise_schedules.ipynb"]


def _write(nb: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb, indent=1), encoding="utf-8")


def _with_wrong_first_answer(nb: dict) -> dict:
    """The instructor notebook with its first solution replaced by `return None` (wrong for these exercises)."""
    nb = json.loads(json.dumps(nb))
    for cell in nb["cells"]:
        src = "".join(cell["source"])
        if cell["cell_type"] == "code" and "### BEGIN SOLUTION" in src:
            new = re.sub(r"^([ \t]*)### BEGIN SOLUTION\n.*?### END SOLUTION[ \t]*$", r"\1return None", src,
                         count=1, flags=re.S | re.M)
            assert new != src
            cell["source"] = new
            return nb
    raise AssertionError("no exercise found")


def _raising_at_top(nb: dict) -> dict:
    nb = json.loads(json.dumps(nb))
    nb["cells"].insert(0, {"cell_type": "code", "id": "boom", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": 'raise RuntimeError("boom at the top")'})
    return nb


def _make_class(tmp_path: Path, names: list[str]) -> Path:
    sub = tmp_path / "submissions"
    copies = tmp_path / "student_copies"
    student.write_student_copies([NOTEBOOKS / n for n in names], copies)
    for i, name in enumerate(names):
        original = json.loads((NOTEBOOKS / name).read_text(encoding="utf-8"))
        (sub / "alice").mkdir(parents=True, exist_ok=True)
        shutil.copy(copies / name, sub / "alice" / name)
        _write(original, sub / "bob" / name)
        _write(_with_wrong_first_answer(original) if i == 0 else _raising_at_top(original), sub / "carol" / name)
    return sub


def _expected(names: list[str]) -> dict[tuple[str, str, str], tuple[str, str]]:
    """(student, notebook, exercise) -> (status, a word the message must hold)."""
    exercises = grade.expected_exercises(NOTEBOOKS)
    want = {}
    for i, name in enumerate(names):
        assert exercises[name], f"{name} has no exercises"
        for j, ex in enumerate(exercises[name]):
            want[("alice", name, ex)] = ("not done", "not done yet")
            want[("bob", name, ex)] = ("correct", "")
            if i == 0:
                want[("carol", name, ex)] = ("wrong", ex) if j == 0 else ("correct", "")
            else:
                want[("carol", name, ex)] = ("error", "RuntimeError: boom at the top")
    return want


def _check_class(tmp_path: Path, names: list[str], capsys) -> None:
    sub = _make_class(tmp_path, names)
    out = tmp_path / "grades.csv"
    assert grade.main([str(sub), "--out", str(out), "--timeout", "600", "--instructor", str(NOTEBOOKS)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    got = {(r["student"], r["notebook"], r["exercise"]): (r["status"], r["message"]) for r in rows}
    want = _expected(names)
    assert set(got) == set(want)
    for key, (status, word) in want.items():
        assert got[key][0] == status, (key, got[key])
        assert word in got[key][1], (key, got[key])
    summary = {r["student"]: r for r in csv.DictReader((tmp_path / "grades_summary.csv").open(encoding="utf-8"))}
    n = len(want) // 3
    assert summary["bob"]["correct"] == str(n) and summary["bob"]["notebooks_not_finished"] == ""
    assert summary["alice"]["not_done"] == str(n) and summary["alice"]["notebooks_not_finished"] == ""
    assert "boom at the top" in summary["carol"]["notebooks_not_finished"]
    assert int(summary["carol"]["wrong"]) == 1
    assert "carol" in capsys.readouterr().out


def test_grades_three_students_on_two_notebooks(tmp_path, capsys):
    _check_class(tmp_path, SMALL, capsys)


@pytest.mark.slow
def test_grades_three_students_on_every_notebook(tmp_path, capsys):
    _check_class(tmp_path, sorted(p.name for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb")), capsys)


def test_a_hanging_notebook_is_stopped_and_recorded(tmp_path):
    """A notebook that hangs past the limit is stopped; its exercises are listed as not reached; the run goes on."""
    sub = tmp_path / "sub"
    nb = {"cells": [{"cell_type": "code", "id": "hang", "metadata": {}, "outputs": [], "execution_count": None,
                     "source": "import time\ntime.sleep(600)"}],
          "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    _write(nb, sub / "dave" / "00_welcome.ipynb")
    out = tmp_path / "grades.csv"
    assert grade.main([str(sub), "--out", str(out), "--timeout", "4", "--instructor", str(NOTEBOOKS)]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["exercise"] for r in rows] == grade.expected_exercises(NOTEBOOKS)["00_welcome.ipynb"]
    assert all(r["status"] == "error" and "ran past the 4 s limit" in r["message"] for r in rows)


def test_rows_for_missing_and_deleted_exercises():
    plan = [("a", "a_mine"), ("b", "b_mine")]
    run = grade.NotebookRun("ok", results={"a": ("correct", "")})
    rows = grade.rows_for("s", "n.ipynb", plan, run)
    assert [(r["exercise"], r["status"]) for r in rows] == [("a", "correct"), ("b", "error")]
    assert "never ran" in rows[1]["message"]
    missing = grade.rows_for("s", "n.ipynb", plan[:1], grade.NotebookRun("missing", "notebook not submitted"))
    assert missing[0]["status"] == "error" and missing[0]["message"] == "notebook not submitted"


def test_exercises_are_read_from_checker_calls():
    nb = {"cells": [
        {"cell_type": "markdown", "source": "check_cosine_schedule(f) in prose does not count"},
        {"cell_type": "code", "source": "from ddpm_lib.course.exercises.schedules import check_cosine_schedule\n"
                                        "def check_something_else(x): pass\ncheck_something_else(1)\n"
                                        "f = check_cosine_schedule(f)\ncheck_cosine_schedule(f)"},
        {"cell_type": "code", "source": ["g = check_add_noise(g)"]},
    ]}
    assert grade.exercises_in(nb) == ["cosine_schedule", "add_noise"]
    assert grade.exercise_bindings(nb) == {"cosine_schedule": "f", "add_noise": "g"}


@pytest.mark.parametrize("make_args, words", [
    (lambda t: [str(t / "nope")], "is not a folder"),
    (lambda t: [str(t / "empty")], "holds no student folders"),
    (lambda t: [str(t / "sub")], "notebooks were handed in"),
    (lambda t: [str(t / "sub"), "--instructor", str(t)], "holds no notebooks"),
    (lambda t: [str(t / "sub"), "--timeout", "0"], "--timeout"),
    (lambda t: [str(t / "sub"), "--timeout", "nan"], "--timeout must be a finite positive number"),
    (lambda t: [str(t / "sub"), "--timeout", "inf"], "--timeout must be a finite positive number"),
    (lambda t: [str(t / "sub"), "--timeout", "-1"], "--timeout must be a finite positive number"),
    (lambda t: [str(t / "sub"), "--call-timeout", "abc"], "--call-timeout must be a number"),
    (lambda t: [str(t / "sub"), "--sandbox", "docker"], "--sandbox"),
    (lambda t: [str(t / "sub"), "--resume"], "--resume"),
    (lambda t: [str(t / "sub"), "--kernel", "no-such-kernel"], "no such Jupyter kernel"),
    (lambda t: [str(t / "sub"), "--out", str(t / "no" / "g.csv")], "does not exist"),
])
def test_bad_input_is_one_line_and_exit_code_2(tmp_path, capsys, make_args, words):
    (tmp_path / "sub" / "erin").mkdir(parents=True)
    (tmp_path / "empty").mkdir()
    if "handed in" not in words:
        _write({"cells": []}, tmp_path / "sub" / "erin" / "00_welcome.ipynb")
    args = make_args(tmp_path)
    if "--out" not in args:
        args += ["--out", str(tmp_path / "grades.csv")]  # never write into the working directory
    assert grade.main(args) == 2
    assert not (tmp_path / "grades.csv").exists()
    err = capsys.readouterr().err
    assert words in err and len(err.strip().splitlines()) == 1


def test_every_checker_grades_through_the_kernel_proxy(tmp_path):
    """All exercises of the course, answered by the checkers' own references, are graded correct through the
    kernel proxy (arguments pickled in, answers and in-place changes read back: EMA tensors, a model's
    weights and gradients across train_step's two calls, generators), and "not done" comes back as such.

    The answers reach the references through a computed name, which the static "uses library" check cannot
    see (its documented limit)."""
    from ddpm_lib.course.exercises import load_all

    keys = sorted(load_all())
    head = ("import importlib\nC = importlib.import_module('ddpm_lib.course' + '.exercises').load_all()\n"
            "REF = {k: getattr(c, 're' + 'ference') for k, c in C.items()}\n")

    def nb(body):
        cells = [head] + [f"check_{k} = C['{k}']\ndef answer_{k}(*a, **kw):\n    {body(k)}\n"
                          f"answer_{k} = check_{k}(answer_{k})\n" for k in keys]
        return {"cells": [{"cell_type": "code", "id": f"c{i}", "metadata": {}, "outputs": [], "execution_count": None,
                           "source": c} for i, c in enumerate(cells)],
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}

    _write(nb(lambda k: f"return REF['{k}'](*a, **kw)"), tmp_path / "inst" / "all.ipynb")
    _write(nb(lambda k: f"return REF['{k}'](*a, **kw)"), tmp_path / "sub" / "ref" / "all.ipynb")
    _write(nb(lambda k: "raise NotImplementedError"), tmp_path / "sub" / "todo" / "all.ipynb")
    out = tmp_path / "grades.csv"
    assert grade.main([str(tmp_path / "sub"), "--instructor", str(tmp_path / "inst"), "--out", str(out)]) == 0
    got = {(r["student"], r["exercise"]): (r["status"], r["message"]) for r in csv.DictReader(out.open())}
    assert got == {**{("ref", k): ("correct", "") for k in keys},
                   **{("todo", k): ("not done", "not done yet: the rest of the notebook uses the reference solution")
                      for k in keys}}
