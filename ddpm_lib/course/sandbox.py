"""Run an untrusted command (a student's Jupyter kernel) in an OS sandbox, with resource limits.

:func:`detect` picks, in this order:

- ``bwrap`` (bubblewrap): a read-only view of ``/``, the working copy the only writable folder, the
  submissions, instructor and output folders hidden behind empty tmpfs, a private ``/dev/shm``,
  new PID namespace and session, killed with the grader (``--die-with-parent``); its command
  line is only exercised where bubblewrap is installed (the course's CI machine has none: ``unshare``);
- ``unshare`` (util-linux, unprivileged user + mount + PID namespaces: ``unshare -r -m -p -f --mount-proc
  --kill-child``): the same, set up by :func:`inside` in the new namespaces (remount every mount read-only
  but the working copy, hide the same folders); the kernel is PID 1 of its own PID namespace, so it can
  signal no process of the grader's and everything it starts dies with it;
- ``none``: only the limits below, a new session and a minimal environment. The kernel runs as the
  grader's user: it can read and write whatever that user can, and signal the grader's processes.

In every case :func:`inside` applies resource limits before ``exec``: CPU time, address space, file size,
open files, processes (``RLIMIT_NPROC``, which Linux does not enforce for root), no core dumps.
Not covered by any mode here: the network (the kernel talks to the grader over local TCP) and files
outside the hidden folders that the grader's user may read (run the grader as a user without secrets).
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

MODES = ("bwrap", "unshare", "none")
#: marks every process started for one grading run (the kernel inherits it): see :func:`leftover_processes`
RUN_MARK_ENV = "DDPM_GRADE_RUN"


@dataclass
class Limits:
    cpu_seconds: int = 1200
    memory_bytes: int = 16 * 2**30
    file_bytes: int = 2 * 2**30
    open_files: int = 1024
    processes: int = 256

    def as_args(self) -> list[str]:
        return ["--limits", json.dumps(self.__dict__)]


def _works(cmd: list[str]) -> bool:
    try:
        return subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=20).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def detect(preferred: str = "auto") -> str:
    """The best sandbox that works here (``auto``), or ``preferred`` if it works; ``none`` as the last resort."""
    order = MODES if preferred == "auto" else (preferred,)
    for mode in order:
        if mode == "none":
            return "none"
        if mode == "bwrap" and shutil.which("bwrap") and _works(
                ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--unshare-pid", "true"]):
            return "bwrap"
        if mode == "unshare" and shutil.which("unshare") and _works(
                ["unshare", "-r", "-m", "-p", "-f", "--mount-proc", "--kill-child", "sh", "-c",
                 "mount -o remount,bind,ro / && mount -t tmpfs tmpfs /dev/shm"]):
            return "unshare"
    return "none"


def describe(mode: str) -> str:
    return {
        "bwrap": "bubblewrap: read-only filesystem but the copy, other folders hidden, own PID namespace",
        "unshare": "unshare (user, mount and PID namespaces): read-only filesystem but the copy, other folders "
                   "hidden, own PID namespace",
        "none": "NO sandbox: resource limits and a minimal environment only; a submission can read and write "
                "what the grader's user can and signal its processes",
    }[mode]


def wrap(mode: str, command: list[str], work: Path, hide: list[Path], limits: Limits) -> list[str]:
    """The command line that runs ``command`` sandboxed, ``work`` its only writable folder."""
    inner = [sys.executable, "-m", "ddpm_lib.course.sandbox", "--work", str(work), *limits.as_args()]
    if mode == "unshare":
        inner += ["--mount"] + [a for h in hide for a in ("--hide", str(h))]
        return ["unshare", "-r", "-m", "-p", "-f", "--mount-proc", "--kill-child", *inner, "--", *command]
    if mode == "bwrap":
        out = ["bwrap", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/dev/shm",
               "--bind", str(work), str(work), "--unshare-pid", "--new-session", "--die-with-parent"]
        for h in hide:
            if h.is_dir():
                out += ["--tmpfs", str(h)]
            elif h.exists():
                out += ["--ro-bind", "/dev/null", str(h)]
        return [*out, *inner, "--", *command]
    return [*inner, "--", *command]


def minimal_env(work: Path, extra: dict[str, str]) -> dict[str, str]:
    """PATH, HOME and TMPDIR in the copy, LANG, the Python path of this ddpm_lib, and ``extra``: nothing else."""
    package_root = str(Path(__file__).resolve().parents[2])
    env = {
        "PATH": os.path.dirname(sys.executable) + os.pathsep + "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(work),
        "TMPDIR": str(work / ".tmp"),
        "LANG": os.environ.get("LANG", "C.UTF-8"),
        "PYTHONPATH": package_root,
        "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(work / ".tmp" / "matplotlib"),
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    (work / ".tmp").mkdir(exist_ok=True)
    env.update(extra)
    return env


# --- the processes a run leaves behind -------------------------------------------------------------


def marked_processes(mark: str) -> list[int]:
    """PIDs (other than this one) whose environment holds ``DDPM_GRADE_RUN=mark``."""
    needle = f"{RUN_MARK_ENV}={mark}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            data = (entry / "environ").read_bytes()
        except OSError:
            continue
        if needle in data.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(mark: str, rounds: int = 5) -> list[int]:
    """SIGKILL every process of this run (see :func:`marked_processes`) until none is left; returns those killed."""
    killed: list[int] = []
    for _ in range(rounds):
        pids = marked_processes(mark)
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            except OSError:
                pass
        time.sleep(0.2)
    return killed


# --- inside the sandbox, before the kernel starts ---------------------------------------------------


def _mount_points() -> list[str]:
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        if len(fields) > 4:
            points.append(fields[4].replace("\\040", " "))
    return points


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def setup_mounts(work: Path, hide: list[Path]) -> None:
    """In a new mount namespace: ``work`` stays writable, every other mount becomes read-only, ``hide`` empty."""
    if not _mount("--bind", str(work), str(work)):
        raise SystemExit(f"sandbox: cannot bind {work}")
    keep = {str(work), "/proc"}
    for point in sorted(set(_mount_points()), key=len):
        if point in keep or point.startswith(("/proc/", str(work) + "/")):
            continue
        if not _mount("-o", "remount,bind,ro", point) and point == "/":
            raise SystemExit("sandbox: cannot make / read-only")
    _mount("-t", "tmpfs", "-o", "size=256m", "tmpfs", "/dev/shm")
    for h in hide:
        if h.is_dir() and not str(work).startswith(str(h) + os.sep):
            _mount("-t", "tmpfs", "-o", "ro,size=4k", "tmpfs", str(h))
        elif h.is_file():
            _mount("--bind", "/dev/null", str(h))


def set_limits(limits: Limits) -> None:
    for which, value in ((resource.RLIMIT_CPU, limits.cpu_seconds), (resource.RLIMIT_AS, limits.memory_bytes),
                         (resource.RLIMIT_FSIZE, limits.file_bytes), (resource.RLIMIT_NOFILE, limits.open_files),
                         (resource.RLIMIT_NPROC, limits.processes), (resource.RLIMIT_CORE, 0)):
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def inside(argv: list[str]) -> None:
    """``python -m ddpm_lib.course.sandbox --work W [--mount] [--hide P]... --limits JSON -- command...``: set up, exec."""
    split = argv.index("--")
    opts, command = argv[:split], argv[split + 1:]
    work = Path(opts[opts.index("--work") + 1])
    limits = Limits(**json.loads(opts[opts.index("--limits") + 1]))
    hide = [Path(opts[i + 1]) for i, a in enumerate(opts) if a == "--hide"]
    if "--mount" in opts:
        setup_mounts(work, hide)
    os.chdir(work)
    set_limits(limits)
    os.execvp(command[0], command)


if __name__ == "__main__":
    inside(sys.argv[1:])
