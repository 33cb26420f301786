"""Small observers of a :class:`~ddpm_lib.training.trainer.Trainer`: progress bar, metrics.csv, TensorBoard,
sample grids and early stopping. Each overrides some of four hooks::

    on_fit_start(trainer)             before the first step of fit()
    on_step_end(trainer, loss)        after every optimizer step (trainer.step already counts it)
    on_log(trainer, row)              every log_every steps and at the last one: a metrics row
    on_fit_end(trainer)               when fit() leaves, normally or not

``Trainer(config, callbacks=[...])`` takes more of them, or plain functions ``f(trainer, row)``
(called like ``on_log``, e.g. :class:`ddpm_lib.training.monitor.LiveLossPlot`). They run on the main process
only, except early stopping, which every process must agree on.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from torch import nn

from ddpm_lib.diffusion.samplers import sample
from ddpm_lib.diffusion.schedules import NoiseSchedule
from ddpm_lib.progress import progress_bar
from ddpm_lib.training.config import TrainConfig
from ddpm_lib.training.distributed import DistInfo
from ddpm_lib.training.monitor import append_metrics
from ddpm_lib.training.runs import RunFolder
from ddpm_lib.viz import save_grid


class Trainer(Protocol):
    """What a callback reads from the running :class:`ddpm_lib.training.trainer.Trainer` (and, for early
    stopping, ``progress`` and ``stop_reason`` it writes). A protocol, so that this module need not import
    the trainer, which imports it."""

    config: TrainConfig
    run: RunFolder
    device: torch.device
    dist: DistInfo
    schedule: NoiseSchedule
    data_shape: tuple[int, ...]
    step: int
    end_step: int
    smoothed_loss: float
    stop_reason: str | None
    progress: dict

    def ema_model(self) -> nn.Module: ...


class Callback:
    def on_fit_start(self, trainer: Trainer) -> None: ...

    def on_step_end(self, trainer: Trainer, loss: float) -> None: ...

    def on_log(self, trainer: Trainer, row: dict) -> None: ...

    def on_fit_end(self, trainer: Trainer) -> None: ...


class RowFunction(Callback):
    """A plain ``f(trainer, row)`` as a callback."""

    def __init__(self, fn):
        self.fn = fn

    def on_log(self, trainer, row):
        self.fn(trainer, row)


class ProgressBar(Callback):
    """A bar over the run's steps, with the latest loss, lr and images/s (a line every 30 s in a log:
    :mod:`ddpm_lib.progress`)."""

    def on_fit_start(self, trainer):
        self.bar = progress_bar(total=trainer.config.steps, initial=trainer.step, desc="training", dynamic_ncols=True)

    def on_step_end(self, trainer, loss):
        self.bar.update(1)

    def on_log(self, trainer, row):
        self.bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{row['lr']:.2e}", img_s=f"{row['img_per_s']:.0f}")

    def on_fit_end(self, trainer):
        self.bar.close()


class CSVLogger(Callback):
    """Appends each row to ``metrics.csv`` (:mod:`ddpm_lib.training.monitor`)."""

    def on_log(self, trainer, row):
        append_metrics(trainer.run.path, [row])


class TensorBoardLogger(Callback):
    """Scalars under ``train/`` in ``<run>/tb`` (a no-op when the tensorboard package is missing)."""

    KEYS = ("loss", "smoothed_loss", "lr", "grad_norm", "img_per_s")

    def on_fit_start(self, trainer):
        try:
            from torch.utils.tensorboard import SummaryWriter  # heavy, optional
        except ImportError:  # tensorboard not installed: CSV only
            self.writer = None
            return
        self.writer = SummaryWriter(str(trainer.run.path / "tb"), purge_step=trainer.step or None)

    def on_log(self, trainer, row):
        if self.writer is not None:
            for k in self.KEYS:
                self.writer.add_scalar(f"train/{k}", row[k], row["step"])

    def on_fit_end(self, trainer):
        if self.writer is not None:
            self.writer.close()


def sample_grid(trainer: Trainer, path=None, num: int | None = None):
    """``num`` (default ``config.num_samples``) samples from the trainer's EMA model with a fixed generator
    (the same noise at every call, so grids over a run are comparable) and the config's sampler; saved
    as a PNG grid when ``path`` is given. The training RNG streams are left untouched."""

    cfg, model = trainer.config, trainer.ema_model()
    n = num or cfg.num_samples
    labels = torch.arange(n) % model.null_class if getattr(model, "null_class", None) is not None else None
    with torch.random.fork_rng(devices=[trainer.device] if trainer.device.type == "cuda" else []):
        x = sample(model, trainer.schedule, (n, *trainer.data_shape), sampler=cfg.sampler,
                   num_steps=None if cfg.sampler == "ddpm" else cfg.sample_steps, labels=labels,
                   generator=torch.Generator().manual_seed(cfg.seed), prediction_type=cfg.prediction_type,
                   progress=False, device=trainer.device)
    if path is not None:
        save_grid(x.float().cpu(), path, nrow=int(math.ceil(math.sqrt(n))))
    return x


class SampleGrids(Callback):
    """Every ``sample_every`` steps (and at the last one), a grid from the EMA model in ``<run>/samples``."""

    def __init__(self, every: int):
        self.every = every

    def on_step_end(self, trainer, loss):
        if trainer.step % self.every == 0 or trainer.step == trainer.end_step:
            sample_grid(trainer, trainer.run.samples / f"step_{trainer.step:07d}.png")


class EarlyStopping(Callback):
    """Stops the run when the smoothed loss has not improved by ``min_delta`` for ``patience`` steps
    after the warm-up; its state lives in ``trainer.progress`` (saved in checkpoints)."""

    def __init__(self, patience: int, min_delta: float, warmup_steps: int):
        self.patience, self.min_delta, self.warmup_steps = patience, min_delta, warmup_steps

    def on_step_end(self, trainer, loss):
        p = trainer.progress
        if trainer.step <= self.warmup_steps:
            return
        if trainer.smoothed_loss < p["es_best"] - self.min_delta:
            p["es_best"], p["es_best_step"] = trainer.smoothed_loss, trainer.step
        elif trainer.step - p["es_best_step"] >= self.patience:
            trainer.stop_reason = "early_stopping"
            if trainer.dist.is_main:
                print(f"early stopping at step {trainer.step}: the smoothed loss has not improved by more than "
                      f"{self.min_delta} for {self.patience} steps (best {p['es_best']:.4f} at step {p['es_best_step']}).")


def default_callbacks(trainer: Trainer, extra=()) -> list[Callback]:
    """The callbacks a config asks for: on the main process the progress bar, CSV, TensorBoard, sample
    grids and ``extra`` (callbacks or ``f(trainer, row)`` functions); early stopping on every process."""
    cfg = trainer.config
    cbs: list[Callback] = []
    if trainer.dist.is_main:
        if cfg.progress:
            cbs.append(ProgressBar())
        cbs.append(CSVLogger())
        if cfg.tensorboard:
            cbs.append(TensorBoardLogger())
        if cfg.sample_every:
            cbs.append(SampleGrids(cfg.sample_every))
        cbs += [cb if isinstance(cb, Callback) else RowFunction(cb) for cb in extra]
    if cfg.early_stopping_patience is not None:
        cbs.append(EarlyStopping(cfg.early_stopping_patience, cfg.early_stopping_min_delta, cfg.warmup_steps))
    return cbs


__all__ = ["CSVLogger", "Callback", "EarlyStopping", "ProgressBar", "RowFunction", "SampleGrids",
           "TensorBoardLogger", "default_callbacks", "sample_grid"]
