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
3. **the starter weights** shipped with the package, :func:`ddpm_lib.pretrained.load`. If they cannot be
   loaded (a checkout or install without the weights files), your run is used even if it is a toy, and
   the printed line says so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

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


def _steps_of(path: Path) -> int:
    from ddpm_lib.checkpoint import load_checkpoint

    return int(load_checkpoint(path).get("step", 0))


def _write_record(record: Path, text: str) -> None:
    from ddpm_lib.runs import atomic_write

    atomic_write(record, text)


def _needs_classes_file(path: Path, conditional: bool | None) -> str | None:
    """Why the checkpoint at ``path`` does not fit a notebook that needs ``conditional`` (None if it does)."""
    from ddpm_lib.checkpoint import load_checkpoint

    classes = (load_checkpoint(path).get("model_config") or {}).get("num_classes")
    return "not class-conditional" if conditional and not classes else None


def _needs_classes(model, conditional: bool | None, what: str) -> str | None:
    """Why ``model`` does not fit (None if it does)."""
    if conditional and getattr(model, "null_class", None) is None:
        return f"{what} is not class-conditional"
    return None


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
    from ddpm_lib.checkpoint import load_model_from_checkpoint
    from ddpm_lib.settings import on_colab, settings

    device = torch.device(device) if device is not None else settings.device
    run_dir = settings.run_dir(run_name)
    record = run_dir / RECORD_NAME
    named = str(checkpoint).strip() if checkpoint else ""
    from ddpm_lib import pretrained

    if remember:
        if named or record.is_file():
            keep = named if named.startswith(pretrained.PREFIX) or not named else str(Path(named).expanduser().resolve())
            _write_record(record, keep)
    elif not named and record.is_file():
        named = record.read_text(encoding="utf-8").strip()
        if named and not named.startswith(pretrained.PREFIX) and not Path(named).is_file():
            raise FileNotFoundError(
                f"{record} names {named}, which no longer exists: fix CHECKPOINT in notebook 06 (or delete {record})."
            )

    if named.startswith(pretrained.PREFIX):  # "pretrained:cifar10": starter weights, asked for by name
        model, schedule, cfg = pretrained.load(named[len(pretrained.PREFIX):], device=device)
        why_not = _needs_classes(model, conditional, f"the starter model {named}")
        if why_not:
            raise ValueError(f"{why_not}: this notebook needs a class-conditional model.")
        return ChosenModel(model, schedule, cfg, "starter", f"model: the checkpoint you named, {named} (starter weights)")
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"CHECKPOINT={named!r}: no such file. Give the path of a final.pt, or \"\".")
        model, schedule, cfg = load_model_from_checkpoint(path, device=device)
        why_not = _needs_classes(model, conditional, f"the checkpoint {path}")
        if why_not:
            raise ValueError(f"{why_not}: this notebook needs a class-conditional model (train with --class-conditional).")
        return ChosenModel(model, schedule, cfg, "checkpoint",
                           f"model: the checkpoint you named, {path} ({_steps_of(path):,} training steps)", path)

    own = run_dir / "final.pt"
    reason = f"no run of yours in {run_dir}"
    if on_colab() and not own.is_file():  # each Colab notebook gets a fresh machine: earlier runs are elsewhere
        reason += (": on Colab every notebook runs on a fresh machine, so a run an earlier notebook trained is "
                   "not here unless both set KEEP_ON_DRIVE = True in their first code cell (runs on Google Drive)")
    if own.is_file():
        steps = _steps_of(own)
        if steps >= min_steps:
            model, schedule, cfg = load_model_from_checkpoint(own, device=device)
            why_not = _needs_classes(model, conditional, f"your run {own}")
            if why_not is None:
                return ChosenModel(model, schedule, cfg, "own run", f"model: your own run, {own} ({steps:,} training steps)", own)
            reason = why_not
        else:
            reason = f"your run {own} has {steps:,} training steps, fewer than {min_steps:,}"

    try:
        model, schedule, cfg = pretrained.load(starter, device=device)
    except pretrained.PretrainedError as err:  # a broken install or a checkout without the weights files
        if own.is_file() and _needs_classes_file(own, conditional) is None:
            model, schedule, cfg = load_model_from_checkpoint(own, device=device)
            return ChosenModel(model, schedule, cfg, "own run", f"model: your run {own}, a toy, because the starter "
                               f"weights are not available ({err})", own)
        raise
    return ChosenModel(model, schedule, cfg, "starter",
                       f"model: the starter weights ddpm_lib.pretrained.load({starter!r}) ({reason})")
