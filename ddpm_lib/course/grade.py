"""Grade a class: run every student's notebooks headless in FAST mode, sandboxed, and check their answers.

Usage::

    python -m ddpm_lib.course.grade SUBMISSIONS [--out grades.csv] [--timeout 600] [--instructor notebooks]
                             [--call-timeout 60] [--sandbox auto|bwrap|unshare|none] [--resume]
    make grade SUBMISSIONS=dir

``SUBMISSIONS/<student>/<notebook>.ipynb``: one folder per student holding their notebooks, with the file
names of the instructor notebooks (``02_noise_schedules.ipynb``, ...). Every instructor notebook that any
student handed in is graded for every student; a student who did not hand one in gets "notebook not
submitted" for its exercises.

**What the grader trusts.** Nothing that runs in the student's kernel. The kernel runs the student's
notebook with the checkers in *capture* mode (:mod:`ddpm_lib.course.exercises`): ``name = check_X(name)`` stores
the student's function (the one bound to the name the INSTRUCTOR notebook uses) and hands back the
reference, so "Run All" carries on. Right after the cell that calls ``check_X`` (or at the end), the
grader runs the checker in its own process on a proxy that forwards each call to the kernel and reads
the answer back in a format that cannot run code (:mod:`ddpm_lib.course.gradecall`). So the status in grades.csv
is what the grader's checker found on the values the student's function returned for its inputs: writing
log lines, replacing the checkers in the kernel or returning objects with a custom ``__eq__`` cannot
change it. An answer whose source calls the ddpm_lib function that implements the exercise, or the
checker's reference (found by the grader's own reading of the student's source, :mod:`ddpm_lib.course.libcalls`),
is graded ``uses library`` with the call named.

**Isolation.** Each notebook runs in a fresh temporary copy of its student's folder (regular files only),
with a minimal environment (no variable of the instructor's but the ``DDPM_*`` settings it needs),
resource limits, its own session, and an OS sandbox when one works here (:mod:`ddpm_lib.course.sandbox`:
bubblewrap, else ``unshare``; the one used is printed and written to the summary). Each student is graded
by a child process; the grader appends each student's rows to grades.csv (flushed and fsynced) as soon as
they are known, kills every process the student's kernel left, and goes on with the next student, so a
notebook that crashes, hangs, or kills its grading process costs only its own rows. ``--resume``
continues an interrupted class (students already in grades.csv are skipped).

**What a determined student can still do.** Without a sandbox (``none``): read and write what the
grader's user can, and kill the grader (``--resume`` then continues). With one: use the CPU and memory
up to the limits, use the network, and read files outside the hidden folders. In every mode: hard-code
the answers to the checkers' inputs (they are fixed, seeded in the checkers' source), or hide a library
call from the static analysis (``getattr`` with a computed name, ``eval``, copied library source).

**Inputs.** Symlinks and non-regular files are refused with a row saying so (never read); notebooks whose
names are not the instructor's (``00_welcome (1).ipynb``) are reported in the summary and not run; folders
whose names start with ``_`` or ``.`` are reported as skipped. Every cell of both CSV files that starts
with ``= + - @``, a tab or a carriage return is prefixed with ``'`` (no formula reaches a spreadsheet).

Writes ``grades.csv`` (student, notebook, exercise, status, message; status in correct / wrong / not done /
uses library / error) and ``<out stem>_summary.csv`` (one row per student: the counts per status, the
notebooks that did not run to the end, notes, the sandbox), and prints the summary.
"""

from __future__ import annotations

import argparse
import ast
import csv
import ctypes
import io
import json
import math
import os
import re
import secrets
import selectors
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from ddpm_lib.course import sandbox
from ddpm_lib.course.exercises import GRADE_CAPTURE_ENV, STATUSES, GraderFault, load_all, outcome
from ddpm_lib.course.gradecall import KernelCalls, proxy
from ddpm_lib.course.libcalls import library_use, python_of
from ddpm_lib.files import ClobberError, check_output_file
from ddpm_lib.settings import load_settings

FIELDS = ["student", "notebook", "exercise", "status", "message"]
SUMMARY_FIELDS = ["student", *[s.replace(" ", "_") for s in STATUSES], "exercises", "notebooks_not_finished",
                  "notes", "sandbox"]
DEFAULT_TIMEOUT = 600.0
DEFAULT_CALL_TIMEOUT = 60.0
MAX_NOTEBOOK_BYTES = 50 * 2**20
MAX_COPY_BYTES = 500 * 2**20
_CALL = re.compile(r"\b(check_\w+)\s*\(")
_WORKER_FLAG = "--_worker"


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


def exercise_bindings(nb: dict) -> dict[str, str]:
    """{exercise: the name its answer is bound to}, from the notebook's ``name = check_X(name)`` lines."""

    checkers = load_all()
    out: dict[str, str] = {}
    for src in _code_cells(nb):
        try:
            tree = ast.parse(python_of(src))
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            key = node.func.id.removeprefix("check_")
            if node.func.id.startswith("check_") and key in checkers and node.args and isinstance(node.args[0], ast.Name):
                out.setdefault(key, node.args[0].id)
    return out


def expected_exercises(instructor_dir: Path) -> dict[str, list[str]]:
    """{notebook file name: exercises} for every notebook in the instructor folder."""
    out = {}
    for path in sorted(instructor_dir.glob("*.ipynb")):
        with open(path, encoding="utf-8") as fh:
            out[path.name] = exercises_in(json.load(fh))
    return out


def instructor_plan(instructor_dir: Path) -> dict[str, list[tuple[str, str]]]:
    """{notebook: [(exercise, answer name)]} from the instructor notebooks (never from a student's)."""
    out = {}
    for path in sorted(instructor_dir.glob("*.ipynb")):
        with open(path, encoding="utf-8") as fh:
            nb = json.load(fh)
        bindings = exercise_bindings(nb)
        out[path.name] = [(ex, bindings.get(ex, "")) for ex in exercises_in(nb)]
    return out


# --- safe CSV ------------------------------------------------------------------------------------


def neutral(value) -> str:
    """A CSV cell that no spreadsheet reads as a formula: ``'`` before a leading = + - @ tab or CR."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def shown(text: str) -> str:
    """A student-controlled name made safe to print on a terminal (no control characters)."""
    return "".join(c if c.isprintable() else "?" for c in str(text))


def _csv_text(fields: list[str], rows: list[dict], header: bool) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
    if header:
        writer.writeheader()
    writer.writerows([{k: neutral(r.get(k, "")) for k in fields} for r in rows])
    return buf.getvalue()


def append_rows(path: Path, fields: list[str], rows: list[dict]) -> None:
    """Append rows in one write, flushed and fsynced (a header first if the file is new or empty)."""
    header = not path.exists() or path.stat().st_size == 0
    text = _csv_text(fields, rows, header)
    with open(path, "a", encoding="utf-8", newline="") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _is_grades_csv(path: Path, fields: list[str]) -> bool:
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            return next(csv.reader(fh), None) == fields
    except (OSError, UnicodeDecodeError, csv.Error):
        return False


def _done_students(path: Path) -> set[str]:
    """Students with rows in an existing grades.csv; a torn last line (a crash mid-write) is cut off first."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])
    with open(path, encoding="utf-8", newline="") as fh:
        return {r["student"] for r in csv.DictReader(fh)}


# --- what is handed in ----------------------------------------------------------------------------


@dataclass
class Scan:
    students: list[Path] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # "name: why"
    notes: dict[str, list[str]] = field(default_factory=dict)  # student -> notes
    refused: dict[str, dict[str, str]] = field(default_factory=dict)  # student -> {notebook: why}


def _kind(path: Path) -> str:
    """'' for a regular file or folder, else why it is refused (never following a symlink)."""
    try:
        mode = os.lstat(path).st_mode
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if stat.S_ISLNK(mode):
        return "is a symbolic link (refused: never followed)"
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        return "is not a regular file (refused)"
    return ""


def scan(submissions: Path, instructor_names: set[str]) -> Scan:
    """The student folders, and everything handed in that is not graded, with the reason."""
    out = Scan()
    for entry in sorted(submissions.iterdir()):
        name = entry.name
        why = _kind(entry)
        if name.startswith((".", "_")):
            out.skipped.append(f"{name}: skipped (names starting with '.' or '_' are not students)")
            continue
        if why:
            out.skipped.append(f"{name}: {why}")
            continue
        if not entry.is_dir():
            out.skipped.append(f"{name}: not a folder")
            continue
        out.students.append(entry)
        notes, refused = [], {}
        for item in sorted(entry.iterdir()):
            if not item.name.endswith(".ipynb") or item.name.startswith("."):
                continue
            why = _kind(item)
            if item.name not in instructor_names:
                notes.append(f"{item.name}: not a course notebook name (not graded)")
            elif why or not stat.S_ISREG(os.lstat(item).st_mode):
                refused[item.name] = f"{item.name} {why or 'is not a regular file (refused)'}"
        out.notes[name] = notes
        out.refused[name] = refused
    return out


def handed_in(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


# --- one notebook, in the worker --------------------------------------------------------------------


@dataclass
class NotebookRun:
    """What happened when one notebook ran: ``state`` is ok, crashed, timeout, refused or missing."""

    state: str
    reason: str = ""
    seconds: float = 0.0
    results: dict[str, tuple[str, str]] = field(default_factory=dict)  # exercise -> (status, message)


def _copy_folder(src: Path, dst: Path) -> None:
    """Copy the regular files of ``src`` (recursively, no symlinks, nothing special) into ``dst``."""
    total = 0
    for root, dirs, files in os.walk(src, followlinks=False):
        rel = Path(root).relative_to(src)
        (dst / rel).mkdir(parents=True, exist_ok=True)
        dirs[:] = [d for d in dirs if not (Path(root) / d).is_symlink()]
        for f in files:
            p = Path(root) / f
            try:
                info = os.lstat(p)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            total += info.st_size
            if total > MAX_COPY_BYTES:
                return
            with open(p, "rb") as a, open(dst / rel / f, "wb") as b:
                shutil.copyfileobj(a, b)


def _first_line(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(text)).strip()
    return text.splitlines()[0][:300] if text else ""


def _jupyter():
    """``(jupyter_client, nbclient, nbformat)``: the dev extra, imported only when a class is graded."""
    import jupyter_client.kernelspec, jupyter_client.manager, nbclient, nbclient.exceptions, nbformat  # noqa: E401, I001 - dev extra, only to grade

    return jupyter_client, nbclient, nbformat


def _read_notebook(path: Path):
    """The parsed notebook, or a crashed :class:`NotebookRun` saying why it cannot be read."""
    nbformat = _jupyter()[2]
    if os.lstat(path).st_size > MAX_NOTEBOOK_BYTES:
        return NotebookRun("crashed", f"the notebook is over {MAX_NOTEBOOK_BYTES // 2**20} MiB")
    try:
        with open(path, "rb") as fh:
            return nbformat.reads(fh.read().decode("utf-8"), as_version=4)
    except Exception as e:  # noqa: BLE001 - any unreadable file is recorded, never fatal
        return NotebookRun("crashed", f"the notebook could not be read ({type(e).__name__}: {_first_line(e)})")


def _library_answers(nb, plan: list[tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """{exercise: ("uses library", the call)} for the answers whose source calls the library (static reading)."""
    sources = [c.source for c in nb.cells if c.get("cell_type") == "code"]
    found = {}
    for ex, binding in plan:
        use = library_use(sources, binding, ex) if binding else None
        if use:
            found[ex] = ("uses library", f"{binding} {use}: write the exercise's code yourself")
    return found


def _kernel_env(work: Path, plan: list[tuple[str, str]], spec: dict) -> dict[str, str]:
    """The student's kernel environment: minimal, FAST mode on the CPU, offline, checkers in capture mode."""
    return sandbox.minimal_env(work, {
        "DDPM_MODE": "fast", "DDPM_FAST": "1", "DDPM_OFFLINE": "1", "DDPM_RUNS_DIR": str(work / "runs"),
        "DDPM_DATA_DIR": spec["data_dir"], sandbox.RUN_MARK_ENV: spec["mark"],
        "DDPM_DEVICE": "cpu", "CUDA_VISIBLE_DEVICES": "",  # CUDA would not start under the address-space limit
        GRADE_CAPTURE_ENV: json.dumps({ex: b for ex, b in plan if b}),
    })


def _sandboxed_kernel(work: Path, spec: dict, timeout: float):
    """A kernel manager whose kernel starts inside the OS sandbox, hiding ``spec["hide"]``, under resource limits."""
    jupyter_client = _jupyter()[0]
    km = jupyter_client.manager.AsyncKernelManager(kernel_name=spec["kernel"])  # a blocking client would hang on a silent cell
    base = km.kernel_spec
    km._kernel_spec = jupyter_client.kernelspec.KernelSpec(
        argv=sandbox.wrap(spec["sandbox"], list(base.argv), work, [Path(h) for h in spec["hide"]],
                          sandbox.Limits(cpu_seconds=int(timeout + 4 * spec["call_timeout"]) + 60,
                                         memory_bytes=int(spec["memory_gb"] * 2**30))),
        display_name=base.display_name, language=base.language, env={}, interrupt_mode="signal")
    return km


def _cell_runner(client, at: dict):
    """``execute(source, limit)`` for :class:`KernelCalls`: runs one extra cell, kernel failures as GraderFault."""
    _, nbclient, nbformat = _jupyter()
    errors = nbclient.exceptions

    def execute(source: str, limit: float) -> None:
        at["deadline"] = time.monotonic() + limit
        cell = nbformat.v4.new_code_cell(source)
        try:
            client.execute_cell(cell, 0, store_history=False)
        except errors.CellTimeoutError:
            raise TimeoutError from None
        except errors.DeadKernelError as e:
            raise GraderFault(f"the kernel died ({_first_line(e)})") from None
        except errors.CellExecutionError:
            pass  # no answer file: the call reports it
        except Exception as e:  # noqa: BLE001
            raise GraderFault(f"the kernel could not run the call ({type(e).__name__})") from None

    return execute


def _grade_exercise(run: NotebookRun, calls: KernelCalls, ex: str, reached: str) -> None:
    """Grade ``ex`` once, in the grader's process; a checker that never ran is "not reached: ``reached``"."""
    if ex in run.results:
        return
    try:
        run.results[ex] = outcome(ex, proxy(calls, ex))
    except GraderFault as e:
        why = str(e)
        if "never ran" in why:
            run.results[ex] = ("error", f"not reached: {reached}")
        else:
            run.results[ex] = ("error", f"not graded: {why}")


def _run_cells(client, nb, plan: list[tuple[str, str]], run: NotebookRun, calls: KernelCalls, at: dict,
               start: float, timeout: float) -> None:
    """Run the code cells in order, grading each exercise after its checker's cell; how the run ended goes to ``run``."""
    errors = _jupyter()[1].exceptions
    at_cell = None
    try:
        at["deadline"] = start + timeout
        for index, cell in enumerate(nb.cells):
            if cell.get("cell_type") != "code":
                continue
            at_cell = index
            at["deadline"] = start + timeout
            client.execute_cell(cell, index)
            for name in _CALL.findall(cell.source):
                key = name.removeprefix("check_")
                if any(key == ex for ex, _ in plan):
                    _grade_exercise(run, calls, key, "")
    except errors.CellExecutionError as e:
        run.state = "crashed"
        run.reason = f"the notebook stopped at cell {at_cell + 1} of {len(nb.cells)} with {e.ename}: {_first_line(e.evalue)}"
    except (errors.CellTimeoutError, TimeoutError):
        run.state = "timeout"
        run.reason = f"the notebook ran past the {timeout:g} s limit (at cell {(at_cell or 0) + 1} of {len(nb.cells)})"
    except errors.DeadKernelError as e:
        run.state = "crashed"
        run.reason = f"the kernel died at cell {(at_cell or 0) + 1} of {len(nb.cells)} ({_first_line(e)})"
        calls.lost = "the kernel died"
    if run.state == "timeout":
        calls.lost = run.reason
    reached = "the checker never ran (its cell was removed or changed)" if run.state == "ok" else run.reason
    for ex, _ in plan:
        _grade_exercise(run, calls, ex, reached)


def run_notebook(path: Path, plan: list[tuple[str, str]], spec: dict) -> NotebookRun:
    """Run one student notebook in a sandboxed kernel and grade its exercises from the grader's side."""
    NotebookClient = _jupyter()[1].NotebookClient
    timeout = float(spec["timeout"])
    nb = _read_notebook(path)
    if isinstance(nb, NotebookRun):
        return nb
    run = NotebookRun("ok", results=_library_answers(nb, plan))

    tmp = Path(tempfile.mkdtemp(prefix="ddpm-grade-"))
    work = tmp / "work"
    try:
        _copy_folder(path.parent, work)
        for other in work.glob("*.ipynb"):
            other.unlink()  # the kernel sees its own folder's other files, never the notebooks
        env = _kernel_env(work, plan, spec)
        km = _sandboxed_kernel(work, spec, timeout)
        at = {"deadline": time.monotonic() + timeout}
        client = NotebookClient(nb, km=km, resources={"metadata": {"path": str(work)}}, allow_errors=False,
                                timeout_func=lambda cell: max(1, int(math.ceil(at["deadline"] - time.monotonic()))),
                                shutdown_kernel="immediate", iopub_timeout=10)
        start = time.monotonic()
        call_budget = 4 * spec["call_timeout"] + 30
        calls = KernelCalls(_cell_runner(client, at), work, spec["call_timeout"],
                            remaining=lambda: start + timeout + call_budget - time.monotonic())
        err = open(tmp / "kernel_stderr.txt", "w", encoding="utf-8")
        try:
            with client.setup_kernel(env=env, cwd=str(work), stdout=subprocess.DEVNULL, stderr=err):
                _run_cells(client, nb, plan, run, calls, at, start, timeout)
        except Exception as e:  # noqa: BLE001 - a kernel that cannot start or stop never stops the class
            run.state = "crashed"
            run.reason = f"the notebook could not run ({type(e).__name__}: {_first_line(e)})"
            for ex, _ in plan:
                run.results.setdefault(ex, ("error", f"not reached: {run.reason}"))
        finally:
            err.close()
            calls.close()
        run.seconds = time.monotonic() - start
    finally:
        sandbox.kill_marked(spec["mark"])
        shutil.rmtree(tmp, ignore_errors=True)
    return run


def rows_for(student: str, notebook: str, plan: list[tuple[str, str]], run: NotebookRun) -> list[dict]:
    """One row per exercise of the notebook: the grader's verdict, or why there is none."""
    if run.state in ("missing", "refused"):
        return [dict(student=student, notebook=notebook, exercise=ex, status="error", message=run.reason)
                for ex, _ in plan]
    rows = []
    for ex, _ in plan:
        status, message = run.results.get(ex, ("error", f"not reached: {run.reason or 'the checker never ran'}"))
        rows.append(dict(student=student, notebook=notebook, exercise=ex, status=status, message=message))
    return rows


def _die_with_parent(mark: str, parent: int) -> None:
    """When the grader dies (killed by a submission, or Ctrl-C), stop this student's kernel and exit too."""

    def stop(signum, frame):
        sandbox.kill_marked(mark)
        os._exit(1)

    signal.signal(signal.SIGTERM, stop)
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # the grader died before prctl
        stop(None, None)


def worker() -> int:
    """The child that grades one student: reads its spec on stdin, prints one tagged JSON line per notebook."""
    spec = json.loads(sys.stdin.readline())
    tag = spec["token"]
    _die_with_parent(spec["mark"], int(spec["parent"]))
    load_all()
    for notebook in spec["notebooks"]:
        plan = [tuple(p) for p in spec["plans"][notebook]]
        path = Path(spec["folder"]) / notebook
        refused = spec["refused"].get(notebook)
        if refused:
            run = NotebookRun("refused", refused)
        elif not handed_in(path):
            run = NotebookRun("missing", "notebook not submitted")
        else:
            run = run_notebook(path, plan, spec)
        line = {"notebook": notebook, "state": run.state, "reason": run.reason, "seconds": run.seconds,
                "rows": rows_for(spec["student"], notebook, plan, run)}
        sys.stdout.write(tag + json.dumps(line) + "\n")
        sys.stdout.flush()
    return 0


# --- the class, in the grader -----------------------------------------------------------------------


def _start_worker(spec: dict) -> tuple[subprocess.Popen, object]:
    """Start the child that grades one student (its own session) and hand it ``spec``; returns (process, its stderr file)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    errors = tempfile.TemporaryFile(mode="w+", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "ddpm_lib.course.grade", _WORKER_FLAG], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=errors, start_new_session=True, env=env, text=True)
    proc.stdin.write(json.dumps(spec) + "\n")
    proc.stdin.close()
    return proc, errors


def _read_worker(proc: subprocess.Popen, token: str, student: str, notebooks: list[str], deadline: float,
                 progress) -> tuple[list[dict], list[str], set[str]]:
    """Read the worker's ``token``-prefixed JSON lines until it ends or ``deadline``: (rows, unfinished, notebooks done).

    Lines without the token, malformed ones, a notebook not asked for or seen before, and rows that are not
    this student's, this notebook's or of a known status are ignored (the student's code can print too)."""
    rows: list[dict] = []
    unfinished: list[str] = []
    done: set[str] = set()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    buffer = ""
    while time.monotonic() < deadline:
        if not sel.select(timeout=1.0):
            if proc.poll() is not None:
                break
            continue
        chunk = os.read(proc.stdout.fileno(), 1 << 16).decode("utf-8", "replace")
        if not chunk:
            break
        buffer += chunk
        while "\n" in buffer:
            line, buffer = buffer.split("\n", 1)
            if not line.startswith(token):
                continue
            try:
                got = json.loads(line[len(token):])
            except ValueError:
                continue
            nb = got.get("notebook")
            if nb not in notebooks or nb in done:
                continue
            done.add(nb)
            new = [{k: str(r.get(k, "")) for k in FIELDS} for r in got.get("rows", [])
                   if r.get("student") == student and r.get("notebook") == nb and r.get("status") in STATUSES]
            rows += new
            if got.get("state") not in ("ok", "missing"):
                unfinished.append(f"{nb}: {got.get('reason', '')}")
            counts = {s: sum(r["status"] == s for r in new) for s in STATUSES}
            progress(f"{shown(student)}/{nb}: {got.get('state')} in {float(got.get('seconds') or 0):.1f} s; "
                     + ", ".join(f"{n} {s}" for s, n in counts.items() if n))
    return rows, unfinished, done


def _stop_worker(proc: subprocess.Popen, errors, mark: str, deadline: float) -> str:
    """Wait for the worker (30 s at most), kill its session and its kernels; returns why it ended early, or ''."""
    try:
        proc.wait(timeout=max(1.0, min(30.0, deadline - time.monotonic())))
        killed_by = ""
    except subprocess.TimeoutExpired:
        killed_by = "ran past its time limit and was stopped"
    try:
        os.killpg(proc.pid, 9)
    except OSError:
        pass
    proc.wait()
    sandbox.kill_marked(mark)
    if killed_by == "" and proc.returncode != 0:
        killed_by = f"was killed (exit code {proc.returncode}; a notebook may have killed it)"
    errors.seek(0)
    last = [line for line in errors.read()[-4000:].splitlines() if line.strip()][-1:]
    errors.close()
    if killed_by and last:
        killed_by += f" [{last[0][:200]}]"
    return killed_by


def grade_student(student: Path, notebooks: list[str], plans: dict, refused: dict, options: dict,
                  progress=print) -> tuple[list[dict], list[str]]:
    """Grade one student in a child process; returns (rows, notebooks not finished). Never raises for the student."""

    token = secrets.token_hex(16)
    spec = dict(options, student=student.name, folder=str(student), notebooks=notebooks, token=token,
                plans={nb: plans[nb] for nb in notebooks}, refused=refused, mark=secrets.token_hex(12),
                parent=os.getpid())
    limit = len(notebooks) * (options["timeout"] + 6 * options["call_timeout"] + 120)
    proc, errors = _start_worker(spec)
    deadline = time.monotonic() + limit
    rows, unfinished, done = _read_worker(proc, token, student.name, notebooks, deadline, progress)
    killed_by = _stop_worker(proc, errors, spec["mark"], deadline)
    for nb in notebooks:
        if nb not in done:
            why = f"not graded: the grading process for this student {killed_by or 'ended early'} during {nb}"
            rows += [dict(student=student.name, notebook=nb, exercise=ex, status="error", message=why)
                     for ex, _ in plans[nb]]
            unfinished.append(f"{nb}: {why}")
            progress(f"{shown(student.name)}/{nb}: error: {why}")
    return rows, unfinished


def summary_path(out: Path) -> Path:
    return out.with_name(f"{out.stem}_summary.csv")


def summary_line(student: str, rows: list[dict], unfinished: list[str], notes: list[str], mode: str) -> dict:
    line = {"student": student}
    for s in STATUSES:
        line[s.replace(" ", "_")] = sum(r["status"] == s for r in rows)
    line["exercises"] = len(rows)
    line["notebooks_not_finished"] = "; ".join(unfinished)
    line["notes"] = "; ".join(notes)
    line["sandbox"] = mode
    return line


def _positive(name: str):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number of seconds, got {text!r}") from None
        if not math.isfinite(value) or value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be a finite positive number, got {text!r}")
        return value
    return parse


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit code 2 (argparse prints the usage too)
        print(f"grade: {message}", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m ddpm_lib.course.grade", description=__doc__.split("\n\n")[0])
    parser.add_argument("submissions", help="folder with one sub-folder of notebooks per student")
    parser.add_argument("--out", default="grades.csv", help="grades CSV to write (default: grades.csv)")
    parser.add_argument("--timeout", type=_positive("--timeout"), default=DEFAULT_TIMEOUT,
                        help=f"seconds allowed per notebook (default: {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--call-timeout", type=_positive("--call-timeout"), default=DEFAULT_CALL_TIMEOUT,
                        help=f"seconds allowed per call of a student's function while grading (default: "
                        f"{DEFAULT_CALL_TIMEOUT:g})")
    parser.add_argument("--memory-gb", type=_positive("--memory-gb"), default=16.0,
                        help="address-space limit of a student's kernel, GiB (default: 16)")
    parser.add_argument("--instructor", default=None,
                        help="folder of the instructor notebooks, to list each notebook's exercises "
                        "(default: this checkout's notebooks/)")
    parser.add_argument("--kernel", default="python3", help="Jupyter kernel to run the notebooks with")
    parser.add_argument("--sandbox", default="auto", choices=["auto", "bwrap", "unshare", "none"],
                        help="OS sandbox for the students' kernels (default: auto, the best that works here)")
    parser.add_argument("--resume", action="store_true",
                        help="continue an interrupted run: keep --out and skip the students already in it")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an --out file that is not a grades CSV written by this command")
    return parser


class _Refused(Exception):
    """An input the grader will not start with; the message is the one line printed (exit code 2)."""


def _checked_inputs(args, submissions: Path, instructor: Path, out: Path) -> tuple[dict, Scan, list[str], str]:
    """(plans, scan, notebooks to grade, sandbox mode) once every input is usable; else raises :class:`_Refused`."""
    if not submissions.is_dir():
        raise _Refused(f"SUBMISSIONS {submissions} is not a folder; give the folder holding one sub-folder per student.")
    if not instructor.is_dir() or not any(instructor.glob("*.ipynb")):
        raise _Refused(f"--instructor {instructor} holds no notebooks; point it at the course's notebooks/ folder.")
    plans = instructor_plan(instructor)
    found = scan(submissions, set(plans))
    if not found.students:
        raise _Refused(f"{submissions} holds no student folders; expected {submissions}/<student>/<notebook>.ipynb.")
    notebooks = sorted({nb for s in found.students for nb in plans if handed_in(s / nb) or nb in found.refused[s.name]})
    if not notebooks:
        raise _Refused(f"no course notebooks were handed in: {submissions}/<student>/ folders hold no .ipynb files "
                       f"named like those in {instructor}.")
    if not out.parent.is_dir():
        raise _Refused(f"--out {out}: the folder {out.parent} does not exist; create it or choose another path.")
    try:  # the no-clobber rule (ddpm_lib.files): replace only an (empty or) grades CSV, unless --overwrite
        for path, fields in ((args.out, FIELDS), (None, SUMMARY_FIELDS)):
            check_output_file(summary_path(out) if path is None else path, option="--out", kind="a grades CSV",
                              overwrite=args.overwrite and not args.resume,
                              is_own=lambda p, f=fields: p.stat().st_size == 0 or _is_grades_csv(p, f))
    except ClobberError as e:
        raise _Refused(str(e)) from None
    try:
        _jupyter()[0].kernelspec.KernelSpecManager().get_kernel_spec(args.kernel)
    except Exception:  # noqa: BLE001 - NoSuchKernel and friends: one line
        raise _Refused(f"--kernel {args.kernel}: no such Jupyter kernel here; list them with `jupyter kernelspec list`.") from None
    if args.resume and not out.exists():
        raise _Refused(f"--resume: {out} does not exist; run without --resume to start the class.")
    mode = sandbox.detect(args.sandbox)
    if args.sandbox not in ("auto", mode):
        raise _Refused(f"--sandbox {args.sandbox} does not work on this machine; use --sandbox auto.")
    return plans, found, notebooks, mode


def _rebuild_summary_lines(out: Path, students: set[str], mode: str) -> None:
    """Append the summary lines of ``students`` (in grades.csv, killed before their summary line) from their rows."""
    with open(out, encoding="utf-8", newline="") as fh:
        old_rows = list(csv.DictReader(fh))
    for student in sorted(students):
        mine = [r for r in old_rows if r["student"] == student]
        append_rows(summary_path(out), SUMMARY_FIELDS,
                    [summary_line(student, mine, [], ["summary line rebuilt by --resume"], mode)])


def _print_table(summary: list[dict]) -> None:
    """The summary as a table on the terminal: the counts per status and the notes, one student a line."""
    print()
    print(f"{'student':20s} {'correct':>7s} {'wrong':>5s} {'not done':>8s} {'library':>7s} {'error':>5s}  notes")
    for line in summary:
        extra = "; ".join(x for x in (line["notebooks_not_finished"], line["notes"]) if x)
        print(f"{shown(line['student'])[:20]:20s} {line['correct']:7d} {line['wrong']:5d} {line['not_done']:8d} "
              f"{line['uses_library']:7d} {line['error']:5d}  {shown(extra) or '-'}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv == [_WORKER_FLAG]:
        return worker()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as e:
        if not e.code:  # --help
            raise
        return int(e.code)

    submissions = Path(args.submissions)
    instructor = Path(args.instructor) if args.instructor else default_instructor_dir()
    out = Path(args.out)
    try:
        plans, found, notebooks, mode = _checked_inputs(args, submissions, instructor, out)
    except _Refused as e:
        print(f"grade: {e}", file=sys.stderr)
        return 2

    print(f"grade: sandbox: {mode} ({sandbox.describe(mode)})")
    done: set[str] = set()
    if args.resume:
        done = _done_students(out)
        print(f"grade: --resume: {len(done)} student(s) already in {out} are skipped")
    else:
        for path in (out, summary_path(out)):
            path.unlink(missing_ok=True)
    options = {"timeout": args.timeout, "call_timeout": args.call_timeout, "memory_gb": args.memory_gb,
               "kernel": args.kernel, "sandbox": mode, "data_dir": str(load_settings().data_dir),
               "hide": sorted({str(submissions.resolve()), str(instructor.resolve()), str(out.resolve()),
                               str(summary_path(out).resolve())})}
    for line in found.skipped:
        print(f"grade: {shown(line)}")
    summary = []
    in_summary = _done_students(summary_path(out)) if args.resume and summary_path(out).exists() else set()
    if done - in_summary:  # killed between a student's rows and their summary line: rebuild it from the rows
        _rebuild_summary_lines(out, done - in_summary, mode)
    for name in found.skipped:
        student = name.split(":")[0]
        if neutral(student) not in in_summary:
            line = summary_line(student, [], [], [name], mode)
            summary.append(line)
            append_rows(summary_path(out), SUMMARY_FIELDS, [line])
    total = 0
    for student in found.students:
        if neutral(student.name) in done:  # the CSV holds the neutralised name
            continue
        rows, unfinished = grade_student(student, notebooks, plans, found.refused[student.name], options)
        for nb in found.refused[student.name]:
            if nb not in notebooks:
                unfinished.append(found.refused[student.name][nb])
        append_rows(out, FIELDS, rows)
        line = summary_line(student.name, rows, unfinished, found.notes[student.name], mode)
        append_rows(summary_path(out), SUMMARY_FIELDS, [line])
        summary.append(line)
        total += len(rows)
    _print_table(summary)
    print(f"\nWrote {out} ({total} rows) and {summary_path(out)}; sandbox: {mode}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
