"""Grade a class: run every student's notebooks headless in FAST mode and collect what the checkers said.

Usage::

    python -m ddpm_lib.course.grade SUBMISSIONS [--out grades.csv] [--timeout 600] [--instructor notebooks]
    make grade SUBMISSIONS=dir

``SUBMISSIONS/<student>/<notebook>.ipynb``: one folder per student holding their notebooks, with the
file names of the course (``02_noise_schedules.ipynb``, ...). Every notebook that any student handed in
is graded for every student; a student who did not hand one in gets "notebook not submitted" for its
exercises.

Each notebook runs in a fresh kernel (nbclient) in fast mode (``DDPM_MODE=fast``), in its own temporary
working and runs folder, with a time limit per notebook. The checkers (:mod:`ddpm_lib.course.exercises`) append
their outcome to the file named by ``DDPM_GRADE_LOG``; with ``DDPM_GRADE_CONTINUE=1`` a wrong answer
is recorded and the notebook carries on with the reference solution, so one wrong answer does not cost
the exercises after it. The list of exercises per notebook comes from the instructor notebooks (the
``check_...(...)`` calls of ``ddpm_lib.course.exercises`` checkers in their code cells): an exercise that never
reported (the notebook crashed or ran out of time before it, or the student deleted the cell) is
listed as ``error`` with the reason. A notebook that crashes or hangs never stops the run.

Writes ``grades.csv`` (student, notebook, exercise, status, message; status in correct / wrong /
not done / error) and ``<out stem>_summary.csv`` (one row per student: the counts per status, and the
notebooks that did not run to the end), and prints the summary.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ddpm_lib.course.exercises import GRADE_CONTINUE_ENV, GRADE_LOG_ENV, STATUSES, load_all
from ddpm_lib.files import atomic_write

FIELDS = ["student", "notebook", "exercise", "status", "message"]
SUMMARY_FIELDS = ["student", *[s.replace(" ", "_") for s in STATUSES], "exercises", "notebooks_not_finished"]
DEFAULT_TIMEOUT = 600.0
_CALL = re.compile(r"\b(check_\w+)\s*\(")


def default_instructor_dir() -> Path:
    """The course's ``notebooks/`` folder next to this package (a source checkout)."""
    return Path(__file__).resolve().parents[2] / "notebooks"


def _code_cells(nb: dict) -> list[str]:
    return ["".join(c["source"]) if isinstance(c["source"], list) else c["source"]
            for c in nb.get("cells", []) if c.get("cell_type") == "code"]


def exercises_in(nb: dict) -> list[str]:
    """The exercises a notebook checks, in order: names of ddpm_lib checkers called in its code cells."""
    checkers = load_all()
    found: list[str] = []
    for src in _code_cells(nb):
        for fn in _CALL.findall(src):
            key = fn.removeprefix("check_")
            if key in checkers and key not in found:
                found.append(key)
    return found


def expected_exercises(instructor_dir: Path) -> dict[str, list[str]]:
    """{notebook file name: exercises} for every notebook in the instructor folder."""
    out = {}
    for path in sorted(instructor_dir.glob("*.ipynb")):
        with open(path, encoding="utf-8") as fh:
            out[path.name] = exercises_in(json.load(fh))
    return out


@dataclass
class NotebookRun:
    """What happened when one notebook ran: ``state`` is ok, crashed, timeout or missing."""

    state: str
    reason: str = ""
    seconds: float = 0.0
    entries: list[dict] = field(default_factory=list)


def run_notebook(path: Path, timeout: float, kernel_name: str = "python3") -> NotebookRun:
    """Execute one notebook headless in FAST mode with a time limit; collect the checkers' log lines."""
    import nbformat  # dev extra, only to grade
    from nbclient import NotebookClient  # dev extra, only to grade
    from nbclient.exceptions import CellExecutionError, DeadKernelError  # dev extra, only to grade

    try:
        nb = nbformat.read(path, as_version=4)
    except Exception as e:  # noqa: BLE001 - any unreadable file is recorded, never fatal
        return NotebookRun("crashed", f"the notebook could not be read ({type(e).__name__}: {e})")
    with tempfile.TemporaryDirectory(prefix="ddpm-grade-") as tmp:
        work = Path(tmp)
        log = work / "grade_log.jsonl"
        env = dict(os.environ)
        env.update({"DDPM_MODE": "fast", "DDPM_FAST": "1", GRADE_LOG_ENV: str(log), GRADE_CONTINUE_ENV: "1",
                    "DDPM_RUNS_DIR": str(work / "runs"), "MPLBACKEND": "Agg"})
        deadline = time.monotonic() + timeout
        at = {"cell": None}

        def remember(cell, cell_index, **_):
            at["cell"] = cell_index

        client = NotebookClient(
            nb, kernel_name=kernel_name, resources={"metadata": {"path": str(work)}},
            timeout_func=lambda cell: max(1, int(deadline - time.monotonic()) + 1),
            on_cell_execute=remember,
        )
        start = time.monotonic()
        state, reason = "ok", ""
        kernel_err = work / "kernel_stderr.txt"  # the kernel's own warnings stay out of the instructor's terminal
        try:
            with open(kernel_err, "w", encoding="utf-8") as err:
                client.execute(env=env, cwd=str(work), stderr=err)
        except CellExecutionError as e:
            state, reason = "crashed", f"the notebook stopped at {_cell(at, nb)} with {e.ename}: {_first_line(e.evalue)}"
        except (TimeoutError, DeadKernelError) as e:
            if time.monotonic() >= deadline - 1:
                state, reason = "timeout", f"the notebook ran past the {timeout:g} s limit (at {_cell(at, nb)})"
            else:
                state, reason = "crashed", f"the kernel died at {_cell(at, nb)} ({type(e).__name__}: {_first_line(str(e))})"
        except Exception as e:  # noqa: BLE001 - a broken notebook must never stop the class's run
            state, reason = "crashed", f"the notebook could not run ({type(e).__name__}: {_first_line(str(e))})"
        seconds = time.monotonic() - start
        entries = []
        if log.is_file():
            for line in log.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and entry.get("status") in STATUSES and entry.get("exercise"):
                    entries.append(entry)
    return NotebookRun(state, reason, seconds, entries)


def _cell(at: dict, nb) -> str:
    i = at["cell"]
    return "its start" if i is None else f"cell {i + 1} of {len(nb.cells)}"


def _first_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    return text.splitlines()[0] if text else ""


def rows_for(student: str, notebook: str, expected: list[str], run: NotebookRun) -> list[dict]:
    """One row per exercise: the last outcome each checker reported, or why it never reported."""
    last: dict[str, dict] = {}
    for entry in run.entries:
        last[entry["exercise"]] = entry
    names = list(expected) + [k for k in last if k not in expected]
    if run.state == "missing":
        why = "notebook not submitted"
    elif run.state == "ok":
        why = "not reached: the checker never ran (its cell was removed or changed)"
    else:
        why = f"not reached: {run.reason}"
    rows = []
    for name in names:
        if name in last:
            rows.append(dict(student=student, notebook=notebook, exercise=name, status=last[name]["status"],
                             message=last[name].get("message", "")))
        else:
            rows.append(dict(student=student, notebook=notebook, exercise=name, status="error", message=why))
    return rows


def _students(submissions: Path) -> list[Path]:
    return sorted(p for p in submissions.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))


def _notebooks(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def grade(submissions: Path, instructor_dir: Path, timeout: float = DEFAULT_TIMEOUT,
          kernel_name: str = "python3", progress=print) -> tuple[list[dict], list[dict]]:
    """Grade every student folder in ``submissions``; return (rows of grades.csv, rows of the summary)."""
    expected = expected_exercises(instructor_dir)
    students = _students(submissions)
    notebooks = sorted({nb for s in students for nb in _notebooks(s)})
    rows, summary = [], []
    for student in students:
        unfinished = []
        student_rows = []
        for notebook in notebooks:
            path = student / notebook
            if path.is_file():
                run = run_notebook(path, timeout, kernel_name)
            else:
                run = NotebookRun("missing", "notebook not submitted")
            if run.state != "ok":
                unfinished.append(f"{notebook}: {run.reason}")
            new = rows_for(student.name, notebook, expected.get(notebook, []), run)
            counts = {s: sum(r["status"] == s for r in new) for s in STATUSES}
            progress(f"{student.name}/{notebook}: {run.state} in {run.seconds:.1f} s; "
                     + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
            student_rows += new
        rows += student_rows
        line = {"student": student.name}
        for s in STATUSES:
            line[s.replace(" ", "_")] = sum(r["status"] == s for r in student_rows)
        line["exercises"] = len(student_rows)
        line["notebooks_not_finished"] = "; ".join(unfinished)
        summary.append(line)
    return rows, summary


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, buf.getvalue())


def summary_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_summary.csv")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ddpm_lib.course.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", help="folder with one sub-folder of notebooks per student")
    parser.add_argument("--out", default="grades.csv", help="grades CSV to write (default: grades.csv)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help=f"seconds allowed per notebook (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--instructor", default=None,
                        help="folder of the instructor notebooks, to list each notebook's exercises "
                        "(default: this checkout's notebooks/)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel to run the notebooks with")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)

    submissions = Path(args.submissions)
    instructor = Path(args.instructor) if args.instructor else default_instructor_dir()
    out = Path(args.out)
    if not submissions.is_dir():
        print(f"grade: SUBMISSIONS {submissions} is not a folder; give the folder holding one sub-folder per student.",
              file=sys.stderr)
        return 2
    if not _students(submissions):
        print(f"grade: {submissions} holds no student folders; expected {submissions}/<student>/<notebook>.ipynb.",
              file=sys.stderr)
        return 2
    if not any(_notebooks(s) for s in _students(submissions)):
        print(f"grade: no notebooks were handed in: {submissions}/<student>/ folders hold no .ipynb files.",
              file=sys.stderr)
        return 2
    if not instructor.is_dir() or not any(instructor.glob("*.ipynb")):
        print(f"grade: --instructor {instructor} holds no notebooks; point it at the course's notebooks/ folder.",
              file=sys.stderr)
        return 2
    if args.timeout <= 0:
        print(f"grade: --timeout must be a positive number of seconds, got {args.timeout:g}.", file=sys.stderr)
        return 2
    if not out.parent.is_dir():
        print(f"grade: --out {out}: the folder {out.parent} does not exist; create it or choose another path.",
              file=sys.stderr)
        return 2

    rows, summary = grade(submissions, instructor, args.timeout, args.kernel)
    _write_csv(out, FIELDS, rows)
    _write_csv(summary_path(out), SUMMARY_FIELDS, summary)
    print()
    print(f"{'student':20s} {'correct':>7s} {'wrong':>5s} {'not done':>8s} {'error':>5s}  notebooks not finished")
    for line in summary:
        print(f"{line['student']:20s} {line['correct']:7d} {line['wrong']:5d} {line['not_done']:8d} {line['error']:5d}  "
              f"{line['notebooks_not_finished'] or '-'}")
    print(f"\nWrote {out} ({len(rows)} rows) and {summary_path(out)}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
