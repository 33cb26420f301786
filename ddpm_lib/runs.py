"""The run folder and its checkpoints: the one module that writes, reads and judges them.

A run folder (``TrainConfig.out_dir``) holds::

    latest.pt     the newest checkpoint (every ``checkpoint_every`` steps, at the end, and on SIGINT/SIGTERM)
    best.pt       the checkpoint with the lowest smoothed loss so far
    final.pt      written when a run finishes (all steps, or early stopping)
    metrics.csv   one row per logged step (ddpm_lib.monitor)
    config.json   the TrainConfig of the run
    samples/      sample grids;  tb/  TensorBoard logs
    .lock         held by the trainer writing into the folder (its pid inside)

What this module guarantees:

- **Atomic writes** (:func:`atomic_write`, the library's only writer of whole files): the bytes go to a
  temporary file in the same folder, are flushed to disk (``fsync``) and renamed over the target with
  ``os.replace``, atomic on POSIX and Windows. Whenever the process dies, the target holds the old
  complete file or the new complete one. A failed write (disk full included) removes its temporary
  file and raises; ``disk full`` is :class:`NoSpaceError`, one line naming the file.
- **One payload schema** (:func:`training_payload`): a versioned dict (``format`` = :data:`FORMAT`)
  of tensors, numbers, strings, lists and dicts, loaded with ``torch.load(weights_only=True)``
  (:func:`load_checkpoint`), which refuses to run pickled code. A *slim* checkpoint
  (:func:`export_slim`) keeps only ``format, step, model_config, train_config, schedule`` and the
  EMA weights in fp16: enough to sample, not to resume.
- **Resume rules** (:data:`RESUME_MAY_CHANGE`, :func:`resume_conflicts`): which TrainConfig fields
  may differ between a run and its continuation.
- **Never lose work** (:class:`RunFolder`): ``resume=True`` with ``latest.pt`` missing but other
  checkpoints present is refused (nothing is overwritten); a second trainer on a locked folder is
  refused with the holder's pid; a lock left by a crashed trainer is recovered; temporary files left
  by a killed save are removed; :func:`stop_on_signals` turns SIGINT/SIGTERM into "save, then stop".
- **Rebuilding** (:func:`load_model_from_checkpoint`): ``(model, schedule, train_config)`` from a full or
  slim checkpoint, refusing non-finite weights.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import random
import signal
import socket
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "ddpm_lib.checkpoint/1"
READABLE_FORMATS = (FORMAT,)
CHECKPOINT_NAMES = ("latest", "best", "final")
LOCK_NAME = ".lock"

#: TrainConfig fields that may differ between a run and its continuation with ``resume=True``: they
#: change how the run is watched, where it runs, or how long it goes on, not what it computes per step
#: (``mixed_precision``, ``compile`` and ``channels_last`` change rounding only). Any other difference
#: is refused (:func:`resume_conflicts`).
RESUME_MAY_CHANGE = frozenset({
    "resume", "overwrite", "steps", "out_dir", "data_root", "device", "num_workers", "progress", "tensorboard",
    "log_every", "sample_every", "checkpoint_every", "num_samples", "sample_steps", "sampler",
    "early_stopping_patience", "early_stopping_min_delta", "mixed_precision", "compile", "channels_last",
})


class RunError(ValueError):
    """A run folder cannot be used as asked (one line naming the file and the fix)."""


class RunLockedError(RunError):
    """Another trainer holds the run folder."""


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for a model with another configuration."""


class NoSpaceError(OSError):
    """The disk filled up while writing a file; the temporary file was removed and the target is untouched."""

    def __init__(self, path: Path, detail: str = ""):
        self.path = Path(path)
        msg = f"no space left on device while writing {self.path}"
        super().__init__(errno.ENOSPC, msg + (f"; {detail}" if detail else ""))

    def __str__(self) -> str:
        return self.strerror


# ---------------------------------------------------------------------------------------------------
# atomic writes


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


def new_file_mode() -> int:
    """The mode ``open(path, "w")`` gives a new file: ``0o666`` less the process' umask (``0o644`` for the
    usual umask 022), so checkpoints are as readable as the run's metrics.csv and TensorBoard files."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _write_all(f, data: bytes) -> None:
    """``f.write(data)``; the one place file bytes are written (tests inject a full disk here)."""
    f.write(data)


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


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (a dict of tensors / plain values) to ``path`` with ``torch.save``.

    The payload is serialised in memory first, so a full disk is reported as :class:`NoSpaceError`
    (not as an error deep inside torch's zip writer) and never leaves half a file.
    """
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write(path, buf.getvalue())


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


# ---------------------------------------------------------------------------------------------------
# loading


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; one-line errors for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f" Checkpoints in {path.parent}: {', '.join(found) if found else 'none'}."
        raise FileNotFoundError(f"checkpoint not found: {path}.{hint}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name and a hint
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "Unpickler error" in ln), lines[0] if lines else "")
        raise ValueError(
            f"could not read checkpoint {path}: {type(e).__name__}: {detail} "
            "Is it a ddpm_lib checkpoint (written by save_checkpoint), and not truncated?"
        ) from None
    if not isinstance(payload, dict):
        raise ValueError(f"{path} holds a {type(payload).__name__}, not a ddpm_lib checkpoint (a dict).")
    return payload


def _check_training_format(payload: dict, source: str) -> None:
    fmt = payload.get("format")
    if fmt is not None and fmt not in READABLE_FORMATS:
        raise ValueError(f"{source} has format {fmt!r}, not a training checkpoint ({', '.join(READABLE_FORMATS)}): "
                         "give a run's final.pt, best.pt or latest.pt.")


# ---------------------------------------------------------------------------------------------------
# RNG state (plain tensors/lists so that weights_only=True can load it)


def get_rng_state(device: torch.device) -> dict:
    """The Python, NumPy, torch (and CUDA on ``device``) RNG states, as plain lists/tensors."""
    py = random.getstate()
    np_state = np.random.get_state()
    state = {
        "python": [py[0], list(py[1]), py[2]],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    """Restore RNG states saved by :func:`get_rng_state`."""
    v, internal, gauss = state["python"]
    random.setstate((v, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"]))
    torch.set_rng_state(state["torch"].cpu())
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)


# ---------------------------------------------------------------------------------------------------
# the payload schema


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


def model_config_dict(model: nn.Module) -> dict | None:
    """``model.config`` as a plain dict (via ``to_dict()`` or dataclasses), or None if it has none."""
    cfg = getattr(model, "config", None)
    if cfg is None:
        return None
    if hasattr(cfg, "to_dict"):
        return {k: _plain(v) for k, v in cfg.to_dict().items()}
    import dataclasses

    if dataclasses.is_dataclass(cfg):
        return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg) if f.init}
    if isinstance(cfg, dict):
        return dict(cfg)
    return None


def _cpu(state: dict) -> dict:
    return {k: v.detach().cpu() for k, v in state.items()}


def training_payload(*, step: int, model: nn.Module, ema, optimizer, lr_scheduler, scaler, device: torch.device,
                     epoch: int, batch_in_epoch: int, progress: dict, train_config: dict, world_size: int = 1) -> dict:
    """The checkpoint of a training run at optimizer step ``step``: everything needed to resume exactly.

    Keys: ``format, step, model, ema, optimizer, lr_scheduler, scaler, rng, data, trainer, train_config,
    model_config, schedule, world_size, torch_version``. ``progress`` holds the trainer's running numbers
    (smoothed loss, best loss, early-stopping state).
    """
    return {
        "format": FORMAT,
        "step": int(step),
        "model": _cpu(model.state_dict()),
        "ema": {**ema.state_dict(), "shadow": _cpu(ema.shadow)},
        "optimizer": optimizer.state_dict(),
        "lr_scheduler": lr_scheduler.state_dict(),
        "scaler": scaler.state_dict(),
        "rng": get_rng_state(device),
        "data": {"epoch": int(epoch), "batch_in_epoch": int(batch_in_epoch), "seed": train_config["seed"]},
        "trainer": dict(progress),
        "train_config": train_config,
        "model_config": model_config_dict(model),
        "schedule": {"name": train_config["schedule"], "num_timesteps": train_config["num_timesteps"]},
        "world_size": int(world_size),
        "torch_version": str(torch.__version__),
    }


RESUME_KEYS = ("model", "ema", "optimizer", "lr_scheduler", "rng", "data", "trainer", "step")


def restore_training_state(payload: dict, *, model: nn.Module, ema, optimizer, lr_scheduler, scaler,
                           device: torch.device, restore_rng: bool = True, source: str = "checkpoint") -> dict:
    """Put a :func:`training_payload` back into the training objects; returns ``{step, epoch, batch_in_epoch,
    progress}``. A slim checkpoint (no optimizer state) is refused: it cannot continue a run."""
    _check_training_format(payload, source)
    missing = [k for k in RESUME_KEYS if k not in payload]
    if missing:
        raise RunError(f"{source} cannot be resumed from: it lacks {', '.join(missing)} (a slim or foreign "
                       "checkpoint holds weights for sampling only); start a new run (overwrite=True).")
    saved_cfg, current = payload.get("model_config"), model_config_dict(model)
    if saved_cfg is not None and current is not None:
        check_config_matches(saved_cfg, current)
    model.load_state_dict(payload["model"])
    ema.load_state_dict(payload["ema"])
    ema.to(device)
    optimizer.load_state_dict(payload["optimizer"])
    lr_scheduler.load_state_dict(payload["lr_scheduler"])
    if payload.get("scaler"):
        scaler.load_state_dict(payload["scaler"])
    if restore_rng:
        set_rng_state(payload["rng"], device)
    return {"step": int(payload["step"]), "epoch": int(payload["data"]["epoch"]),
            "batch_in_epoch": int(payload["data"]["batch_in_epoch"]), "progress": dict(payload["trainer"])}


def resume_conflicts(saved: dict, current: dict) -> list[str]:
    """The TrainConfig fields outside :data:`RESUME_MAY_CHANGE` whose values differ, as ``name (a -> b)``."""
    out = []
    for k in sorted(set(saved) & set(current)):
        if k not in RESUME_MAY_CHANGE and _plain(saved[k]) != _plain(current[k]):
            out.append(f"{k} ({_plain(saved[k])!r} -> {_plain(current[k])!r})")
    return out


# ---------------------------------------------------------------------------------------------------
# model configs and weights


def config_differences(saved: dict, current: dict) -> list[str]:
    """The fields whose values differ, as readable phrases (lists and tuples compare equal)."""
    diffs = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key, "<absent>"), current.get(key, "<absent>")
        if _plain(a) != _plain(b):
            diffs.append(f"{key}: checkpoint has {key}={_plain(a)!r}, this model has {key}={_plain(b)!r}")
    return diffs


def check_config_matches(saved: dict, current: dict, what: str = "model") -> None:
    """Raise :class:`CheckpointMismatchError` naming every field where ``saved`` and ``current`` differ."""
    diffs = config_differences(saved, current)
    if diffs:
        raise CheckpointMismatchError(
            f"the checkpoint's {what} config does not match this {what}; differing fields: "
            + "; ".join(diffs)
            + ". Build the model from the checkpoint instead (ddpm_lib.runs.load_model_from_checkpoint), "
            "or change your config to match."
        )


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or inf (a diverged run, or an fp16 overflow), naming the first bad tensor."""
    for name, v in state.items():
        if torch.is_tensor(v) and v.is_floating_point():
            bad = int((~torch.isfinite(v)).sum())
            if bad:
                raise ValueError(
                    f"{source} holds non-finite weights ({bad} NaN/inf values in {name!r}): it comes from a "
                    "diverged run; use an earlier checkpoint (best.pt, or latest.pt of an earlier step)."
                )


def load_model_weights(model: nn.Module, payload: dict, use_ema: bool = True, source: str = "the checkpoint") -> nn.Module:
    """Put the checkpoint's (EMA or raw) weights into ``model`` (cast to its dtypes), after checking the configs match."""
    saved_cfg, current = payload.get("model_config"), model_config_dict(model)
    if saved_cfg is not None and current is not None:
        check_config_matches(saved_cfg, current)
    if use_ema and payload.get("ema") is not None:
        state = payload["ema"]["shadow"]
    elif "model" in payload:
        state = payload["model"]
    else:
        raise ValueError(f"{source} holds only EMA weights (a slim checkpoint): load it with use_ema=True.")
    own = model.state_dict()
    state = {k: v.to(own[k].dtype) if k in own and torch.is_tensor(v) and v.is_floating_point() else v
             for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointMismatchError(
            f"the checkpoint's weights do not fit this model: {str(e).splitlines()[0]} ... "
            "Build the model from the checkpoint instead (load_model_from_checkpoint)."
        ) from None
    return model


def _resolve(path_or_payload):
    if not isinstance(path_or_payload, dict):
        from ddpm_lib.pretrained import resolve

        path_or_payload = resolve(path_or_payload)  # "pretrained:NAME" -> the package's verified starter weights
    payload, source = ((path_or_payload, "the checkpoint") if isinstance(path_or_payload, dict)
                       else (load_checkpoint(path_or_payload), str(path_or_payload)))
    _check_training_format(payload, source)
    return payload, source


def load_model_from_checkpoint(path: str | os.PathLike | dict, use_ema: bool = True,
                               device: str | torch.device | None = None):
    """Rebuild ``(model, schedule, train_config)`` from a Trainer checkpoint (full or slim), its payload dict,
    or ``"pretrained:NAME"`` (the starter weights of :mod:`ddpm_lib.pretrained`).

    ``use_ema=True`` loads the averaged weights (what you want for sampling; a slim checkpoint has only
    those, stored in fp16 and copied into the fp32 model). Non-finite weights are refused. The model is
    returned in eval mode on ``device`` (default: ``settings.device``).
    """
    from ddpm_lib import settings as settings_mod
    from ddpm_lib.schedules import make_schedule
    from ddpm_lib.train_config import TrainConfig
    from ddpm_lib.unet import UNet, UNetConfig

    payload, source = _resolve(path)
    if payload.get("model_config") is None:
        raise ValueError(f"{source} holds no model_config: it was not written by ddpm_lib's Trainer.")
    try:
        mcfg = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["model_config"].items()})
    except TypeError as e:
        raise ValueError(f"{source}: its model_config does not describe a ddpm_lib UNet ({e}).") from None
    model = UNet(mcfg)
    load_model_weights(model, payload, use_ema=use_ema, source=source)
    check_finite(model.state_dict(), source)
    sched = payload.get("schedule") or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fields of another ddpm_lib version
        cfg = TrainConfig.from_dict(payload.get("train_config") or {}, strict=False)
    schedule = make_schedule(sched.get("name", cfg.schedule), int(sched.get("num_timesteps", cfg.num_timesteps)))
    device = torch.device(device) if device is not None else settings_mod.settings.device
    model = model.to(device).eval()
    return model, schedule.to(device), cfg


SLIM_KEYS = ("format", "step", "model_config", "train_config", "schedule")


def export_slim(payload_or_path: dict | str | os.PathLike, out_path: str | os.PathLike,
                dtype: torch.dtype = torch.float16) -> Path:
    """Write the sampling-only form of a checkpoint atomically: ``format, step, model_config, train_config,
    schedule`` and ``ema`` = ``{"shadow": weights in dtype, "decay", "warmup", "num_updates"}``.

    Refused when the weights are not finite, or overflow ``dtype`` (fp16 holds at most 65504).
    """
    payload, source = _resolve(payload_or_path)
    missing = [k for k in (*SLIM_KEYS, "ema") if payload.get(k) is None]
    if missing:
        raise ValueError(f"{source} lacks {', '.join(missing)}: it is not a ddpm_lib training checkpoint.")
    ema = payload["ema"]
    shadow = {k: v.detach().cpu().to(dtype) if v.is_floating_point() else v.detach().cpu() for k, v in ema["shadow"].items()}
    check_finite(ema["shadow"], source)
    check_finite(shadow, f"{source} in {dtype}")
    slim = {k: payload[k] for k in SLIM_KEYS}
    slim["ema"] = {**{k: v for k, v in ema.items() if k != "shadow"}, "shadow": shadow}
    return save_checkpoint(out_path, slim)


# ---------------------------------------------------------------------------------------------------
# signals: save, then stop


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


# ---------------------------------------------------------------------------------------------------
# the run folder


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
            import fcntl
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


def sha256_of_weights(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (names and bytes, sorted by name): equal weights, equal hash."""
    import hashlib

    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


__all__ = [
    "CHECKPOINT_NAMES", "FORMAT", "RESUME_MAY_CHANGE", "CheckpointMismatchError", "NoSpaceError", "RunError",
    "RunFolder", "RunLockedError", "StopRequest", "atomic_write", "check_config_matches", "check_finite",
    "config_differences", "export_slim", "get_rng_state", "load_checkpoint", "load_model_from_checkpoint",
    "load_model_weights", "model_config_dict", "remove_stale_temp_files", "restore_training_state",
    "resume_conflicts", "save_checkpoint", "set_rng_state", "sha256_of_weights", "stop_on_signals",
    "training_payload",
]
