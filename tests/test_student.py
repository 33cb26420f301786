"""ddpm_lib.course.student (make student): solutions replaced at the right indentation, copies parse, bad markers named."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from ddpm_lib.course import student

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def python_of(cell_source) -> str:
    """A code cell as plain Python: IPython magics (%...) and shell lines (!...) become `pass`."""
    text = "".join(cell_source) if isinstance(cell_source, list) else cell_source
    out = []
    for line in text.splitlines():
        body = line.lstrip()
        if body.startswith(("%", "!")):
            out.append(line[: len(line) - len(body)] + "pass")
        else:
            out.append(line)
    return "\n".join(out)


def code(src, outputs=None, count=None):
    return {"cell_type": "code", "metadata": {}, "source": src, "outputs": outputs or [], "execution_count": count}


def md(src):
    return {"cell_type": "markdown", "metadata": {}, "source": src}


SOLVED = '''import torch

def add_noise_mine(x0, noise, a):
    """Docstring stays."""
    ### BEGIN SOLUTION
    y = a.sqrt() * x0
    return y + (1 - a).sqrt() * noise
    ### END SOLUTION

class Box:
    def area(self):
        if True:
            ### BEGIN SOLUTION
            return 4
            ### END SOLUTION
'''


def test_replacement_keeps_indentation_and_the_rest():
    new, n = student.strip_solutions(SOLVED)
    assert n == 2
    lines = new.splitlines()
    assert '    raise NotImplementedError("your code here")' in lines
    assert '            raise NotImplementedError("your code here")' in lines
    assert "y = a.sqrt() * x0" not in new and "return 4" not in new and "SOLUTION" not in new
    assert '    """Docstring stays."""' in lines and lines[0] == "import torch"
    ns: dict = {}
    exec(compile(new, "<student>", "exec"), ns)
    with pytest.raises(NotImplementedError, match="your code here"):
        ns["add_noise_mine"](1, 2, 3)
    with pytest.raises(NotImplementedError):
        ns["Box"]().area()


def test_notebook_copy_strips_outputs_and_leaves_other_cells(tmp_path):
    nb = {
        "cells": [
            md("### BEGIN SOLUTION in markdown is just text"),
            code(["x = 1\n", "%time y = 2\n"], outputs=[{"output_type": "stream", "name": "stdout", "text": "hi"}], count=3),
            code(SOLVED.splitlines(keepends=True), count=4),
        ],
        "metadata": {"kernelspec": {"name": "python3"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }
    src = tmp_path / "nb"
    src.mkdir()
    (src / "01_demo.ipynb").write_text(json.dumps(nb))
    report = student.write_student_copies([src], tmp_path / "out")
    assert report == {"01_demo.ipynb": 2}
    out = json.loads((tmp_path / "out" / "01_demo.ipynb").read_text())
    assert out["cells"][0] == nb["cells"][0]
    assert out["cells"][1]["source"] == nb["cells"][1]["source"]
    assert all(c["outputs"] == [] and c["execution_count"] is None for c in out["cells"] if c["cell_type"] == "code")
    assert isinstance(out["cells"][2]["source"], list)
    for c in out["cells"]:
        if c["cell_type"] == "code":
            ast.parse(python_of(c["source"]))
    assert out["metadata"] == nb["metadata"]


@pytest.mark.parametrize(
    "src, problem",
    [
        ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "never closed"),
        ("def f():\n    return 1\n    ### END SOLUTION\n", "without"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION\n", "second"),
    ],
)
def test_unbalanced_markers_name_notebook_and_cell(tmp_path, src, problem, capsys):
    nb = {"cells": [code("x = 1"), code(src)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    path = tmp_path / "03_bad.ipynb"
    path.write_text(json.dumps(nb))
    with pytest.raises(student.MarkerError, match=problem) as info:
        student.write_student_copies([path], tmp_path / "out")
    assert "03_bad.ipynb" in str(info.value) and "cell 1" in str(info.value)
    assert not (tmp_path / "out" / "03_bad.ipynb").exists()
    assert student.main([str(path), str(tmp_path / "out")]) == 2
    assert "03_bad.ipynb" in capsys.readouterr().err


@pytest.mark.parametrize("line", [
    "    ###BEGIN SOLUTION",
    "    # BEGIN SOLUTION",
    "    ### begin solution",
    "    ###  BEGIN SOLUTION",
    "    ## END SOLUTION",
    "    ### BEGIN_SOLUTION",
    "    ### END SOLUTION ###",
])
def test_a_near_miss_marker_is_an_error_naming_notebook_cell_and_line(tmp_path, capsys, line):
    """A misspelt marker would leave the solution in the student copy ("0 exercise(s) replaced"): refused."""
    src = f"def f():\n    ### BEGIN SOLUTION\n    return 1\n    ### END SOLUTION\n\ndef g():\n{line}\n    return 2\n"
    nb = {"cells": [md("### BEGIN SOLUTION in markdown is just text"), code(src)], "metadata": {}, "nbformat": 4,
          "nbformat_minor": 5}
    path = tmp_path / "04_near.ipynb"
    path.write_text(json.dumps(nb))
    assert student.main([str(path), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "04_near.ipynb" in err and "cell 1" in err and "line 7" in err and "not exact" in err
    assert repr(line.strip()) in err
    assert not (tmp_path / "out").exists()


def _instructor_folder(tmp_path):
    src = tmp_path / "notebooks"
    src.mkdir()
    nb = {"cells": [code(SOLVED)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    (src / "01_demo.ipynb").write_text(json.dumps(nb))
    return src


@pytest.mark.parametrize("out, words", [
    (lambda src: src, "is the source folder"),
    (lambda src: src / "student", "is inside the source folder"),
    (lambda src: src.parent, "holds the source folder"),
])
def test_output_folder_that_overlaps_the_sources_is_refused(tmp_path, capsys, out, words):
    """`student DIR DIR` used to write the student copies over the instructor notebooks (exit 0)."""
    src = _instructor_folder(tmp_path)
    before = {p: p.read_bytes() for p in src.rglob("*")}
    assert student.main([str(src), str(out(src))]) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1
    if out(src) == src:  # a notebook given by name, written over itself
        assert student.main([str(src / "01_demo.ipynb"), str(src)]) == 2
        assert "itself" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in src.rglob("*")} == before
    assert not (src / "student").exists()


def test_an_instructor_notebook_in_the_output_folder_is_never_replaced(tmp_path, capsys):
    src = _instructor_folder(tmp_path)
    out = tmp_path / "elsewhere"
    out.mkdir()
    (out / "01_demo.ipynb").write_bytes((src / "01_demo.ipynb").read_bytes())
    before = (out / "01_demo.ipynb").read_bytes()
    assert student.main([str(src), str(out)]) == 2
    assert "holds solution markers" in capsys.readouterr().err
    assert (out / "01_demo.ipynb").read_bytes() == before
    assert student.main([str(src), str(tmp_path / "fresh")]) == 0  # a student copy in a new folder
    assert student.main([str(src), str(tmp_path / "fresh")]) == 0  # and again over its own output


def test_cli_usage_and_missing_input(tmp_path, capsys):
    for argv, code in (([], 2), (["--help"], 0)):
        with pytest.raises(SystemExit) as info:
            student.main(argv)
        assert info.value.code == code
    assert "NOTEBOOKS" in capsys.readouterr().out
    assert student.main([str(tmp_path / "nothing"), str(tmp_path / "out")]) == 2


def course_notebooks():
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.skipif(not course_notebooks(), reason="no course notebooks written yet")
def test_real_notebooks_student_copies(tmp_path):
    report = student.write_student_copies([NOTEBOOKS], tmp_path)
    for nb_path in course_notebooks():
        original = json.loads(nb_path.read_text())
        has_exercise = any(
            c["cell_type"] == "code" and re.search(r"^\s*### BEGIN SOLUTION\s*$", "".join(c["source"]), re.M)
            for c in original["cells"]
        )
        copy = json.loads((tmp_path / nb_path.name).read_text())
        sources = ["".join(c["source"]) for c in copy["cells"] if c["cell_type"] == "code"]
        for i, s in enumerate(sources):
            try:
                ast.parse(python_of(s))
            except SyntaxError as e:
                pytest.fail(f"{nb_path.name}: student copy of code cell {i} does not parse: {e}")
        assert "### BEGIN SOLUTION" not in "".join(sources)
        if has_exercise:
            assert report[nb_path.name] >= 1
            assert any('raise NotImplementedError("your code here")' in s for s in sources), nb_path.name


@pytest.mark.skipif(not course_notebooks(), reason="no course notebooks written yet")
def test_checker_calls_keep_the_returned_function():
    """`f = check_x(f)`: an unanswered exercise hands back the reference, which the rest of the notebook then uses."""
    from ddpm_lib.course.exercises import load_all

    checkers = load_all()
    for nb_path in course_notebooks():
        nb = json.loads(nb_path.read_text())
        for i, c in enumerate(nb["cells"]):
            if c["cell_type"] != "code":
                continue
            for line in "".join(c["source"]).splitlines():
                for name in re.findall(r"\b(check_\w+)\s*\(", line):
                    if name.removeprefix("check_") in checkers:
                        assert re.fullmatch(rf"\s*(\w+) = {name}\(\1\)\s*", line), (
                            f"{nb_path.name}, cell {i}: write `f = {name}(f)` so that the rest of the notebook "
                            f"uses what the checker returns; got {line.strip()!r}")


@pytest.mark.parametrize("prefix", ["00", "01", "02", "03", "04", "05", "06", "07"])
def test_notebooks_have_at_least_two_exercises_each_with_a_checker(prefix):
    """Issue 10: every notebook has >= 2 exercises; each solution region is checked by a ddpm_lib checker."""
    from ddpm_lib.course.grade import exercises_in

    [path] = NOTEBOOKS.glob(f"{prefix}_*.ipynb")
    nb = json.loads(path.read_text())
    _, regions = student.make_student_notebook(nb, path.name)
    checked = exercises_in(nb)
    assert regions >= 2 and len(checked) >= regions, (path.name, regions, checked)


def test_at_least_24_exercises_in_the_course():
    """Issue 10: >= 24 exercises over notebooks 00-07."""
    total = sum(student.make_student_notebook(json.loads(p.read_text()), p.name)[1] for p in course_notebooks())
    assert total >= 24, total
