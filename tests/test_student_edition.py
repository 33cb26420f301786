"""The committed student edition, student/: exactly what `make student` makes of notebooks/ (so it is never
stale), no solution in any code cell, and every Colab badge opens a student copy, never an instructor
notebook."""

from __future__ import annotations

import json
import re
from pathlib import Path

from ddpm_lib.course.student import write_student_copies

ROOT = Path(__file__).resolve().parent.parent
INSTRUCTOR = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
STUDENT = ROOT / "student"
COLAB = re.compile(r"https://colab\.research\.google\.com/github/ddpm-course/ddpm-course/blob/main/([\w/]+\.ipynb)")


def test_student_edition_is_what_make_student_makes(tmp_path):
    write_student_copies([ROOT / "notebooks"], tmp_path)
    made = {p.name: p.read_bytes() for p in tmp_path.glob("*.ipynb")}
    committed = {p.name: p.read_bytes() for p in STUDENT.glob("*.ipynb")}
    stale = sorted(n for n in made.keys() | committed.keys() if made.get(n) != committed.get(n))
    assert not stale, f"student/ is out of date ({', '.join(stale)}): run `make student-edition` and commit student/"


def test_no_solution_in_the_student_edition_and_one_stub_per_exercise():
    for path in INSTRUCTOR:
        cells = json.loads((STUDENT / path.name).read_text(encoding="utf-8"))["cells"]
        code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
        assert not any("### BEGIN SOLUTION" in c or "### END SOLUTION" in c for c in code), path.name
        exercises = sum("".join(c["source"]).count("### BEGIN SOLUTION")
                        for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code")
        assert sum(c.count('raise NotImplementedError("your code here")') for c in code) == exercises, path.name
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")


def test_every_badge_of_the_student_edition_opens_its_student_copy():
    for path in INSTRUCTOR:
        text = (STUDENT / path.name).read_text(encoding="utf-8")
        targets = set(COLAB.findall(text))
        assert targets == {f"student/{path.name}"}, (path.name, targets)
        # and the instructor notebook's own badge opens the instructor notebook
        assert set(COLAB.findall(path.read_text(encoding="utf-8"))) == {f"notebooks/{path.name}"}


def test_the_readme_says_which_link_to_give_a_class_and_the_solutions_policy():
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Student edition"):]
    section = section[:section.index("\n## ")]
    assert "https://colab.research.google.com/github/ddpm-course/ddpm-course/blob/main/student/00_welcome.ipynb" in section
    assert "https://github.com/ddpm-course/ddpm-course/tree/main/student" in section
    assert "olutions" in section and "make student-edition" in section
