"""Checkpoints: the payload schema, saving and loading, RNG state, resume rules and the slim export.

- **One payload schema** (:func:`training_payload`): a versioned dict (``format`` = :data:`FORMAT`)
  of tensors, numbers, strings, lists and dicts, loaded with ``torch.load(weights_only=True)``
  (:func:`load_checkpoint`), which refuses to run pickled code. Saves are atomic
  (:func:`ddpm_lib.files.atomic_write`). A *slim* checkpoint (:func:`export_slim`) keeps only ``format,
  step, model_config, train_config, schedule`` and the EMA weights in fp16: enough to sample, not to resume.
- **Resume rules** (:data:`RESUME_MAY_CHANGE`, :func:`resume_conflicts`): which TrainConfig fields
  may differ between a run and its continuation; :func:`restore_training_state` puts a payload back.
- **Integrity**: a run records the SHA-256 of every checkpoint it saves in ``checksums.json``
  (:func:`record_digest`); :func:`load_checkpoint` refuses a file in that folder whose digest is not
  recorded (changed or damaged after the save). Any of the run's recorded digests is accepted, so copying
  ``final.pt`` over ``latest.pt`` (the advice for a lost ``latest.pt``) still works.
- :func:`read_payload` accepts a path, ``"pretrained:NAME"`` or a payload dict; rebuilding a model from it
  is :func:`ddpm_lib.loading.load_model`. The run folder is :mod:`ddpm_lib.training.runs`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ddpm_lib.files import atomic_write, read_json_object
from ddpm_lib.pretrained import resolve as resolve_pretrained

FORMAT = "ddpm_lib.checkpoint/1"  # a format tag stored in every checkpoint, not a module path: never renamed
READABLE_FORMATS = (FORMAT,)

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
    """A run folder or checkpoint cannot be used as asked (one line naming the file and the fix)."""


class CheckpointMismatchError(ValueError):
    """The checkpoint was written for a model with another configuration."""


def checkpoint_bytes(payload: dict[str, Any]) -> bytes:
    """``payload`` serialised with ``torch.save``, in memory."""
    buf = io.BytesIO()
    torch.save(payload, buf)
    return buf.getvalue()


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (a dict of tensors / plain values) to ``path`` with ``torch.save``.

    The payload is serialised in memory first, so a full disk is reported as :class:`NoSpaceError`
    (not as an error deep inside torch's zip writer) and never leaves half a file.
    """
    return atomic_write(path, checkpoint_bytes(payload))


# ---------------------------------------------------------------------------------------------------
# integrity: the SHA-256 of every checkpoint a run saved, recorded in the run folder

#: the run folder's record of its checkpoints' SHA-256 digests: ``{"latest.pt": ["<hex>", ...], ...}``
CHECKSUMS_NAME = "checksums.json"


def recorded_digests(folder: Path) -> set[str] | None:
    """Every SHA-256 recorded in ``folder/checksums.json`` (any checkpoint name), or None when there is no record."""
    record = read_json_object(folder / CHECKSUMS_NAME)
    if record is None:
        return None
    return {d for v in record.values() if isinstance(v, list) for d in v if isinstance(d, str)}


def record_digest(folder: Path, name: str, digest: str, keep_previous: bool) -> None:
    """Record ``digest`` for checkpoint ``name`` in ``folder/checksums.json`` (atomically). A save records the new
    digest beside the old one before the file is replaced (``keep_previous=True``) and alone after, so that
    whenever a save is killed the file on disk matches a recorded digest."""
    record = read_json_object(folder / CHECKSUMS_NAME) or {}
    old = [d for d in record.get(name, []) if isinstance(d, str)] if keep_previous else []
    record[name] = sorted({*old, digest})
    atomic_write(folder / CHECKSUMS_NAME, json.dumps(record, indent=1, sort_keys=True))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device | None = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``; one-line errors for a missing or broken file."""
    path = Path(path)
    if not path.is_file():
        hint = ""
        if path.parent.is_dir():
            found = sorted(p.name for p in path.parent.glob("*.pt"))
            hint = f" Checkpoints in {path.parent}: {', '.join(found) if found else 'none'}."
        raise FileNotFoundError(f"checkpoint not found: {path}.{hint}")
    data = path.read_bytes()
    recorded = recorded_digests(path.parent)
    if recorded is not None and hashlib.sha256(data).hexdigest() not in recorded:
        raise ValueError(
            f"checkpoint {path} does not match any SHA-256 recorded in {path.parent / CHECKSUMS_NAME} when the run "
            "saved its checkpoints: it was changed or damaged since. Use another checkpoint of the run, or, if you "
            f"changed it on purpose, move it out of {path.parent} (outside a run folder it is not checked).")
    try:
        payload = torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
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


def check_resumable(payload: dict, source: str = "checkpoint") -> None:
    """Refuse a payload that cannot continue a run: another format, or a slim checkpoint (no optimizer state)."""
    _check_training_format(payload, source)
    missing = [k for k in RESUME_KEYS if k not in payload]
    if missing:
        raise RunError(f"{source} cannot be resumed from: it lacks {', '.join(missing)} (a slim or foreign "
                       "checkpoint holds weights for sampling only); start a new run in another out_dir (--out), "
                       "or with overwrite=True (--overwrite), which deletes it.")


def restore_training_state(payload: dict, *, model: nn.Module, ema, optimizer, lr_scheduler, scaler,
                           device: torch.device, restore_rng: bool = True, source: str = "checkpoint") -> dict:
    """Put a :func:`training_payload` back into the training objects; returns ``{step, epoch, batch_in_epoch,
    progress}``. A slim checkpoint (no optimizer state) is refused: it cannot continue a run."""
    check_resumable(payload, source)
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
            + ". Build the model from the checkpoint instead (ddpm_lib.loading.load_model), "
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
            "Build the model from the checkpoint instead (ddpm_lib.loading.load_model)."
        ) from None
    return model


def read_payload(path_or_payload) -> tuple[dict, str]:
    """``(payload, source)`` of a training checkpoint given as a path, ``"pretrained:NAME"`` or a payload dict;
    ``source`` names it in error messages. Refuses another format."""
    if not isinstance(path_or_payload, dict):
        path_or_payload = resolve_pretrained(path_or_payload)  # "pretrained:NAME" -> the package's verified starter weights
    payload, source = ((path_or_payload, "the checkpoint") if isinstance(path_or_payload, dict)
                       else (load_checkpoint(path_or_payload), str(path_or_payload)))
    _check_training_format(payload, source)
    return payload, source


SLIM_KEYS = ("format", "step", "model_config", "train_config", "schedule")


def export_slim(payload_or_path: dict | str | os.PathLike, out_path: str | os.PathLike,
                dtype: torch.dtype = torch.float16) -> Path:
    """Write the sampling-only form of a checkpoint atomically: ``format, step, model_config, train_config,
    schedule`` and ``ema`` = ``{"shadow": weights in dtype, "decay", "warmup", "num_updates"}``.

    Refused when the weights are not finite, or overflow ``dtype`` (fp16 holds at most 65504).
    """
    payload, source = read_payload(payload_or_path)
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


def sha256_of_weights(state: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a state dict's tensors (names and bytes, sorted by name): equal weights, equal hash."""
    h = hashlib.sha256()
    for k, v in sorted(state.items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()
