"""Which model a notebook samples from: a checkpoint you named, your own run, or the starter weights.

Notebooks 05-07 show real images in every mode, fast included. :func:`choose_model` applies one rule,
in this order, and says in one line which model it picked and why:

1. **a checkpoint you named** (``checkpoint=``: a file path, or ``"pretrained:NAME"``; notebook 06's
   ``CHECKPOINT``). With ``remember=True`` (notebook 06) the choice is written to
   ``<run dir>/CHECKPOINT.txt`` so that a later notebook (07) calling without ``checkpoint`` uses the same
   one; ``remember=True`` with no checkpoint clears it.
2. **your own run**: ``<run dir>/final.pt`` (the run folder of :meth:`ddpm_lib.settings.Settings.run_dir`)
   if it exists and finished at least :data:`MIN_STEPS` optimizer steps. Fast-mode runs train for 60
   steps: they test the code and are not models anyone should look at.
3. **the starter weights** shipped with the package (``pretrained:NAME``, :mod:`ddpm_lib.pretrained`). If they cannot be
   loaded (a checkout or install without the weights files), your run is used even if it is a toy, and
   the printed line says so.

Each checkpoint is read once (:func:`ddpm_lib.loading.load_model` returns its step with the model).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ddpm_lib import pretrained
from ddpm_lib.files import atomic_write
from ddpm_lib.loading import load_model
from ddpm_lib.settings import on_colab, settings

MIN_STEPS = 1000  # fewer optimizer steps than this: a fast-mode toy (60 steps) or a demo, not a model to look at
RECORD_NAME = "CHECKPOINT.txt"


@dataclass
class ChosenModel:
    """The model a notebook uses, with its schedule, training config and where it came from."""

    model: torch.nn.Module
    schedule: object
    config: object
    kind: str  # "checkpoint", "own run" or "starter"
    source: str  # one line for the student: which model, and why
    path: Path | None = None  # the checkpoint file (None for the starter weights)

    def __iter__(self):  # model, schedule, config = choose_model(...)
        return iter((self.model, self.schedule, self.config))


def _needs_classes(model, conditional: bool | None, what: str) -> str | None:
    """Why ``model`` does not fit (None if it does)."""
    if conditional and getattr(model, "null_class", None) is None:
        return f"{what} is not class-conditional"
    return None


def _named_checkpoint(record: Path, checkpoint, remember: bool) -> str:
    """The checkpoint the student named (``""`` for none): ``checkpoint``, else the one notebook 06 recorded.
    With ``remember``, record it (or clear the record)."""
    named = str(checkpoint).strip() if checkpoint else ""
    if remember:
        if named or record.is_file():
            keep = named if named.startswith(pretrained.PREFIX) or not named else str(Path(named).expanduser().resolve())
            atomic_write(record, keep)
    elif not named and record.is_file():
        named = record.read_text(encoding="utf-8").strip()
        if named and not named.startswith(pretrained.PREFIX) and not Path(named).is_file():
            raise FileNotFoundError(
                f"{record} names {named}, which no longer exists: fix CHECKPOINT in notebook 06 (or delete {record})."
            )
    return named


def _load_named(named: str, conditional: bool | None, device: torch.device) -> ChosenModel:
    """The checkpoint (or ``pretrained:NAME``) the student named; refused when it cannot serve the notebook."""
    if named.startswith(pretrained.PREFIX):  # "pretrained:cifar10": starter weights, asked for by name
        model, schedule, cfg, _ = load_model(named, device=device)
        why_not = _needs_classes(model, conditional, f"the starter model {named}")
        if why_not:
            raise ValueError(f"{why_not}: this notebook needs a class-conditional model.")
        return ChosenModel(model, schedule, cfg, "starter", f"model: the checkpoint you named, {named} (starter weights)")
    path = Path(named).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"CHECKPOINT={named!r}: no such file. Give the path of a final.pt, or \"\".")
    model, schedule, cfg, step = load_model(path, device=device)
    why_not = _needs_classes(model, conditional, f"the checkpoint {path}")
    if why_not:
        raise ValueError(f"{why_not}: this notebook needs a class-conditional model (train with --class-conditional).")
    return ChosenModel(model, schedule, cfg, "checkpoint", f"model: the checkpoint you named, {path} ({step:,} training steps)", path)


def _own_run_or_starter(run_dir: Path, starter: str, conditional: bool | None, device: torch.device,
                        min_steps: int) -> ChosenModel:
    """Your run's ``final.pt`` when it is a real model that fits, else the starter weights (else your toy run)."""
    own = run_dir / "final.pt"
    reason, toy = f"no run of yours in {run_dir}", None
    if on_colab() and not own.is_file():  # each Colab notebook gets a fresh machine: earlier runs are elsewhere
        reason += (": on Colab every notebook runs on a fresh machine, so a run an earlier notebook trained is "
                   "not here unless both set KEEP_ON_DRIVE = True in their first code cell (runs on Google Drive)")
    if own.is_file():
        loaded = load_model(own, device=device)
        why_not = _needs_classes(loaded.model, conditional, f"your run {own}")
        if loaded.step >= min_steps and why_not is None:
            return ChosenModel(*loaded[:3], "own run", f"model: your own run, {own} ({loaded.step:,} training steps)", own)
        if loaded.step < min_steps:
            reason = f"your run {own} has {loaded.step:,} training steps, fewer than {min_steps:,}"
        else:
            reason = why_not
        toy = loaded if why_not is None else None
    starter_spec = pretrained.PREFIX + starter
    try:
        model, schedule, cfg, _ = load_model(starter_spec, device=device)
    except pretrained.PretrainedError as err:  # a broken install or a checkout without the weights files
        if toy is not None:
            return ChosenModel(*toy[:3], "own run", f"model: your run {own}, a toy, because the starter "
                               f"weights are not available ({err})", own)
        raise
    return ChosenModel(model, schedule, cfg, "starter", f"model: the starter weights {starter_spec} ({reason})")


def choose_model(
    run_name: str,
    starter: str,
    checkpoint: str | os.PathLike | None = None,
    remember: bool = False,
    conditional: bool | None = None,
    device: str | torch.device | None = None,
    min_steps: int = MIN_STEPS,
) -> ChosenModel:
    """Pick and load the model a notebook samples from (see the module docstring for the rule).

    Args:
        run_name: the training run's name, e.g. ``"fashion_mnist"`` (notebook 04) or ``"cifar10-cond"`` (06).
        starter: the starter weights to fall back on, ``"fashion_mnist"`` or ``"cifar10"``.
        checkpoint: a checkpoint file (or ``"pretrained:NAME"``) to use instead (``""``/None: none named).
        remember: record ``checkpoint`` (or its absence) in the run folder for later notebooks.
        conditional: True if the notebook needs a class-conditional model (guidance).
        device: where to put the model (default ``settings.device``).
        min_steps: the fewest optimizer steps for your own run to count as a model.
    Returns:
        a :class:`ChosenModel` (unpacks as ``model, schedule, config``); print its ``source``.
    """
    device = torch.device(device) if device is not None else settings.device
    run_dir = settings.run_dir(run_name)
    named = _named_checkpoint(run_dir / RECORD_NAME, checkpoint, remember)
    if named:
        return _load_named(named, conditional, device)
    return _own_run_or_starter(run_dir, starter, conditional, device, min_steps)
