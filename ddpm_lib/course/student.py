"""Student copies of the notebooks: solutions removed, outputs stripped (``make student``).

In the instructor notebooks an exercise's solution sits between two marker lines (nbgrader style)::

    def add_noise_mine(x0, noise, alpha_bars, t):
        ### BEGIN SOLUTION
        a = alpha_bars[t].view(-1, 1, 1, 1)
        return a.sqrt() * x0 + (1 - a).sqrt() * noise
        ### END SOLUTION

The student copy keeps everything else and replaces the markers and the lines between them by one line
at the BEGIN marker's indentation::

        raise NotImplementedError("your code here")

Usage: ``python -m ddpm_lib.course.student notebooks build/student`` (a folder or single ``.ipynb`` files, then the
output folder). Code cells without markers are copied unchanged; every output and execution count is
removed. In markdown cells only the Open-in-Colab links change: ``.../blob/<ref>/notebooks/NAME`` becomes
``.../blob/<ref>/student/NAME``, the committed student edition (README, "Student edition"), so a student
copy's badge opens a student copy, never the instructor notebook with its solutions.

Refused, with one line and exit code 2, before anything is written: an output folder that is a source
folder, inside one, or holds one (``student notebooks notebooks`` would replace the solutions by their
student copies), or that holds a source notebook given by name; an existing file in the output folder that
holds solution markers (an instructor notebook); an existing file there that is not a student copy (a
student's worked notebook with outputs: replaced only with ``--overwrite``, the rule of
:func:`ddpm_lib.files.check_output_file`); and a line in a code cell that looks like a marker but is
not exactly one (``###BEGIN SOLUTION``, ``# BEGIN SOLUTION``, ``### begin solution``): such a line would
leave the solution in the student copy.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from ddpm_lib.files import (
    ClobberError,
    atomic_write,
    check_output_dir,
    check_output_file,
    read_json_object,
)

STUDENT_FOLDER = "student"  # the committed student edition, `make student-edition`
COLAB_NOTEBOOK = re.compile(r"(https://colab\.research\.google\.com/github/[^/\s)]+/[^/\s)]+/blob/[^/\s)]+/)notebooks/")
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
PLACEHOLDER = 'raise NotImplementedError("your code here")'


#: anything a person could mean as a marker: a comment whose words are "begin/end solution", any case or spacing
_NEAR_MARKER = re.compile(r"^#+\s*(begin|end)[\s_-]*solution\b", re.IGNORECASE)


class MarkerError(ValueError):
    """An unbalanced, nested or misspelt solution marker. The message names the notebook, the cell and the line."""


class OutputError(ValueError):
    """The output folder would overwrite the sources (or an instructor notebook)."""


def _lines(source) -> list[str]:
    text = "".join(source) if isinstance(source, list) else source
    return text.splitlines(keepends=True)


def strip_solutions(source: str, where: str = "cell") -> tuple[str, int]:
    """Replace every BEGIN/END SOLUTION region of one cell's source; return (new source, regions replaced)."""
    out: list[str] = []
    begin_line = None
    count = 0
    for number, line in enumerate(_lines(source), start=1):
        stripped = line.strip()
        if stripped not in (BEGIN, END) and _NEAR_MARKER.match(stripped):
            exact = BEGIN if "begin" in stripped.lower() else END
            raise MarkerError(f"{where}: line {number} looks like a solution marker but is not exact: {stripped!r}; "
                              f"write {exact!r} on a line of its own.")
        if stripped == BEGIN:
            if begin_line is not None:
                raise MarkerError(f"{where}: line {number} opens a second '{BEGIN}' before the one on line {begin_line} was closed with '{END}'.")
            begin_line = number
            indent = line[: len(line) - len(line.lstrip())]
            newline = "\n" if line.endswith("\n") else ""
            out.append(f"{indent}{PLACEHOLDER}{newline}")
        elif stripped == END:
            if begin_line is None:
                raise MarkerError(f"{where}: line {number} has '{END}' without a '{BEGIN}' before it.")
            begin_line = None
            count += 1
            if not line.endswith("\n") and out and out[-1].endswith("\n"):
                out[-1] = out[-1][:-1]  # the END marker was the cell's last line
        elif begin_line is None:
            out.append(line)
    if begin_line is not None:
        raise MarkerError(f"{where}: '{BEGIN}' on line {begin_line} is never closed with '{END}'.")
    return "".join(out), count


def make_student_notebook(nb: dict, name: str = "notebook") -> tuple[dict, int]:
    """A student copy of a notebook (as parsed JSON): solutions replaced, outputs removed. Returns (copy, exercises)."""
    nb = json.loads(json.dumps(nb))  # deep copy
    total = 0
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") == "markdown":
            text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            new = COLAB_NOTEBOOK.sub(rf"\g<1>{STUDENT_FOLDER}/", text)
            if new != text:
                cell["source"] = new.splitlines(keepends=True) if isinstance(cell["source"], list) else new
        if cell.get("cell_type") != "code":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        new, n = strip_solutions(text, where=f"{name}, cell {index} (0-based; code cell)")
        total += n
        if n:
            cell["source"] = new.splitlines(keepends=True) if isinstance(cell["source"], list) else new
        cell["outputs"] = []
        cell["execution_count"] = None
    return nb, total


def write_student_copies(sources: list[str | os.PathLike], out_dir: str | os.PathLike,
                         overwrite: bool = False) -> dict[str, int]:
    """Write the student copy of every notebook in ``sources`` (folders or files) into ``out_dir``.

    Returns {notebook file name: number of exercises replaced}. Checks every notebook, and that nothing of
    the sources would be overwritten, before writing any. A file in ``out_dir`` that is not a student copy
    (:func:`is_student_copy`: a student's worked notebook, say) is replaced only with ``overwrite``
    (:func:`ddpm_lib.files.check_output_file`); one that holds solution markers never.
    """
    files: list[Path] = []
    folders: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files += sorted(q for q in p.glob("*.ipynb") if not q.name.startswith("."))
            folders.append(p)
        elif p.suffix == ".ipynb" and p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"{p}: not a notebook or a folder of notebooks.")
    if not files:
        raise FileNotFoundError(f"no .ipynb files found in {', '.join(map(str, sources))}.")
    check_output_dir(out_dir, option="OUT_DIR", kind="student copies", is_own=lambda _: True)  # a file, or ''
    check_output_folder(folders, Path(out_dir))
    for f in files:
        if (Path(out_dir) / f.name).resolve() == f.resolve():
            raise OutputError(f"OUT_DIR {out_dir} holds {f} itself: its student copy would replace it. Choose another "
                              "folder, e.g. build/student.")
    copies = []
    for f in files:
        with open(f, encoding="utf-8") as fh:
            nb = json.load(fh)
        copies.append((f, *make_student_notebook(nb, name=str(f))))
    out = Path(out_dir)
    for f, _, _ in copies:
        target = out / f.name
        if target.exists() and _has_markers(target):
            raise OutputError(f"{target} exists and holds solution markers (an instructor notebook); "
                              "choose an empty OUT_DIR for the student copies.")
        check_output_file(target, option="OUT_DIR", kind="a student copy", is_own=is_student_copy, overwrite=overwrite)
    out.mkdir(parents=True, exist_ok=True)
    report = {}
    for f, nb, n in copies:
        target = out / f.name
        atomic_write(target, json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
        report[f.name] = n
    return report


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def check_output_folder(source_folders: list[Path], out: Path) -> None:
    """Raise :class:`OutputError` when ``out`` is a source folder, inside one, or holds one."""
    target = out.resolve()
    for folder in source_folders:
        src = folder.resolve()
        if target == src:
            raise OutputError(f"OUT_DIR {out} is the source folder {folder}: the student copies would replace the "
                              "instructor notebooks. Choose another folder, e.g. build/student.")
        if _inside(target, src):
            raise OutputError(f"OUT_DIR {out} is inside the source folder {folder}; choose a folder outside it, "
                              "e.g. build/student.")
        if _inside(src, target):
            raise OutputError(f"OUT_DIR {out} holds the source folder {folder}; choose a folder outside it, "
                              "e.g. build/student.")


def is_student_copy(path: Path) -> bool:
    """True when ``path`` looks like what this command writes: a notebook with no solution marker, no output
    and no execution count (a student's worked notebook has outputs; an instructor notebook has markers)."""
    nb = read_json_object(path)
    cells = nb.get("cells") if nb is not None else None
    if not isinstance(cells, list) or _has_markers(path):
        return False
    code = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    return all(not c.get("outputs") and c.get("execution_count") is None for c in code)


def _has_markers(path: Path) -> bool:
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
        cells = nb.get("cells", []) if isinstance(nb, dict) else []
    except (OSError, ValueError):
        return False
    return any(c.get("cell_type") == "code" and BEGIN in "".join(c.get("source") or []) for c in cells
               if isinstance(c, dict))


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m ddpm_lib.course.student",
        description="Write student copies of the notebooks: every solution between the markers replaced by "
                    "`raise NotImplementedError`, all outputs removed (`make student`).")
    p.add_argument("sources", nargs="+", metavar="NOTEBOOKS", help="notebook files, or folders of notebooks")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write the student copies into")
    p.add_argument("--overwrite", action="store_true",
                   help="replace files in OUT_DIR that are not student copies (never an instructor notebook)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        report = write_student_copies(args.sources, args.out_dir, overwrite=args.overwrite)
    except (MarkerError, OutputError, ClobberError, FileNotFoundError, json.JSONDecodeError) as e:
        print(f"make student: {e}", file=sys.stderr)
        return 2
    for name, n in report.items():
        print(f"  {name}: {n} exercise(s) replaced")
    print(f"Student copies written to {args.out_dir}/")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
