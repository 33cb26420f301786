"""Files the library writes: atomically, with one error for a full disk, and one SHA-256.

- :func:`atomic_write` is the library's only writer of whole files: the bytes go to a temporary file in
  the same folder, are flushed to disk (``fsync``) and renamed over the target with ``os.replace``,
  atomic on POSIX and Windows. Whenever the process dies, the target holds the old complete file or the
  new complete one. A failed write (disk full included) removes its temporary file and raises; ``disk
  full`` is :class:`NoSpaceError`, one line naming the file.
- :func:`remove_stale_temp_files` removes the temporary files a killed write left behind.
- :func:`sha256` is the digest of a file (the starter weights' and the FID weights' checks).
- **Never destroy what a command did not write** (issue 21): :func:`check_output_file` and
  :func:`check_output_dir` are the one no-clobber rule of every command with an output path. A command
  writes only to a path it creates or that holds its own kind of output, and refuses anything else (a
  checkpoint, a notebook, a folder that is not a run) with :class:`ClobberError`: one line naming the path,
  what is there, and the flag that allows it (:data:`OVERWRITE_FLAG`).

A bottom-layer utility: it imports nothing from ddpm_lib.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
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


# ---------------------------------------------------------------------------------------------------
# never destroy what a command did not write (issue 21)

#: the flag every command that writes a file or folder takes to replace what it did not write
OVERWRITE_FLAG = "--overwrite"

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class ClobberError(ValueError):
    """An output path holds something this command did not write (or cannot be written at all): refused,
    nothing was changed. The message is one line naming the path and the flag that allows it."""


def _head(path: Path, n: int = 64) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError:
        return b""


def is_png(path: str | os.PathLike) -> bool:
    """True when the file at ``path`` starts with the PNG signature."""
    return _head(Path(path), len(PNG_MAGIC)) == PNG_MAGIC


def read_json_object(path: str | os.PathLike, limit: int = 50 << 20) -> dict | None:
    """The JSON object in the file at ``path``, or None (not a regular file, too large, not JSON, not an object)."""
    path = Path(path)
    try:
        if not path.is_file() or path.stat().st_size > limit:
            return None
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def describe(path: str | os.PathLike) -> str:
    """What the thing at ``path`` looks like, for a refusal: "a folder", "a PyTorch checkpoint", "a Jupyter notebook"..."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        return "a broken symbolic link"
    if path.is_dir():
        return "a folder"
    if not path.is_file():
        return "not a regular file"
    head = _head(path)
    if head.startswith(PNG_MAGIC):
        return "a PNG image"
    if head.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(path) as z:
                names = z.namelist()
        except (OSError, zipfile.BadZipFile):
            return "a zip archive"
        if any(n.endswith("/data.pkl") or n == "data.pkl" for n in names):
            return "a PyTorch checkpoint"
        return "a .npz array file" if names and all(n.endswith(".npy") for n in names) else "a zip archive"
    if head.lstrip().startswith(b"{"):
        obj = read_json_object(path)
        if obj is not None and isinstance(obj.get("cells"), list):
            return "a Jupyter notebook"
        return "a JSON file" if obj is not None else "a text file"
    return f"a file of {path.stat().st_size} bytes"


def _empty(option: str, path) -> None:
    if path is None or not str(path).strip():
        raise ClobberError(f"{option}: the path is empty; give a file or folder name.")


def check_output_file(path: str | os.PathLike, *, option: str, kind: str, is_own: Callable[[Path], bool],
                      overwrite: bool = False, flag: str = OVERWRITE_FLAG) -> Path:
    """The no-clobber rule for a file a command is about to write; returns ``Path(path)`` or raises
    :class:`ClobberError` (one line: the option, the path, what is there, and ``flag``).

    A command writes only to a path that does not exist yet or that holds its own kind of output
    (``is_own(path)``, e.g. a PNG for ``sample --out``); anything else (a checkpoint, a notebook, a
    report of another command) is replaced only with ``flag`` (``overwrite=True``). A folder, or a
    path that is not a regular file (a device, a pipe), is refused even then. Call it before any work.
    """
    _empty(option, path)
    p = Path(path)
    if p.is_dir():
        raise ClobberError(f"{option} {p} is a folder; give a file path, e.g. {p / 'name'}.")
    if p.is_symlink() or p.exists():
        if not p.is_file():
            raise ClobberError(f"{option} {p} is {describe(p)}; give the path of a regular file.")
        if not overwrite and not is_own(p):
            raise ClobberError(f"{option} {p} exists and is {describe(p)}, not {kind} written by this command: "
                               f"nothing was changed; choose another path, or pass {flag} to replace it.")
    return p


def check_output_dir(path: str | os.PathLike, *, option: str, kind: str, is_own: Callable[[Path], bool],
                     overwrite: bool = False, flag: str = OVERWRITE_FLAG) -> Path:
    """The no-clobber rule for a folder a command writes into; returns ``Path(path)`` or raises
    :class:`ClobberError`. Allowed: a new folder, an empty one, or one that holds the command's own kind
    of output (``is_own(folder)``, e.g. a run for ``train``); a folder of other files only with ``flag``.
    A path that is a file is refused even then."""
    _empty(option, path)
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise ClobberError(f"{option} {p} is {describe(p)}, not a folder; give a folder path.")
    if p.is_dir() and not overwrite and any(p.iterdir()) and not is_own(p):
        raise ClobberError(f"{option} {p} is a folder that holds other files, not {kind}: nothing was changed; choose "
                           f"a new or empty folder, or pass {flag} to write into it anyway.")
    return p
