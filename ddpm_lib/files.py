"""Files the library writes: atomically, with one error for a full disk, and one SHA-256.

- :func:`atomic_write` is the library's only writer of whole files: the bytes go to a temporary file in
  the same folder, are flushed to disk (``fsync``) and renamed over the target with ``os.replace``,
  atomic on POSIX and Windows. Whenever the process dies, the target holds the old complete file or the
  new complete one. A failed write (disk full included) removes its temporary file and raises; ``disk
  full`` is :class:`NoSpaceError`, one line naming the file.
- :func:`remove_stale_temp_files` removes the temporary files a killed write left behind.
- :func:`sha256` is the digest of a file (the starter weights' and the FID weights' checks).

A bottom-layer utility: it imports nothing from ddpm_lib.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path


class NoSpaceError(OSError):
    """The disk filled up while writing a file; the temporary file was removed and the target is untouched."""

    def __init__(self, path: Path, detail: str = ""):
        self.path = Path(path)
        msg = f"no space left on device while writing {self.path}"
        super().__init__(errno.ENOSPC, msg + (f"; {detail}" if detail else ""))

    def __str__(self) -> str:
        return self.strerror


def _fsync_dir(folder: Path) -> None:
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError:
            pass


def _write_all(f, data: bytes) -> None:
    """``f.write(data)``; the one place file bytes are written (tests inject a full disk here)."""
    f.write(data)


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the process' umask (``0o644`` for the
    usual umask 022), so checkpoints are as readable as the run's metrics.csv and TensorBoard files."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` (bytes, or text as UTF-8) to ``path`` atomically; see the module docstring.

    Raises :class:`NoSpaceError` when the disk is full (``ENOSPC``/``EDQUOT``); no temporary file is left.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, new_file_mode())  # mkstemp makes 0600; give the mode open() would (class servers share runs)
    try:
        with open(tmp, "wb") as f:
            _write_all(f, data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
            raise NoSpaceError(path) from None
        raise
    _fsync_dir(path.parent)
    return path


def remove_stale_temp_files(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files (``.<name>.*.tmp``) that saves killed mid-write left in ``folder``.

    Only call it while no other process writes there (the :class:`RunFolder` lock ensures that).
    """
    folder = Path(folder)
    removed = []
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            if p.is_file():
                with contextlib.suppress(OSError):
                    p.unlink()
                    removed.append(p)
    return removed


def sha256(path: str | os.PathLike) -> str:
    """The SHA-256 hex digest of the file at ``path``, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
