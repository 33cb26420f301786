"""The run folder: its layout, its lock, the start/resume policy, and signals that save before stopping.

A run folder (``TrainConfig.out_dir``) holds::

    latest.pt     the newest checkpoint (every ``checkpoint_every`` steps, at the end, and on SIGINT/SIGTERM)
    best.pt       the checkpoint with the lowest smoothed loss so far
    final.pt      written when a run finishes (all steps, or early stopping)
    metrics.csv   one row per logged step (ddpm_lib.training.monitor)
    config.json   the TrainConfig of the run
    checksums.json  the SHA-256 of every checkpoint saved (checked when one is loaded)
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
import dataclasses
import hashlib
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

from ddpm_lib.files import (
    NoSpaceError,
    atomic_write,
    check_output_dir,
    read_json_object,
    remove_stale_temp_files,
)
from ddpm_lib.training.checkpoint import (
    CHECKSUMS_NAME,
    RunError,
    checkpoint_bytes,
    load_checkpoint,
    record_digest,
    resume_conflicts,
)
from ddpm_lib.training.config import TrainConfig

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

    def holds_a_run(self) -> bool:
        """True when the folder holds a training run: a checkpoint, the lock, or a ``config.json`` of TrainConfig fields."""
        if self.existing_checkpoints() or self.lock_path.exists():
            return True
        cfg = read_json_object(self.config_json)
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        return cfg is not None and {"dataset", "preset", "steps"} <= set(cfg) <= names

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
          run's checkpoints, ``metrics.csv`` and ``checksums.json``).
        - a folder that holds other files and no run (:meth:`holds_a_run`), or a file: refused before
          anything is written there, unless ``overwrite`` (:func:`ddpm_lib.files.check_output_dir`).
        Temporary files of interrupted saves are removed.
        """
        check_output_dir(self.path, option="out_dir", kind="a training run", is_own=lambda _: self.holds_a_run(),
                         overwrite=overwrite, flag="overwrite=True (--overwrite)")
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
        for p in (*[self.checkpoint(n) for n in CHECKPOINT_NAMES], self.metrics, self.path / CHECKSUMS_NAME):
            p.unlink(missing_ok=True)
        return None

    def load_for_resume(self, path: Path) -> dict:
        """The checkpoint ``path`` to resume from; when it cannot be read (truncated, say), the error names the run's
        other checkpoints that can, and how to continue from one."""
        try:
            return load_checkpoint(path)
        except ValueError as e:
            readable = []
            for other in (p for p in self.existing_checkpoints() if p != path):
                with contextlib.suppress(ValueError, OSError):
                    step = load_checkpoint(other).get("step")
                    readable.append(f"{other.name} (step {step})")
            if not readable:
                raise
            first = readable[0].split(" ")[0]
            raise RunError(f"{e} The run's {', '.join(readable)} can be read: to continue from {first}, copy it over "
                           f"{path.name} (cp {self.path / first} {path}) and resume again.") from None

    def check_resume_config(self, saved: dict, current: dict) -> None:
        """Refuse a continuation whose TrainConfig differs outside :data:`RESUME_MAY_CHANGE`."""
        conflicts = resume_conflicts(saved, current)
        if conflicts:
            use = (f"(--config {self.config_json} --resume)" if self.config_json.is_file()
                   else "(give the values shown first, with --resume)")
            raise RunError(
                f"cannot resume {self.latest} with changed settings: {', '.join(conflicts)}. Use the run's values "
                f"{use}, or start a new run (another out_dir, or overwrite=True)."
            )

    def check_resume_steps(self, step: int, steps: int) -> None:
        """Refuse to continue a run saved at ``step`` with fewer total ``steps`` (it would do nothing, then
        write final.pt at the old step with a changed learning-rate schedule)."""
        if steps < step:
            raise RunError(f"cannot resume {self.latest} with steps={steps} (--steps {steps}): it is already at step "
                           f"{step}; steps counts the whole run, so give more than {step} to train further.")

    # saving
    def save(self, name: str, payload: dict) -> Path:
        """Write ``<name>.pt`` atomically. Disk full: :class:`NoSpaceError` naming the last good checkpoint."""
        path = self.checkpoint(name)
        try:
            data = checkpoint_bytes(payload)
            digest = hashlib.sha256(data).hexdigest()
            record_digest(self.path, path.name, digest, keep_previous=True)  # checked by load_checkpoint
            atomic_write(path, data)
            record_digest(self.path, path.name, digest, keep_previous=False)
            return path
        except NoSpaceError:
            good = path if path.is_file() else self.last_good_checkpoint()
            detail = f"the last good checkpoint {good} is intact" if good else "no checkpoint had been saved yet"
            raise NoSpaceError(path, detail + "; free some space and resume (--resume)") from None

    def write_config(self, config: dict) -> Path:
        return atomic_write(self.config_json, json.dumps(config, indent=2))
