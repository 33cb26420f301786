"""The run folder: its layout, its lock, the start/resume policy, and signals that save before stopping.

A run folder (``TrainConfig.out_dir``) holds::

    latest.pt     the newest checkpoint (every ``checkpoint_every`` steps, at the end, and on SIGINT/SIGTERM)
    best.pt       the checkpoint with the lowest smoothed loss so far
    final.pt      written when a run finishes (all steps, or early stopping)
    metrics.csv   one row per logged step (ddpm_lib.training.monitor)
    config.json   the TrainConfig of the run
    samples/      sample grids;  tb/  TensorBoard logs
    .lock         held by the trainer writing into the folder (its pid inside)

**Never lose work** (:class:`RunFolder`): ``resume=True`` with ``latest.pt`` missing but other
checkpoints present is refused (nothing is overwritten); a second trainer on a locked folder is
refused with the holder's pid; a lock left by a crashed trainer is recovered; temporary files left
by a killed save are removed; :func:`stop_on_signals` turns SIGINT/SIGTERM into "save, then stop".
What a checkpoint holds is :mod:`ddpm_lib.training.checkpoint`; how files are written, :mod:`ddpm_lib.files`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

from ddpm_lib.files import NoSpaceError, atomic_write, remove_stale_temp_files
from ddpm_lib.training.checkpoint import RunError, resume_conflicts, save_checkpoint

CHECKPOINT_NAMES = ("latest", "best", "final")
LOCK_NAME = ".lock"


class RunLockedError(RunError):
    """Another trainer holds the run folder."""


class StopRequest:
    """Set by :func:`stop_on_signals` when SIGINT or SIGTERM arrives; ``signal`` is its name, else None."""

    def __init__(self):
        self.signal: str | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def stop_on_signals(signals=("SIGINT", "SIGTERM")):
    """While active, SIGINT/SIGTERM only set the yielded :class:`StopRequest` (the loop saves and stops at
    the end of its current step); a second one of the same kind raises ``KeyboardInterrupt`` at once.
    Does nothing outside the main thread (signal handlers can only be set there)."""
    req = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield req
        return
    previous = {}

    def handler(signum, frame):
        name = signal.Signals(signum).name
        if req.signal == name:  # asked twice: stop now
            raise KeyboardInterrupt(name)
        req.signal = name

    for name in signals:
        sig = getattr(signal, name, None)
        if sig is not None:
            previous[sig] = signal.signal(sig, handler)
    try:
        yield req
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunFolder:
    """A training run's folder: its layout, its lock, the start/resume policy and checkpoint saves."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path).expanduser()
        self._lock_fd: int | None = None

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # layout
    def checkpoint(self, name: str) -> Path:
        return self.path / f"{name}.pt"

    @property
    def latest(self) -> Path:
        return self.checkpoint("latest")

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def config_json(self) -> Path:
        return self.path / "config.json"

    @property
    def samples(self) -> Path:
        return self.path / "samples"

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK_NAME

    def existing_checkpoints(self) -> list[Path]:
        """The checkpoints present, in the order ``latest.pt``, ``final.pt``, ``best.pt`` (the newest state first)."""
        return [self.checkpoint(n) for n in ("latest", "final", "best") if self.checkpoint(n).is_file()]

    def last_good_checkpoint(self) -> Path | None:
        found = self.existing_checkpoints()
        return found[0] if found else None

    # lock
    def acquire_lock(self) -> None:
        """Take the folder's lock, or raise :class:`RunLockedError` naming the holder's pid.

        The lock is an ``flock`` on ``.lock`` (released by the kernel when its holder dies, so a crashed
        trainer never blocks the next one); where ``flock`` is missing, a pid file whose process is gone
        counts as stale.
        """
        if self._lock_fd is not None:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            import fcntl  # POSIX only: imported here so that Windows falls back to the pid file
        except ImportError:  # pragma: no cover - Windows
            fcntl = None
        holder = self._read_holder()
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise RunLockedError(self._locked_message(holder)) from None
        elif holder.get("pid") not in (None, os.getpid()) and _pid_alive(int(holder["pid"])):  # pragma: no cover
            os.close(fd)
            raise RunLockedError(self._locked_message(holder))
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        os.fsync(fd)
        self._lock_fd = fd

    def _read_holder(self) -> dict:
        try:
            return json.loads(self.lock_path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _locked_message(self, holder: dict) -> str:
        pid = holder.get("pid", "unknown")
        where = f" on {holder['host']}" if holder.get("host") else ""
        since = f", since {holder['since']}" if holder.get("since") else ""
        return (f"{self.path} is in use by another trainer (pid {pid}{where}{since}): wait for it to finish, or stop "
                f"it (kill -INT {pid} saves a checkpoint first), or train into another --out folder.")

    def release_lock(self) -> None:
        if self._lock_fd is None:
            return
        with contextlib.suppress(OSError):
            os.ftruncate(self._lock_fd, 0)
        os.close(self._lock_fd)  # closing releases the flock
        self._lock_fd = None

    # start / resume policy
    def prepare(self, resume: bool, overwrite: bool) -> Path | None:
        """Make the folder ready for a run (holding the lock); returns the checkpoint to resume from, or None.

        - ``resume`` and ``latest.pt`` exists: resume from it.
        - ``resume``, no ``latest.pt`` but ``final.pt``/``best.pt``: refused (they would be overwritten).
        - a fresh start in a folder holding checkpoints: refused unless ``overwrite`` (which deletes the
          run's checkpoints and ``metrics.csv``).
        Temporary files of interrupted saves are removed.
        """
        self.acquire_lock()
        tmp = remove_stale_temp_files(self.path)
        if tmp:
            print(f"removed {len(tmp)} temporary file(s) left in {self.path} by an interrupted save.")
        found = self.existing_checkpoints()
        names = ", ".join(p.name for p in found)
        if resume and self.latest.is_file():
            return self.latest
        if resume and found:
            first = found[0]
            raise RunError(
                f"resume=True but {self.latest} is missing, and {self.path} holds {names}: nothing was changed. To "
                f"continue from {first.name}, copy it (cp {first} {self.latest}) and resume again; to start afresh "
                "and delete them, use overwrite=True (--overwrite)."
            )
        if found and not overwrite and not resume:
            raise RunError(
                f"out_dir {self.path} already holds a run ({names}): pass resume=True (--resume) to continue it, "
                "overwrite=True (--overwrite) to start it again (deletes them), or choose another out_dir."
            )
        if resume:
            print(f"resume=True but {self.path} holds no checkpoint yet: starting a new run.")
        for p in (*[self.checkpoint(n) for n in CHECKPOINT_NAMES], self.metrics):
            p.unlink(missing_ok=True)
        return None

    def check_resume_config(self, saved: dict, current: dict) -> None:
        """Refuse a continuation whose TrainConfig differs outside :data:`RESUME_MAY_CHANGE`."""
        conflicts = resume_conflicts(saved, current)
        if conflicts:
            raise RunError(
                f"cannot resume {self.latest} with changed settings: {', '.join(conflicts)}. Use the run's values "
                f"(--config {self.config_json} --resume), or start a new run (another out_dir, or overwrite=True)."
            )

    # saving
    def save(self, name: str, payload: dict) -> Path:
        """Write ``<name>.pt`` atomically. Disk full: :class:`NoSpaceError` naming the last good checkpoint."""
        path = self.checkpoint(name)
        try:
            return save_checkpoint(path, payload)
        except NoSpaceError:
            good = path if path.is_file() else self.last_good_checkpoint()
            detail = f"the last good checkpoint {good} is intact" if good else "no checkpoint had been saved yet"
            raise NoSpaceError(path, detail + "; free some space and resume (--resume)") from None

    def write_config(self, config: dict) -> Path:
        return atomic_write(self.config_json, json.dumps(config, indent=2))
