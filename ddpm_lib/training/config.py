"""What a training run depends on: :class:`TrainConfig`, its validation, and its learning-rate schedule.

``TrainConfig`` is a dataclass of plain values (so it goes into checkpoints loaded with
``weights_only=True`` and into a run's ``config.json``). Constructing one checks every field's type and
range and raises a ``ValueError`` naming the field and the fix. :func:`parse_field_value` turns a
command-line string into a field's type (used by ``python -m ddpm_lib train``). :func:`lr_factor` is the
learning-rate multiplier the Trainer applies at each optimizer step (linear warm-up, then cosine decay)
and :func:`lr_curve` the resulting learning rate over a whole run, for plots.

    from ddpm_lib.training.config import TrainConfig
    cfg = TrainConfig(preset="tiny", steps=200, batch_size=32, out_dir="runs/try")
    cfg.to_dict()  # plain values; TrainConfig.from_dict(...) builds it back
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm_lib import settings as settings_mod
from ddpm_lib.command_line import device_problem
from ddpm_lib.data.sources import NAMES as DATASET_NAMES
from ddpm_lib.data.sources import dataset_info, load_dataset
from ddpm_lib.diffusion.forward import PREDICTION_TYPES
from ddpm_lib.diffusion.losses import LOSS_TYPES
from ddpm_lib.diffusion.samplers import SAMPLER_NAMES
from ddpm_lib.diffusion.schedules import SCHEDULE_NAMES
from ddpm_lib.models.unet import PRESETS, UNet, UNetConfig
from ddpm_lib.training.recipes import Recipe, get_recipe

MIXED_PRECISION = ("auto", "no", "bf16", "fp16")
#: fields that say how one ``train`` command starts (continue, or delete and start again), never stored in a run
START_ACTIONS = ("resume", "overwrite")
LR_DECAYS = ("cosine", "constant")


@dataclass
class TrainConfig:
    """Everything a training run depends on. Validated on construction (``ValueError`` naming the field).

    ``batch_size`` is the number of images per optimizer step, over all accumulation steps and all
    processes (so the optimisation does not change with ``grad_accum`` or the number of GPUs).
    ``steps`` counts optimizer steps. Intervals (``log_every``, ``sample_every``, ``checkpoint_every``)
    are in optimizer steps; 0 switches the periodic action off.

    What each field means is written once, in :data:`FIELD_HELP` (``python -m ddpm_lib train --help`` prints it).
    """

    # data
    dataset: str = "fashion_mnist"
    data_root: str | None = None
    max_items: int | None = None
    hflip: bool = False
    class_conditional: bool = False
    label_dropout: float = 0.0
    # model
    preset: str = "fashion_mnist"
    unet: dict = field(default_factory=dict)
    init_from: str | None = None
    # diffusion
    schedule: str = "linear"
    num_timesteps: int = 1000
    prediction_type: str = "epsilon"
    loss_type: str = "l2"
    min_snr_gamma: float | None = None
    # optimisation
    steps: int = 10_000
    minutes: float | None = None
    batch_size: int = 128
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup_steps: int = 500
    lr_decay: str = "cosine"
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0
    mixed_precision: str = "auto"
    ema_decay: float = 0.9999
    ema_warmup: bool = True
    channels_last: bool = False
    compile: bool = False
    # monitoring
    log_every: int = 10
    sample_every: int = 0
    num_samples: int = 16
    sample_steps: int = 50
    sampler: str = "ddim"
    checkpoint_every: int = 1000
    loss_smoothing: float = 0.98
    early_stopping_patience: int | None = None
    early_stopping_min_delta: float = 0.0
    tensorboard: bool = True
    progress: bool = True
    # run
    seed: int = 0
    out_dir: str | None = None
    resume: bool = False
    overwrite: bool = False
    num_workers: int = 0
    device: str | None = None

    def __post_init__(self):
        self.validate()

    # ----------------------------------------------------------------------------------------
    @classmethod
    def field_types(cls) -> dict[str, Any]:
        return typing.get_type_hints(cls)

    def validate(self) -> TrainConfig:
        """Check every field's type and range; raise ValueError naming the field and the fix."""
        self._check_types()
        self._check_choices()
        self._check_ranges()
        self._check_setup()
        return self

    def _bad(self, name: str, msg: str) -> typing.NoReturn:
        """Raise the ValueError that names the field, its value and ``msg`` (the fix)."""
        raise ValueError(f"TrainConfig.{name}={getattr(self, name)!r}: {msg}")

    def _choice(self, name: str, options) -> None:
        """The field must be one of ``options``."""
        if getattr(self, name) not in options:
            self._bad(name, f"choose one of {', '.join(map(str, options))}.")

    def _check_types(self) -> None:
        """Every field of its annotated type and finite; an int given for a float field becomes a float."""
        for name, tp in self.field_types().items():
            value = getattr(self, name)
            if not _type_ok(value, tp):
                raise ValueError(f"TrainConfig.{name} must be {_type_name(tp)}, got {value!r}.")
            if isinstance(value, (float, np.floating)) and not math.isfinite(value):
                raise ValueError(f"TrainConfig.{name} must be a finite number, got {value!r}.")
            if isinstance(value, int) and not isinstance(value, bool) and _allows(tp, float):
                setattr(self, name, float(value))

    def _check_choices(self) -> None:
        """The named options (schedule, loss, sampler, preset, ...) among the library's names."""
        self._choice("schedule", SCHEDULE_NAMES)
        self._choice("prediction_type", PREDICTION_TYPES)
        self._choice("loss_type", LOSS_TYPES)
        self._choice("mixed_precision", MIXED_PRECISION)
        self._choice("lr_decay", LR_DECAYS)
        self._choice("sampler", SAMPLER_NAMES)
        self._choice("preset", sorted(PRESETS))

    def _check_ranges(self) -> None:
        """The numbers within their ranges (counts, rates, decays, budgets)."""
        bad = self._bad
        for name in ("steps", "batch_size", "grad_accum", "num_timesteps", "num_samples", "sample_steps"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1.")
        for name in ("warmup_steps", "log_every", "sample_every", "checkpoint_every", "num_workers", "seed"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0 (0 switches a periodic action off).")
        if self.minutes is not None and not self.minutes > 0:
            bad("minutes", "the time budget must be a positive number of minutes, e.g. 8, or none for no budget.")
        if not self.lr > 0 or not math.isfinite(self.lr):
            bad("lr", "the learning rate must be a positive number, e.g. 2e-4.")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0.")
        if not 0 <= self.min_lr_ratio <= 1:
            bad("min_lr_ratio", "must lie in [0, 1].")
        if self.grad_clip is not None and not self.grad_clip > 0:
            bad("grad_clip", "must be > 0, or None for no clipping.")
        if not 0 <= self.ema_decay < 1:
            bad("ema_decay", "must lie in [0, 1), e.g. 0.9999 (0.999 for short runs).")
        if not 0 <= self.loss_smoothing < 1:
            bad("loss_smoothing", "must lie in [0, 1).")
        if not 0 <= self.label_dropout < 1:
            bad("label_dropout", "must lie in [0, 1), e.g. 0.1 for classifier-free guidance.")
        if self.label_dropout > 0 and not self.class_conditional:
            bad("label_dropout", "label dropout needs class_conditional=True (there are no labels to drop).")
        if self.min_snr_gamma is not None and not self.min_snr_gamma > 0:
            bad("min_snr_gamma", "must be > 0 (Hang et al. use 5), or None.")
        if self.max_items is not None and self.max_items < 1:
            bad("max_items", "must be >= 1, or None for the whole dataset.")
        if self.early_stopping_patience is not None and self.early_stopping_patience < 1:
            bad("early_stopping_patience", "must be >= 1, or None to switch early stopping off.")
        if self.early_stopping_min_delta < 0:
            bad("early_stopping_min_delta", "must be >= 0.")

    def _check_setup(self) -> None:
        """The fields that go together (batch and accumulation, dataset and data, sample grid, resume and
        overwrite) and the names of things outside the config (dataset, UNet fields, run folder, device)."""
        bad = self._bad
        if self.batch_size % self.grad_accum:
            bad("batch_size", f"must be divisible by grad_accum={self.grad_accum} (images per optimizer step).")
        self._choice("dataset", DATASET_NAMES)
        if self.dataset in ("folder", "npy") and not self.data_root:
            bad("data_root", f"dataset={self.dataset!r} needs data_root (the image folder or the .npy/.npz file).")

        known = {f.name for f in dataclasses.fields(UNetConfig) if f.init}
        unknown = set(self.unet) - known
        if unknown:
            bad("unet", f"unknown UNetConfig field(s) {sorted(unknown)}; known: {sorted(known)}.")
        if self.sample_every and self.sampler != "ddpm" and self.sample_steps > self.num_timesteps:
            bad("sample_steps", f"the sample grids (sample_every={self.sample_every}) cannot take more sampler steps than "
                f"num_timesteps={self.num_timesteps}: give sample_steps <= {self.num_timesteps}.")
        if self.init_from is not None and not self.init_from.strip():
            bad("init_from", "is empty; give a checkpoint path or pretrained:NAME (None: random initial weights).")
        if self.out_dir is not None and not self.out_dir.strip():
            bad("out_dir", "the run folder is empty; give a folder name, e.g. runs/mine (None: the default runs folder).")
        if self.resume and self.overwrite:
            bad("overwrite", "resume=True (--resume) continues the run and overwrite=True (--overwrite) deletes it: "
                "pass only one of them.")
        why = None if self.device is None else device_problem(self.device, present=False)
        if why:  # whether the device is present is checked where the run starts (the CLI, the Trainer)
            bad("device", why + ".")

    def to_dict(self) -> dict:
        """Plain values only (for checkpoints loaded with ``weights_only=True`` and for JSON)."""
        return {f.name: _plain_copy(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_run_dict(self) -> dict:
        """What a run stores (its ``config.json`` and checkpoints): :meth:`to_dict` without :data:`START_ACTIONS`.

        ``resume`` and ``overwrite`` say how one command starts, not what the run is: stored, ``--config
        RUN/config.json`` would repeat them (``overwrite`` would delete the finished run it came from)."""
        return {k: v for k, v in self.to_dict().items() if k not in START_ACTIONS}

    @classmethod
    def from_dict(cls, d: dict, strict: bool = True) -> TrainConfig:
        """Build from a dict; unknown keys raise (``strict``) or are ignored with a warning."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown and strict:
            raise ValueError(f"unknown TrainConfig field(s): {sorted(unknown)}.")
        if unknown:
            warnings.warn(f"ignoring unknown TrainConfig field(s) {sorted(unknown)} (written by another ddpm_lib version?)", stacklevel=2)
        return cls(**{k: v for k, v in d.items() if k in names})

    def replace(self, **changes) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_recipe(cls, recipe: str | Recipe, **overrides) -> TrainConfig:
        """A :mod:`ddpm_lib.training.recipes` recipe (by name, or a :class:`Recipe`) as a validated config;
        ``overrides`` replace any of its fields."""
        r = get_recipe(recipe) if isinstance(recipe, str) else recipe
        return cls.from_dict({**r.train, **overrides}, strict=True)


def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (AVX512-BF16 or AMX), where bf16 autocast pays off.

    Read from the CPU flags (Linux ``/proc/cpuinfo``); elsewhere False (fp32 is the safe choice)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool({"avx512_bf16", "amx_bf16"} & flags)
    except OSError:
        pass
    return False


def default_out_dir() -> Path:
    """The run folder of a TrainConfig without ``out_dir``: ``<settings.runs_dir>/default``, the runs folder the
    data and the classifier use too (``DDPM_RUNS_DIR``, else ``runs/`` in a checkout, ``/content/runs`` on
    Colab, a per-user cache folder elsewhere; :func:`ddpm_lib.settings.default_dirs`), never the current folder."""
    return settings_mod.settings.runs_dir / "default"


def resolve_mixed_precision(setting: str, device: torch.device) -> str:
    """What ``mixed_precision`` means on ``device``: "auto" becomes "bf16" on a CPU with native bf16
    (:func:`cpu_has_native_bf16`) and on a CUDA GPU that supports bf16, else "no"; others pass through."""
    if setting != "auto":
        return setting
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "no"
    if device.type == "cpu":
        return "bf16" if cpu_has_native_bf16() else "no"
    return "no"


def _plain_copy(v):
    if isinstance(v, dict):
        return {k: _plain_copy(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain_copy(x) for x in v]
    return v


def _type_args(tp) -> tuple:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        return typing.get_args(tp)
    return (tp,)


def _allows(tp, kind) -> bool:
    return kind in _type_args(tp)


def _type_ok(value, tp) -> bool:
    for kind in _type_args(tp):
        if kind is type(None) and value is None:
            return True
        if kind is bool and isinstance(value, bool):
            return True
        if kind is int and isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return True
        if kind is float and isinstance(value, (int, float, np.floating)) and not isinstance(value, bool):
            return True
        if kind is str and isinstance(value, str):
            return True
        if kind is dict and isinstance(value, dict):
            return True
    return False


def _type_name(tp) -> str:
    names = {bool: "a bool (true/false)", int: "an int", float: "a number", str: "a string", dict: "a dict", type(None): "None"}
    return " or ".join(names.get(k, str(k)) for k in _type_args(tp))


def parse_field_value(name: str, text: str):
    """Turn the command-line string ``text`` into the type of TrainConfig field ``name`` (ValueError if it cannot)."""
    types_ = TrainConfig.field_types()
    if name not in types_:
        raise ValueError(f"unknown option --{name.replace('_', '-')}; see --help for the list.")
    tp = types_[name]
    kinds = _type_args(tp)
    t = text.strip()
    if type(None) in kinds and t.lower() in ("none", "null"):
        return None
    for kind in kinds:
        try:
            if kind is bool:
                if t.lower() in ("1", "true", "yes", "on"):
                    return True
                if t.lower() in ("0", "false", "no", "off"):
                    return False
            elif kind is int:
                return int(t.replace("_", ""))
            elif kind is float:
                return float(t)
            elif kind is str:
                return t
            elif kind is dict:
                v = json.loads(t)
                if isinstance(v, dict):
                    return v
        except ValueError:
            continue
    raise ValueError(f"--{name.replace('_', '-')}: {text!r} is not {_type_name(tp)}.")


# ---------------------------------------------------------------------------------------------------
# learning rate


def lr_factor(step: int, warmup_steps: int, total_steps: int, decay: str = "cosine", min_ratio: float = 0.0) -> float:
    """Multiplier of the base lr for optimizer step ``step`` (0-based): linear warm-up, then cosine decay.

    Warm-up: (step + 1) / warmup_steps for the first ``warmup_steps`` steps (Goyal et al. 2017).
    Cosine: min_ratio + (1 - min_ratio) * (1 + cos(pi * p)) / 2 with p going 0 -> 1 from the end of the
    warm-up to the last step (Loshchilov & Hutter 2017, SGDR without restarts).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if decay == "constant":
        return 1.0
    span = max(1, total_steps - warmup_steps)
    p = min(1.0, (step - warmup_steps) / span)
    return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * p))


def lr_curve(config: TrainConfig) -> np.ndarray:
    """The learning rate at every optimizer step of a run with ``config`` (for plots)."""
    return np.array([config.lr * lr_factor(s, config.warmup_steps, config.steps, config.lr_decay, config.min_lr_ratio)
                     for s in range(config.steps)])


# ---------------------------------------------------------------------------------------------------
# one-line descriptions of the fields (the single source of `python -m ddpm_lib train --help`)


def _choices(names) -> str:
    return ", ".join(names)


FIELD_HELP: dict[str, str] = {
    # data
    "dataset": "fashion_mnist, cifar10, folder (an image folder) or npy (a .npy/.npz array file)",
    "data_root": "data folder (default: DDPM_DATA_DIR), or the image folder / .npy file for folder and npy",
    "max_items": "train on the first N images only (none: the whole dataset)",
    "hflip": "random horizontal flips (Ho et al. use them for CIFAR-10)",
    "class_conditional": "give the UNet the class labels (num_classes from the dataset)",
    "label_dropout": "probability of replacing a label by the null class (classifier-free guidance, e.g. 0.1)",
    # model
    "preset": "UNet preset, a ddpm_lib.models.unet.PRESETS name (e.g. tiny, fashion_mnist_cpu, cifar10_ddpm)",
    "unet": "JSON dict of UNetConfig fields overriding the preset, e.g. '{\"dropout\": 0.0}'",
    "init_from": "start from these weights instead of random ones (fine-tuning): a checkpoint or pretrained:NAME, "
                 "whose EMA weights go into the model and its EMA; the optimizer, step count and lr schedule start "
                 "afresh, and the model (preset, unet) must match the checkpoint's",
    # diffusion
    "schedule": f"noise schedule: {_choices(SCHEDULE_NAMES)}",
    "num_timesteps": "number of diffusion steps T (Ho et al.: 1000)",
    "prediction_type": f"what the UNet predicts: {_choices(PREDICTION_TYPES)}",
    "loss_type": f"loss between prediction and target: {_choices(LOSS_TYPES)}",
    "min_snr_gamma": "Min-SNR loss weighting with this gamma (Hang et al. 2023 use 5); none: unweighted",
    # optimisation
    "steps": "optimizer steps in the whole run",
    "minutes": "time budget: stop when this many minutes of the run (start-up included) are spent, or at steps, "
               "whichever comes first; the cosine decay follows the clock so it ends when the budget does (none: steps only)",
    "batch_size": "images per optimizer step (all GPUs and accumulation steps together)",
    "grad_accum": "micro-batches accumulated per optimizer step (batch_size must divide by it)",
    "lr": "peak learning rate of AdamW (after the warm-up)",
    "weight_decay": "AdamW weight decay",
    "warmup_steps": "steps of linear learning-rate warm-up from 0",
    "lr_decay": f"learning-rate decay after the warm-up: {_choices(LR_DECAYS)}",
    "min_lr_ratio": "cosine decay ends at this fraction of lr",
    "grad_clip": "clip the global gradient norm to this (none: no clipping)",
    "mixed_precision": f"autocast precision: {_choices(MIXED_PRECISION)}; auto = bf16 on a CUDA GPU or CPU with "
                       "native bf16, else no; fp16 needs CUDA (with a GradScaler)",
    "ema_decay": "decay of the EMA of the weights used for sampling (0.9999; 0.999 for short runs)",
    "ema_warmup": "warm the EMA decay up as min(decay, (1+n)/(10+n))",
    "channels_last": "channels-last memory format for the model and batches (faster on recent GPUs)",
    "compile": "torch.compile the model (slow first step; faster after on GPUs)",
    # monitoring
    "log_every": "steps between rows of metrics.csv (and TensorBoard points)",
    "sample_every": "steps between EMA sample grids in out_dir/samples (0: never)",
    "num_samples": "images in each sample grid",
    "sample_steps": "sampler steps for the sample grids (not used by ddpm, which takes all T)",
    "sampler": "sampler for the sample grids: ddpm, ddim, dpm++",
    "checkpoint_every": "steps between latest.pt/best.pt saves (0: only at the end)",
    "loss_smoothing": "EMA factor of the smoothed loss used for best.pt and early stopping",
    "early_stopping_patience": "stop after this many steps without improvement of the smoothed loss (none: never)",
    "early_stopping_min_delta": "smallest decrease of the smoothed loss that counts as an improvement",
    "tensorboard": "also log to TensorBoard in out_dir/tb",
    "progress": "show a progress bar (a line every 30 s when the output is not a terminal)",
    # run
    "seed": "seed of every random number generator (data order, noise, initial weights)",
    "out_dir": "run folder: config.json, metrics.csv, latest.pt, best.pt, final.pt, samples/, tb/ (default: "
               "<runs dir>/default: DDPM_RUNS_DIR, else runs/ in a checkout, /content/runs on Colab, a per-user cache)",
    "resume": "continue from out_dir/latest.pt if it exists",
    "overwrite": "start afresh even if out_dir already holds a run",
    "num_workers": "DataLoader worker processes (0: load in the training process)",
    "device": "cpu, cuda, cuda:1 or mps (default: the best available)",
}


# what a config builds: the training dataset and the model


def model_field(config: TrainConfig, name: str):
    """A UNetConfig field of the model ``config`` builds: its ``unet`` override, else its preset's value."""
    return config.unet.get(name, getattr(PRESETS[config.preset], name))


def load_train_dataset(config: TrainConfig):
    """The training split of ``config.dataset`` at the model's image size (checked when loaded, see ddpm_lib.data.sources)."""

    size = int(model_field(config, "image_size"))
    return load_dataset(config.dataset, train=True, image_size=size, root=config.data_root, hflip=config.hflip,
                        max_items=config.max_items)


def dataset_num_classes(config: TrainConfig, dataset) -> int:
    info = getattr(dataset, "info", None)
    if info is not None and getattr(info, "num_classes", None):
        return int(info.num_classes)

    return int(dataset_info(config.dataset).num_classes)


def build_model(config: TrainConfig, dataset):
    """The UNet of ``config.preset`` with ``config.unet`` overrides (``num_classes`` from the dataset when
    ``class_conditional``)."""

    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in config.unet.items()}
    if config.class_conditional and "num_classes" not in overrides:
        overrides["num_classes"] = dataset_num_classes(config, dataset)
    return UNet.from_preset(config.preset, **overrides)


def image_shape(dataset) -> tuple[int, ...]:
    """(C, H, W) of the dataset's first image (reading it, so a broken dataset fails before training)."""
    first = dataset[0]
    return tuple((first[0] if isinstance(first, (tuple, list)) else first).shape)


def check_model_fits_data(config: TrainConfig, model, dataset, shape: tuple[int, ...]) -> None:
    """Check the model takes images of ``shape`` (C, H, W) and, for a class-conditional run, the labels."""
    c, h, w = shape
    mcfg = getattr(model, "config", None)
    if mcfg is not None and hasattr(mcfg, "in_channels") and (mcfg.in_channels != c or mcfg.image_size != h):
        raise ValueError(
            f"the model expects {mcfg.in_channels}x{mcfg.image_size}x{mcfg.image_size} images but the dataset "
            f"{config.dataset!r} gives {c}x{h}x{w}: pick a matching preset (fashion_mnist/tiny for 1 channel, "
            "cifar10_ddpm for 3) or set unet={'in_channels': ..., 'image_size': ...}."
        )
    if config.class_conditional:
        info = getattr(dataset, "info", None)
        if info is not None and getattr(info, "num_classes", 2) < 2:
            where = f" ({config.data_root})" if config.data_root else ""
            raise ValueError(
                f"TrainConfig.class_conditional=True but the dataset {config.dataset!r}{where} has no labels (one class): "
                "a class-conditional model needs at least 2 classes. Give labels (npy: a .npz with an 'images' and a "
                "'labels' array; folder: one sub-folder per class), or train without --class-conditional.")
        null = getattr(model, "null_class", None)
        if null is None:
            raise ValueError("TrainConfig.class_conditional=True but the model is unconditional (num_classes=None).")
        targets = getattr(dataset, "targets", None)
        if targets is not None and len(targets) and max(targets) >= null:
            raise ValueError(f"the dataset {config.dataset!r} has label {max(targets)} but the model knows {null} "
                             f"classes (0..{null - 1}): fix the labels or set unet={{'num_classes': {max(targets) + 1}}}.")
