"""ddpm_lib.course.grade against hostile submissions (issue 21): one class, one test per attack.

The instructor notebook is tiny: two exercises with real checkers (``ema_warmup``: a float function,
``cfg_mix``: a tensor function). One grading run over a class of attackers (a module fixture, about a minute
or two), then each test reads what grades.csv, the summary and the file system say. For every attack:
grades.csv holds what the grader's checker found, every other student's rows are there, no file outside
the submission's copy changed, and no process is left.

The attacks that only an OS sandbox can stop (writing outside the copy, killing the grader) are skipped
where :func:`ddpm_lib.course.sandbox.detect` finds none: without one the grader cannot stop them (README).
"""

from __future__ import annotations

import csv
import json
import os
import time
from pathlib import Path

import pytest

from ddpm_lib.course import grade, sandbox

NB = "00_x.ipynb"
EXERCISES = ["ema_warmup", "cfg_mix"]
RIGHT_WARMUP = "    return min(decay, (1 + n) / (10 + n))\n"
WRONG_WARMUP = "    return decay\n"  # no warm-up: a mistake the checker names
RIGHT_MIX = "    return u + w * (c - u)\n"
SECRET = "TOPSECRET-7f3a9c"
MODE = sandbox.detect()
needs_sandbox = pytest.mark.skipif(MODE == "none", reason="no OS sandbox here: the grader cannot stop this attack")


def _cell(src: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None, "source": src}


def notebook(warmup: str = RIGHT_WARMUP, mix: str = RIGHT_MIX, before: list[str] = (), after: list[str] = (),
             solution_markers: bool = False) -> dict:
    """The two-exercise notebook: imports, ``def warmup_mine``, its checker, ``def mix_mine``, its checker."""
    def body(code: str) -> str:
        return f"    ### BEGIN SOLUTION\n{code}    ### END SOLUTION\n" if solution_markers else code

    cells = [_cell("import os, sys, json, time, torch\n"
                   "from ddpm_lib.course.exercises.training import check_ema_warmup\n"
                   "from ddpm_lib.course.exercises.guidance import check_cfg_mix\n"),
             *[_cell(c) for c in before],
             _cell(f"def warmup_mine(n, decay):\n{body(warmup)}"),
             _cell("warmup_mine = check_ema_warmup(warmup_mine)"),
             _cell(f"def mix_mine(c, u, w):\n{body(mix)}"),
             _cell("mix_mine = check_cfg_mix(mix_mine)"),
             *[_cell(c) for c in after]]
    for i, c in enumerate(cells):
        c["id"] = f"c{i}"
    return {"cells": cells, "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}}


def _write(path: Path, nb: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(nb), encoding="utf-8")


FORMULA = '=HYPERLINK("evil.example","click")'


def build_class(root: Path) -> dict:
    """The instructor folder, the class, the sentinels; returns the paths the tests look at."""
    inst, sub = root / "instructor", root / "submissions"
    _write(inst / NB, notebook(solution_markers=True))
    sentinel, doomed = root / "sentinel.txt", root / "doomed.txt"
    sentinel.write_bytes(b"the instructor's file\n")
    doomed.write_bytes(b"must not be deleted\n")
    (root / "secret.txt").write_text(SECRET + "\n", encoding="utf-8")
    pwned = root / "PWNED"
    honest_nb = sub / "honest" / NB

    _write(honest_nb, notebook())
    # a copy of the notebook under another name: reported, never run (it would vandalise the sentinel)
    _write(sub / "honest" / "00_x (1).ipynb", notebook(after=[f"open({str(sentinel)!r}, 'w').write('dup ran')"]))
    _write(sub / "wrong" / NB, notebook(warmup=WRONG_WARMUP))
    # forgery: log lines a checker used to trust, checkers patched in the kernel, a tensor that lies about equality
    _write(sub / "forger" / NB, notebook(warmup=WRONG_WARMUP, mix="    return torch.zeros_like(c).as_subclass(Liar)\n", before=[
        "line = json.dumps({'exercise': 'ema_warmup', 'status': 'correct', 'message': ''})\n"
        "for p in [os.environ.get('DDPM_GRADE_LOG', 'grade_log.jsonl'), 'grade_log.jsonl']:\n"
        "    open(p, 'a').write(line + '\\n')\n"
        "print(line)\n",
        "import ddpm_lib.course.exercises as E\n"
        "E.outcome = lambda key, fn: ('correct', '')\n"
        "for c in list(E.CHECKERS.values()):\n"
        "    c.check = lambda fn: None\n"
        "class Liar(torch.Tensor):\n"
        "    @classmethod\n"
        "    def __torch_function__(cls, func, types, args=(), kwargs=None):\n"
        "        if func in (torch.allclose, torch.equal, torch.isclose, torch.Tensor.__eq__):\n"
        "            return True\n"
        "        return super().__torch_function__(func, types, args, kwargs or {})\n"]))
    # an answer file that runs code when unpickled
    _write(sub / "pickler" / NB, notebook(before=[
        "import pickle, ddpm_lib.course.gradecall as G\n"
        "class Boom:\n"
        f"    def __reduce__(self):\n        return (os.system, ('touch {pwned}',))\n"
        "def run_call(d):\n"
        "    pickle.dump(Boom(), open(os.path.join(d, 'out.pt'), 'wb'))\n"
        "G.run_call = run_call\n"]))
    # escape: write and delete outside the copy, read other students' files and the instructor's environment
    _write(sub / "vandal" / NB, notebook(
        warmup=("    try:\n"
                f"        open({str(honest_nb)!r}).read()\n"
                "        return -1.0  # could read another student's notebook\n"
                "    except OSError:\n"
                "        pass\n"
                "    if 'INSTRUCTOR_SECRET' in os.environ:\n"
                "        return -2.0\n" + RIGHT_WARMUP),
        before=["\n".join(f"try:\n    {stmt}\nexcept Exception:\n    pass" for stmt in [
            f"open({str(sentinel)!r}, 'w').write('overwritten')",
            f"os.remove({str(doomed)!r})",
            f"open({str(root / 'new_file.txt')!r}, 'w').write('x')",
            f"open({str(honest_nb)!r}, 'w').write('{{}}')",
            f"open({str(inst / NB)!r}, 'w').write('{{}}')",
            f"open({str(root / 'grades.csv')!r}, 'a').write('vandal,00_x.ipynb,cfg_mix,correct,\\n')",
        ])]))
    kills = ["try:\n    os.kill(os.getppid(), 9)\nexcept Exception:\n    pass"]
    if MODE != "none":  # without a sandbox this would kill the test run itself
        kills.insert(0, f"try:\n    os.kill({os.getpid()}, 9)\nexcept Exception:\n    pass")
    _write(sub / "killer" / NB, notebook(after=kills))
    _write(sub / "forker" / NB, notebook(after=[
        "import subprocess\n"
        "subprocess.Popen(['sleep', '317.25'], start_new_session=True)\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        import signal\n"
        "        signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "        signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
        "        os.execvp('sleep', ['sleep', '318.25'])\n"
        "    os._exit(0)\n"]))
    (sub / "linker").mkdir(parents=True)
    (sub / "linker" / NB).symlink_to(root / "secret.txt")
    _write(sub / FORMULA / NB, notebook(warmup="    raise ValueError('=HYPERLINK(\"evil.example\")')\n"))
    (sub / "@SUM(1+1)").mkdir()
    _write(sub / "librarian" / NB, notebook(
        warmup="    from ddpm_lib.models.ema import ema_decay_at as f\n    return f(n, decay)\n",
        mix="    return check_cfg_mix.reference(c, u, w)\n"))
    _write(sub / "hoarder" / NB, notebook(warmup="    return torch.zeros(2 ** 25)\n",
                                          mix="    time.sleep(10 ** 6)\n"))
    _write(sub / "_hidden" / NB, notebook())
    return {"root": root, "sub": sub, "inst": inst, "sentinel": sentinel, "doomed": doomed, "pwned": pwned}


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().split(") ")[-1][:1]
        except OSError:
            continue
        if state != "Z" and (text in cmd or text in cwd):
            found.append(f"{entry.name}: {cmd[:120]}")
    return found


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    paths = build_class(root)
    before = {p: p.read_bytes() for p in (paths["sentinel"], paths["doomed"], paths["inst"] / NB,
                                          paths["sub"] / "honest" / NB)}
    before_listing = sorted(p.name for p in root.iterdir())
    tmp = root / "tmp"
    tmp.mkdir()
    mp = pytest.MonkeyPatch()
    mp.setenv("INSTRUCTOR_SECRET", "s3cr3t")
    mp.setenv("TMPDIR", str(tmp))  # the grader's temporary copies: a left process would still point here
    out = root / "grades.csv"
    import contextlib
    import io

    printed = io.StringIO()
    start = time.monotonic()
    try:
        with contextlib.redirect_stdout(printed):
            code = grade.main([str(paths["sub"]), "--instructor", str(paths["inst"]), "--out", str(out),
                               "--timeout", "120", "--call-timeout", "8"])
    finally:
        mp.undo()
    time.sleep(0.5)
    rows = list(csv.DictReader(out.open(encoding="utf-8", newline="")))
    summary = list(csv.DictReader(grade.summary_path(out).open(encoding="utf-8", newline="")))
    return dict(paths, code=code, rows=rows, summary=summary, printed=printed.getvalue(), before=before,
                before_listing=before_listing, out=out, seconds=time.monotonic() - start, tmp=tmp)


def status(graded, student: str) -> dict[str, tuple[str, str]]:
    return {r["exercise"]: (r["status"], r["message"]) for r in graded["rows"]
            if r["student"] == student and r["notebook"] == NB}


def test_the_class_is_graded_and_every_student_has_rows(graded):
    assert graded["code"] == 0
    students = {r["student"] for r in graded["rows"]}
    want = {"honest", "wrong", "forger", "pickler", "vandal", "killer", "forker", "linker", "'" + FORMULA,
            "'@SUM(1+1)", "librarian", "hoarder"}
    assert students == want
    for s in want:
        assert sorted(r["exercise"] for r in graded["rows"] if r["student"] == s) == sorted(EXERCISES), s
    assert status(graded, "honest") == {"ema_warmup": ("correct", ""), "cfg_mix": ("correct", "")}
    assert status(graded, "wrong")["ema_warmup"][0] == "wrong"
    assert "no warm-up" in status(graded, "wrong")["ema_warmup"][1]
    assert status(graded, "wrong")["cfg_mix"] == ("correct", "")
    assert f"sandbox: {MODE}" in graded["printed"]
    assert {r["sandbox"] for r in graded["summary"]} == {MODE}


def test_forged_log_lines_and_patched_checkers_change_nothing(graded):
    got = status(graded, "forger")
    assert got["ema_warmup"][0] == "wrong" and "no warm-up" in got["ema_warmup"][1]
    # the tensor subclass that says it equals everything arrives as a plain tensor of zeros
    assert got["cfg_mix"][0] == "wrong" and "differ" in got["cfg_mix"][1]


def test_an_answer_that_runs_code_when_unpickled_is_refused(graded):
    got = status(graded, "pickler")
    for s, m in got.values():  # right answers, but sent back as a pickle that would run a command
        assert s == "wrong" and "UnreadableAnswer" in m
    assert not graded["pwned"].exists()


def test_answer_files_are_read_safely(tmp_path):
    """read_answer: a code-running pickle is refused, a FIFO never blocks, a symlink is never followed."""
    import pickle

    from ddpm_lib.course.gradecall import Malformed, read_answer

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'PWNED'}",))

    (tmp_path / "out.pt").write_bytes(pickle.dumps(Boom(), protocol=2))
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(pickle.UnpicklingError):
            read_answer("out.pt", fd)
        os.mkfifo(tmp_path / "fifo")
        with pytest.raises(Malformed):
            read_answer("fifo", fd)  # never blocks on a FIFO
        (tmp_path / "link").symlink_to(tmp_path / "out.pt")
        with pytest.raises(OSError):
            read_answer("link", fd)  # never follows a symlink
    finally:
        os.close(fd)
    assert not (tmp_path / "PWNED").exists()


@needs_sandbox
def test_files_outside_the_copy_stay_byte_identical(graded):
    for path, data in graded["before"].items():
        assert path.read_bytes() == data, path
    assert sorted(p.name for p in graded["root"].iterdir() if p.name not in ("grades.csv", "grades_summary.csv")) \
        == sorted(graded["before_listing"] + ["tmp"])
    assert status(graded, "vandal") == {"ema_warmup": ("correct", ""), "cfg_mix": ("correct", "")}, \
        "the vandal's answer is wrong when it could read another student's notebook or an instructor variable"
    # the line it appended to "grades.csv" went nowhere: the vandal has its two rows, like everyone
    assert [r["exercise"] for r in graded["rows"] if r["student"] == "vandal"] == EXERCISES


@needs_sandbox
def test_killing_the_parent_and_the_grader_costs_only_the_killers_notebook(graded):
    got = status(graded, "killer")
    assert got == {"ema_warmup": ("correct", ""), "cfg_mix": ("correct", "")}  # graded right after their cells
    line = next(r for r in graded["summary"] if r["student"] == "killer")
    assert "kernel died" in line["notebooks_not_finished"]
    assert status(graded, "librarian") and status(graded, "hoarder")  # students after the killer were graded


def test_no_process_is_left(graded):
    assert _processes_mentioning(str(graded["tmp"])) == []
    assert _processes_mentioning("317.25") == [] and _processes_mentioning("318.25") == []
    assert status(graded, "forker") == {"ema_warmup": ("correct", ""), "cfg_mix": ("correct", "")}


def test_a_symlinked_notebook_is_refused_and_never_read(graded):
    got = status(graded, "linker")
    assert all(s == "error" and "symbolic link" in m for s, m in got.values())
    for path in (graded["out"], grade.summary_path(graded["out"])):
        assert SECRET not in path.read_text(encoding="utf-8")
    assert SECRET not in graded["printed"]


def test_formulas_in_folder_names_and_messages_are_neutralised(graded):
    for path in (graded["out"], grade.summary_path(graded["out"])):
        with open(path, encoding="utf-8", newline="") as fh:
            for row in csv.reader(fh):
                for cell in row:
                    assert cell[:1] not in ("=", "+", "-", "@", "\t", "\r"), (path.name, cell)
    got = status(graded, "'" + FORMULA)
    assert got["ema_warmup"][0] == "wrong" and '=HYPERLINK("evil.example")' in got["ema_warmup"][1]
    assert got["cfg_mix"] == ("correct", "")
    assert all(m == "notebook not submitted" for _, m in status(graded, "'@SUM(1+1)").values())
    assert grade.neutral("=1+2") == "'=1+2" and grade.neutral("-3") == "'-3" and grade.neutral("\tx") == "'\tx"
    assert grade.neutral("a=b") == "a=b"


def test_a_duplicate_notebook_is_reported_not_run(graded):
    assert not any(r["notebook"] != NB for r in graded["rows"])  # nobody is "not submitted" for the copy
    line = next(r for r in graded["summary"] if r["student"] == "honest")
    assert "00_x (1).ipynb" in line["notes"] and "not graded" in line["notes"]
    assert graded["sentinel"].read_bytes() != b"dup ran"


def test_a_hidden_folder_is_reported(graded):
    assert "_hidden" not in {r["student"] for r in graded["rows"]}
    line = next(r for r in graded["summary"] if r["student"] == "_hidden")
    assert "skipped" in line["notes"]
    assert "_hidden: skipped" in graded["printed"]


def test_library_calls_are_graded_uses_library(graded):
    got = status(graded, "librarian")
    assert got["ema_warmup"][0] == "uses library" and "ddpm_lib.models.ema.ema_decay_at" in got["ema_warmup"][1]
    assert got["cfg_mix"][0] == "uses library" and ".reference" in got["cfg_mix"][1]
    line = next(r for r in graded["summary"] if r["student"] == "librarian")
    assert line["uses_library"] == "2"


def test_huge_and_hanging_answers_are_wrong_not_fatal(graded):
    got = status(graded, "hoarder")
    assert got["ema_warmup"][0] == "wrong" and "AnswerTooLarge" in got["ema_warmup"][1]
    assert got["cfg_mix"][0] == "wrong" and "did not return within 8 s" in got["cfg_mix"][1]


@pytest.mark.parametrize("value", ["nan", "inf", "-1", "0"])
def test_timeout_must_be_finite_and_positive(tmp_path, capsys, value):
    _write(tmp_path / "sub" / "s" / NB, notebook())
    _write(tmp_path / "inst" / NB, notebook())
    code = grade.main([str(tmp_path / "sub"), "--instructor", str(tmp_path / "inst"), "--out",
                       str(tmp_path / "g.csv"), "--timeout", value])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1 and "--timeout" in err and "Traceback" not in err
    assert not (tmp_path / "g.csv").exists()


def test_resume_skips_students_already_graded_and_out_is_never_a_foreign_file(tmp_path, capsys):
    """A class interrupted after one student (its rows fsynced) continues with --resume; a file that is not a
    grades CSV is refused as --out."""
    _write(tmp_path / "inst" / NB, notebook(solution_markers=True))
    _write(tmp_path / "sub" / "ann" / NB, notebook())
    _write(tmp_path / "sub" / "ben" / NB, notebook(warmup=WRONG_WARMUP))
    out = tmp_path / "g.csv"
    grade.append_rows(out, grade.FIELDS, [dict(student="ann", notebook=NB, exercise=e, status="correct", message="")
                                          for e in EXERCISES])
    with open(out, "a") as fh:
        fh.write("ann,00_x.ipynb,torn")  # a crash in the middle of a write
    args = [str(tmp_path / "sub"), "--instructor", str(tmp_path / "inst"), "--out", str(out)]
    assert grade.main([*args, "--resume"]) == 0
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [(r["student"], r["exercise"], r["status"]) for r in rows] == [
        ("ann", "ema_warmup", "correct"), ("ann", "cfg_mix", "correct"),
        ("ben", "ema_warmup", "wrong"), ("ben", "cfg_mix", "correct")]
    assert "1 student(s) already in" in capsys.readouterr().out
    foreign = tmp_path / "notes.csv"
    foreign.write_text("my,own,data\n")
    assert grade.main([*args[:-1], str(foreign)]) == 2
    assert foreign.read_text() == "my,own,data\n"
    assert "not a grades CSV" in capsys.readouterr().err


def test_sandbox_kill_marked_leaves_nothing(tmp_path):
    """The clean-up the grader runs after every student: every process carrying the run's mark is killed."""
    import subprocess
    import sys

    mark = "test" + os.urandom(4).hex()
    env = dict(os.environ, **{sandbox.RUN_MARK_ENV: mark})
    code = "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(300)\ntime.sleep(300)"
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    deadline = time.monotonic() + 20
    while len(sandbox.marked_processes(mark)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert len(sandbox.marked_processes(mark)) == 2
    assert sorted(sandbox.kill_marked(mark))
    proc.wait(timeout=10)
    assert sandbox.marked_processes(mark) == []


def test_without_a_sandbox_the_verdicts_are_the_same(tmp_path, capsys):
    """--sandbox none (what a machine without user namespaces gets): the grader still decides every status,
    and says plainly that nothing else is protected."""
    _write(tmp_path / "inst" / NB, notebook(solution_markers=True))
    _write(tmp_path / "sub" / "ann" / NB, notebook())
    _write(tmp_path / "sub" / "ben" / NB, notebook(warmup=WRONG_WARMUP, before=[
        "import ddpm_lib.course.exercises as E\nE.outcome = lambda key, fn: ('correct', '')"]))
    out = tmp_path / "g.csv"
    assert grade.main([str(tmp_path / "sub"), "--instructor", str(tmp_path / "inst"), "--out", str(out),
                       "--sandbox", "none"]) == 0
    rows = [(r["student"], r["exercise"], r["status"]) for r in csv.DictReader(out.open(encoding="utf-8"))]
    assert rows == [("ann", "ema_warmup", "correct"), ("ann", "cfg_mix", "correct"),
                    ("ben", "ema_warmup", "wrong"), ("ben", "cfg_mix", "correct")]
    printed = capsys.readouterr().out
    assert "sandbox: none (NO sandbox" in printed
    assert {r["sandbox"] for r in csv.DictReader(grade.summary_path(out).open(encoding="utf-8"))} == {"none"}


@pytest.mark.skipif(bool(__import__("shutil").which("bwrap")), reason="bubblewrap is installed here")
def test_asking_for_a_sandbox_that_does_not_work_is_refused(tmp_path, capsys):
    _write(tmp_path / "inst" / NB, notebook())
    _write(tmp_path / "sub" / "ann" / NB, notebook())
    assert grade.main([str(tmp_path / "sub"), "--instructor", str(tmp_path / "inst"), "--out",
                       str(tmp_path / "g.csv"), "--sandbox", "bwrap"]) == 2
    err = capsys.readouterr().err
    assert "--sandbox bwrap does not work" in err and len(err.strip().splitlines()) == 1


def test_when_the_grader_dies_its_worker_and_the_kernel_die_too(tmp_path):
    """Killed grader (a submission without a sandbox, or the instructor's Ctrl-C): no kernel keeps running."""
    import subprocess
    import sys

    _write(tmp_path / "inst" / NB, notebook(solution_markers=True))
    _write(tmp_path / "sub" / "ann" / NB, notebook(before=["time.sleep(300)"]))
    (tmp_path / "tmp").mkdir()
    env = dict(os.environ, TMPDIR=str(tmp_path / "tmp"))
    proc = subprocess.Popen([sys.executable, "-m", "ddpm_lib.course.grade", str(tmp_path / "sub"), "--instructor",
                             str(tmp_path / "inst"), "--out", str(tmp_path / "g.csv")], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not any("ipykernel" in p for p in _processes_mentioning(str(tmp_path / "tmp"))):
        assert time.monotonic() < deadline and proc.poll() is None, "the kernel never started"
        time.sleep(0.5)
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while _processes_mentioning(str(tmp_path / "tmp")) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert _processes_mentioning(str(tmp_path / "tmp")) == []
