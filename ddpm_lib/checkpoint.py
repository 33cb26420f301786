"""Checkpoints that survive a crash, load safely, and say clearly when they do not fit a model.

- :func:`save_checkpoint` writes to a temporary file in the same folder, flushes it to disk
  (``fsync``) and renames it over the target with ``os.replace``, which is atomic on POSIX and
  Windows: whenever the process is killed, ``path`` holds either the previous complete checkpoint
  or the new complete one, never half a file.
- :func:`load_checkpoint` uses ``torch.load(..., weights_only=True)``, which refuses to run
  arbitrary pickled code; so a checkpoint holds only tensors, numbers, strings, lists, tuples and
  dicts (configs are stored as plain dicts, RNG states as tensors or lists).
- :func:`load_model_from_checkpoint` rebuilds the UNet, the noise schedule and the training config
  from a file written by :class:`ddpm_lib.trainer.Trainer`.
- :func:`check_config_matches` compares the model config saved in a checkpoint with the one of the
  model you are loading it into and names every differing field.
- :func:`get_rng_state` / :func:`set_rng_state` save and restore every random number generator
  (Python, NumPy, torch, CUDA) as plain values, so that a resumed run draws the same numbers.

A Trainer checkpoint is a dict with the keys ``format``, ``step``, ``model``, ``ema``, ``optimizer``,
``lr_scheduler``, ``scaler``, ``rng``, ``train_config``, ``model_config``, ``schedule`` and
``metrics`` (see ``Trainer.state_payload``).
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

FORMAT = "ddpm_lib.checkpoint/1"


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for a model with another configuration."""


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (a dict of tensors / plain values) to ``path`` with ``torch.save``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        try:
            dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; clear errors for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f" Checkpoints in {path.parent}: {', '.join(found) if found else 'none'}."
        raise FileNotFoundError(f"checkpoint not found: {path}.{hint}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file name and a hint
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        detail = next((ln for ln in lines if "Unpickler error" in ln), lines[0] if lines else "")
        raise ValueError(
            f"could not read checkpoint {path}: {type(e).__name__}: {detail} "
            "Is it a ddpm_lib checkpoint (written by save_checkpoint), and not truncated?"
        ) from e


SLIM_KEYS = ("format", "step", "model_config", "train_config", "schedule")


def export_slim(source: str | os.PathLike | dict, out: str | os.PathLike, dtype: torch.dtype = torch.float16) -> Path:
    """Write the sampling-only part of a Trainer checkpoint to ``out`` (atomically): its configs, step and
    EMA weights cast to ``dtype``, without the raw weights, optimizer or RNG state. The result loads with
    :func:`load_model_from_checkpoint` like the full file (the weights are cast back to the model's dtype);
    :mod:`ddpm_lib.pretrained` ships such files."""
    payload = source if isinstance(source, dict) else load_checkpoint(source)
    if payload.get("ema") is None or payload.get("model_config") is None:
        raise ValueError(f"{source if not isinstance(source, dict) else 'the payload'} has no EMA weights or "
                         "model_config: export_slim needs a checkpoint written by ddpm_lib's Trainer.")
    slim = {k: payload[k] for k in SLIM_KEYS if k in payload}
    shadow = payload["ema"]["shadow"]
    slim["ema"] = {"shadow": {k: (v.to(dtype) if v.is_floating_point() else v) for k, v in shadow.items()}}
    return save_checkpoint(out, slim)


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


def _plain(v):
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    return v


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
            + ". Build the model from the checkpoint instead (ddpm_lib.checkpoint.load_model_from_checkpoint), "
            "or change your config to match."
        )


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


def load_model_weights(model: nn.Module, payload: dict, use_ema: bool = True) -> nn.Module:
    """Put the checkpoint's (EMA or raw) weights into ``model``, after checking the configs match."""
    saved_cfg = payload.get("model_config")
    current = model_config_dict(model)
    if saved_cfg is not None and current is not None:
        check_config_matches(saved_cfg, current)
    if use_ema and payload.get("ema") is not None:
        state = payload["ema"]["shadow"]
    else:
        state = payload["model"]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointMismatchError(
            f"the checkpoint's weights do not fit this model: {str(e).splitlines()[0]} ... "
            "Build the model from the checkpoint instead (load_model_from_checkpoint)."
        ) from None
    return model


def load_model_from_checkpoint(path: str | os.PathLike, use_ema: bool = True, device: str | torch.device | None = None):
    """Rebuild ``(model, schedule, train_config)`` from a Trainer checkpoint (``final.pt``, ``best.pt``, ...),
    or from ``"pretrained:NAME"`` (the starter weights of :mod:`ddpm_lib.pretrained`).

    ``use_ema=True`` loads the averaged weights (what you want for sampling); the model is returned
    in eval mode on ``device`` (default: ``settings.device``).
    """
    from ddpm_lib.pretrained import resolve
    from ddpm_lib.schedules import make_schedule
    from ddpm_lib.settings import settings
    from ddpm_lib.train_config import TrainConfig
    from ddpm_lib.unet import UNet, UNetConfig

    path = resolve(path)  # "pretrained:NAME" -> the package's verified starter weights
    payload = load_checkpoint(path)
    if payload.get("model_config") is None:
        raise ValueError(f"{path} holds no model_config: it was not written by ddpm_lib's Trainer.")
    model = UNet(UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["model_config"].items()}))
    load_model_weights(model, payload, use_ema=use_ema)
    sched = payload.get("schedule") or {}
    cfg = TrainConfig.from_dict(payload.get("train_config") or {}, strict=False)
    schedule = make_schedule(sched.get("name", cfg.schedule), int(sched.get("num_timesteps", cfg.num_timesteps)))
    device = torch.device(device) if device is not None else settings.device
    model = model.to(device).eval()
    return model, schedule.to(device), cfg
