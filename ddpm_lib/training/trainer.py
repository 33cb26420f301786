"""Train a diffusion model: the loop of Ho et al. 2020 (Algorithm 1) and its optimizer step.

    repeat: x0 ~ data, t ~ U{0..T-1}, eps ~ N(0, I)           (ddpm_lib.diffusion.losses.training_loss)
            loss = || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2
            loss.backward(); clip the gradient norm; AdamW step; lr schedule step; EMA update

Around it: gradient accumulation, mixed precision (bf16 autocast, or fp16 with a GradScaler on CUDA;
the forward process stays fp32), DistributedDataParallel under torchrun, and checkpoints. Everything
else is somewhere else: the config and lr schedule in :mod:`ddpm_lib.training.config`, the data order in
:mod:`ddpm_lib.data.batching`, the run folder, checkpoint format, lock and resume rules in
:mod:`ddpm_lib.training.runs`, logging / TensorBoard / sample grids / early stopping in :mod:`ddpm_lib.training.callbacks`.

    from ddpm_lib.settings import seed_everything
    from ddpm_lib.training.trainer import TrainConfig, Trainer
    seed_everything(0)   # the caller seeds the process (the CLI does it with config.seed)
    result = Trainer(TrainConfig(preset="tiny", steps=200, out_dir="runs/try")).fit()

A run resumed from ``latest.pt`` continues exactly (on a CPU, N + N resumed steps give the same weights
as 2N steps: the data order is a function of (seed, epoch) and every RNG state is saved). SIGINT and
SIGTERM during :meth:`Trainer.fit` save ``latest.pt`` at the current step, then raise :class:`TrainingInterrupted`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from ddpm_lib import settings as settings_mod
from ddpm_lib.data.batching import EpochBatches
from ddpm_lib.diffusion.losses import training_loss, unwrap_model
from ddpm_lib.diffusion.schedules import make_schedule
from ddpm_lib.models.ema import EMA
from ddpm_lib.training import checkpoint, runs
from ddpm_lib.training import distributed as dist_utils
from ddpm_lib.training.callbacks import default_callbacks
from ddpm_lib.training.config import (
    LR_DECAYS,
    MIXED_PRECISION,
    TrainConfig,
    build_model,
    check_model_fits_data,
    default_out_dir,
    image_shape,
    load_train_dataset,
    lr_curve,
    lr_factor,
    parse_field_value,
    resolve_mixed_precision,
)
from ddpm_lib.training.monitor import (
    METRIC_COLUMNS,
    LiveLossPlot,
    plot_metrics,
    read_metrics,
    truncate_metrics,
)

# The Trainer's companions, importable from here too (``from ddpm_lib.training.trainer import TrainConfig``).
__all__ = ["LR_DECAYS", "METRIC_COLUMNS", "MIXED_PRECISION", "LiveLossPlot", "NonFiniteLossError", "TrainConfig",
           "Trainer", "TrainingInterrupted", "lr_curve", "lr_factor", "parse_field_value", "plot_metrics",
           "read_metrics", "train"]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


class TrainingInterrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM stopped :meth:`Trainer.fit`; ``checkpoint`` holds the run at ``step``."""

    def __init__(self, signal_name: str, step: int, checkpoint: Path | None):
        super().__init__(f"{signal_name} at step {step}; saved {checkpoint}")
        self.signal_name, self.step, self.checkpoint = signal_name, step, checkpoint


class Trainer:
    """Runs a :class:`TrainConfig`; ``model`` and ``dataset`` may be given instead of being built from it.

    After :meth:`fit`: ``raw_model`` holds the raw weights, ``ema`` the averaged ones (:meth:`ema_model`
    gives a model holding them), ``run.path`` the run folder. The process is not seeded here.
    """

    def __init__(self, config: TrainConfig, model: nn.Module | None = None, dataset=None, callbacks=None,
                 loss_fn=None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")

        self._clock = time.perf_counter()  # the time budget (config.minutes) counts from here: start-up included
        self._seconds_before = 0.0  # seconds spent by earlier sessions of a resumed run
        self._excluded = 0.0  # seconds callbacks asked to leave out (evaluation probes: exclude_time)
        if config.out_dir is None:  # the same default folders as the data and the classifier, never the cwd
            config = dataclasses.replace(config, out_dir=str(default_out_dir()))
        self.config = cfg = config.validate()

        device = torch.device(cfg.device) if cfg.device is not None else settings_mod.settings.device
        self.dist = dist_utils.init_distributed(device)
        self.device = dist_utils.device_for(self.dist, device)
        self.precision = resolve_mixed_precision(cfg.mixed_precision, self.device)  # "auto" -> "bf16" or "no"
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("TrainConfig.mixed_precision='fp16' needs a CUDA GPU (it uses a GradScaler): use 'bf16' or 'no'.")
        if cfg.batch_size % (cfg.grad_accum * self.dist.world_size):
            raise ValueError(f"TrainConfig.batch_size={cfg.batch_size} must be divisible by grad_accum * processes "
                             f"= {cfg.grad_accum} * {self.dist.world_size}.")
        self.run = runs.RunFolder(cfg.out_dir)
        self.run_dir = self.run.path
        self.dataset = dataset if dataset is not None else load_train_dataset(cfg)
        self.data_shape = image_shape(self.dataset)
        self.raw_model = model if model is not None else build_model(cfg, self.dataset)
        check_model_fits_data(cfg, self.raw_model, self.dataset, self.data_shape)
        if cfg.init_from is not None:  # fine-tuning: the checkpoint's EMA weights; the EMA below starts from them
            payload, source = checkpoint.read_payload(cfg.init_from)
            checkpoint.load_model_weights(self.raw_model, payload, use_ema=True, source=source)
        self.raw_model.to(self.device, memory_format=torch.channels_last if cfg.channels_last else torch.preserve_format)
        self.batches = EpochBatches(self.dataset, cfg.batch_size // (cfg.grad_accum * self.dist.world_size), cfg.seed,
                                    self.dist.rank, self.dist.world_size, cfg.num_workers, self.device.type == "cuda")
        self.schedule = make_schedule(cfg.schedule, cfg.num_timesteps).to(self.device)
        self.ema = EMA(self.raw_model, decay=cfg.ema_decay, warmup=cfg.ema_warmup)
        self.optimizer = torch.optim.AdamW(self.raw_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda s: lr_factor(s, cfg.warmup_steps, self.planned_steps(s), cfg.lr_decay, cfg.min_lr_ratio))
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.model = self.raw_model
        if self.dist.enabled:
            self.model = DDP(self.raw_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.compile:
            self.model = torch.compile(self.model)
        self.callbacks = default_callbacks(self, callbacks or [])
        self.step, self.end_step, self.stop_reason, self.smoothed_loss = 0, cfg.steps, None, math.nan
        self.progress = {"smoothed": 0.0, "smoothed_n": 0, "best_loss": math.inf, "es_best": math.inf, "es_best_step": 0}
        self._ema_model = None
        # another objective on the same loop (e.g. ddpm_lib.diffusion.flow_matching.flow_matching_loss):
        # loss_fn(model, x0, labels) -> scalar. Its checkpoints are not eps-models: keep them in their own folder.
        if loss_fn is not None and not callable(loss_fn):
            raise ValueError(f"loss_fn must be callable as loss_fn(model, x0, labels), got {type(loss_fn).__name__}.")
        if loss_fn is not None and cfg.sample_every:
            raise ValueError("TrainConfig.sample_every draws grids with the DDPM samplers, which a custom loss_fn's model "
                             "does not fit: set sample_every=0 when passing loss_fn.")
        self.loss_fn = loss_fn

    # ---- the time budget (config.minutes) ---------------------------------------------------------------------
    def seconds_spent(self) -> float:
        """Wall time this run has spent, over all its sessions, from the Trainer's creation (start-up included),
        less the time callbacks excluded."""
        return self._seconds_before + time.perf_counter() - self._clock - self._excluded

    def exclude_time(self, seconds: float) -> None:
        """Leave ``seconds`` (just spent by a callback on something that is not training, such as an evaluation
        probe) out of :meth:`seconds_spent`, so that it neither uses up the time budget nor shifts the lr decay."""
        self._excluded += seconds

    def planned_steps(self, step: int) -> int:
        """The step at which the run is expected to end: ``config.steps``, or, with a time budget, the step count
        the clock predicts (``step`` / fraction of the budget spent, at most ``config.steps``), so that the
        cosine decay follows the steps this machine actually manages and ends when the budget does."""
        cfg = self.config
        if cfg.minutes is None or step == 0:
            return cfg.steps
        spent = self.seconds_spent() / (60.0 * cfg.minutes)
        return max(step, min(cfg.steps, math.ceil(step / max(spent, 1e-9) - 1e-6)))  # - 1e-6: float noise

    def budget_spent(self) -> bool:
        return self.config.minutes is not None and self.seconds_spent() >= 60.0 * self.config.minutes

    # ---- checkpoints (format: ddpm_lib.training.checkpoint; folder rules: ddpm_lib.training.runs) ----------------------------------------
    def state_payload(self) -> dict:
        self.progress["seconds_spent"] = self.seconds_spent()
        return checkpoint.training_payload(
            step=self.step, model=self.raw_model, ema=self.ema, optimizer=self.optimizer, lr_scheduler=self.lr_scheduler,
            scaler=self.scaler, device=self.device, epoch=self.batches.epoch, batch_in_epoch=self.batches.batch_in_epoch,
            progress=self.progress, train_config=self.config.to_run_dict(), world_size=self.dist.world_size)

    def save(self, name: str) -> Path | None:
        """Write ``<run>/<name>.pt`` atomically (main process only)."""
        return self.run.save(name, self.state_payload()) if self.dist.is_main else None

    def _resume(self, path: Path) -> None:
        payload = self.run.load_for_resume(path)
        checkpoint.check_resumable(payload, str(path))
        self.run.check_resume_config(payload.get("train_config", {}), self.config.to_dict())
        self.run.check_resume_steps(int(payload.get("step", 0)), self.config.steps)
        main = self.dist.is_main or not self.dist.enabled
        state = checkpoint.restore_training_state(payload, model=self.raw_model, ema=self.ema, optimizer=self.optimizer,
                                            lr_scheduler=self.lr_scheduler, scaler=self.scaler, device=self.device,
                                            restore_rng=main, source=str(path))
        if not main:  # other processes: a fresh, rank- and step-dependent noise stream
            torch.manual_seed(self.config.seed + 100_003 * self.dist.rank + state["step"])
        self.step, self.progress = state["step"], state["progress"]
        self._seconds_before, self._clock, self._excluded = self.progress.get("seconds_spent", 0.0), time.perf_counter(), 0.0
        self.batches.epoch, self.batches.batch_in_epoch = state["epoch"], state["batch_in_epoch"]
        if self.dist.is_main:
            truncate_metrics(self.run.path, self.step)

    def ema_model(self) -> nn.Module:
        """A copy of the model holding the EMA weights (kept and refreshed; in eval mode)."""
        if self._ema_model is None:
            self._ema_model = copy.deepcopy(unwrap_model(self.raw_model))
        self.ema.copy_to(self._ema_model)
        return self._ema_model.eval()

    # ---- Algorithm 1 -----------------------------------------------------------------------------
    def _autocast(self):
        if self.precision == "no":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.precision == "bf16" else torch.float16)

    def _non_finite(self, what: str, value: float) -> NonFiniteLossError:
        good = self.run.last_good_checkpoint()
        kept = f"The last good checkpoint is kept: {good}." if good else "No checkpoint had been saved yet."
        return NonFiniteLossError(
            f"training stopped at step {self.step + 1}: the {what} is {value} (not finite). {kept} Hint: lower the "
            f"learning rate (lr={self.config.lr:g}), keep grad_clip on, or train in fp32 (mixed_precision='no', "
            f"now {self.precision!r}).")

    def train_step(self, batches) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (loss, gradient norm before clipping)."""
        cfg = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            batch = next(batches)
            x = batch[0] if isinstance(batch, (list, tuple)) else batch
            x = x.to(self.device, non_blocking=True).float()
            if cfg.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            labels = torch.as_tensor(batch[1]).to(self.device).long() if cfg.class_conditional else None
            last_micro = micro == cfg.grad_accum - 1
            no_sync = self.model.no_sync() if self.dist.enabled and not last_micro else contextlib.nullcontext()
            with no_sync:
                with self._autocast():
                    if self.loss_fn is not None:
                        loss = self.loss_fn(self.model, x, labels)
                    else:
                        loss = training_loss(self.model, self.schedule, x, labels=labels, prediction_type=cfg.prediction_type,
                                             loss_type=cfg.loss_type, min_snr_gamma=cfg.min_snr_gamma,
                                             label_dropout=cfg.label_dropout)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.detach() / cfg.grad_accum
        loss_value = float(dist_utils.all_reduce_mean(total, self.dist))
        if not math.isfinite(loss_value):
            raise self._non_finite("loss", loss_value)
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.raw_model.parameters() if p.grad is not None]
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip or math.inf))
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            raise self._non_finite("gradient norm", grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_scheduler.step()
        self.ema.update(self.raw_model)
        self.step += 1
        return loss_value, grad_norm

    def fit(self, max_steps: int | None = None) -> dict:
        """Train until ``config.steps``, the time budget ``config.minutes`` or early stopping; returns a summary dict.

        ``max_steps`` stops after that many steps in total (as if interrupted: ``latest.pt`` is written,
        ``final.pt`` is not). SIGINT/SIGTERM save ``latest.pt`` and raise :class:`TrainingInterrupted`.
        """
        cfg, main = self.config, self.dist.is_main
        try:
            resume_from = self.run.prepare(cfg.resume, cfg.overwrite) if main else None
            resume_from = dist_utils.broadcast_object(resume_from, self.dist)
            if resume_from is not None:
                self._resume(Path(resume_from))
            if main:
                self.run.write_config(cfg.to_run_dict())
            dist_utils.barrier(self.dist)
            self.end_step = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
            with runs.stop_on_signals() as stop:
                self._loop(stop)
            if self.stop_reason == "signal":
                if self._saved_step != self.step:
                    self.save("latest")
            elif self.stop_reason != "max_steps":
                self.save("final")
            summary = {"step": self.step, "stopped": self.stop_reason, "seconds": self.seconds_spent(),
                       "smoothed_loss": self.smoothed_loss,
                       "best_loss": self.progress["best_loss"], "run_dir": str(self.run.path)}
            if self.dist.enabled:
                summary["rank_weight_hashes"] = dist_utils.rank_weight_hashes(self.raw_model, self.dist, self.run.path)
            dist_utils.barrier(self.dist)
        finally:
            self.run.release_lock()
        if self.stop_reason == "signal":
            raise TrainingInterrupted(stop.signal or "a signal", self.step, self.run.latest if self.dist.is_main else None)
        return summary

    def _loop(self, stop) -> None:
        cfg, p = self.config, self.progress
        batches = iter(self.batches)
        self.stop_reason, self._saved_step = None, self.step
        for cb in self.callbacks:
            cb.on_fit_start(self)
        losses, t_start, t_interval = [], time.perf_counter(), time.perf_counter()
        try:
            while self.step < self.end_step and self.stop_reason is None:
                if dist_utils.any_process(bool(stop), self.dist, self.device):  # every process stops at the same step
                    self.stop_reason = "signal"
                    break
                loss, grad_norm = self.train_step(batches)
                b = cfg.loss_smoothing  # bias-corrected exponential moving average of the loss
                p["smoothed"], p["smoothed_n"] = b * p["smoothed"] + (1 - b) * loss, p["smoothed_n"] + 1
                self.smoothed_loss = p["smoothed"] / (1 - b ** p["smoothed_n"]) if b > 0 else p["smoothed"]
                losses.append(loss)
                for cb in self.callbacks:
                    cb.on_step_end(self, loss)
                if self.stop_reason is None and self.budget_spent():
                    self.stop_reason = "time_budget"
                last = self.step == self.end_step or self.stop_reason is not None
                if (cfg.log_every and self.step % cfg.log_every == 0) or last:
                    now = time.perf_counter()
                    row = {"step": self.step, "epoch": self.batches.epoch, "loss": sum(losses) / len(losses),
                           "smoothed_loss": self.smoothed_loss, "lr": self.optimizer.param_groups[0]["lr"],
                           "grad_norm": grad_norm, "img_per_s": len(losses) * cfg.batch_size / max(now - t_interval, 1e-9),
                           "elapsed_s": now - t_start}
                    for cb in self.callbacks:
                        cb.on_log(self, row)
                    losses, t_interval = [], time.perf_counter()
                if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or last:
                    improved = self.smoothed_loss < p["best_loss"]
                    p["best_loss"] = min(p["best_loss"], self.smoothed_loss)
                    self.save("latest")
                    if improved:
                        self.save("best")
                    self._saved_step = self.step
            if self.stop_reason is None:
                self.stop_reason = "signal" if stop and self.step < cfg.steps else (
                    "completed" if self.end_step == cfg.steps else "max_steps")
        finally:
            for cb in self.callbacks:
                cb.on_fit_end(self)


def train(config: TrainConfig, model: nn.Module | None = None, dataset=None, callbacks=None, loss_fn=None) -> dict:
    """``Trainer(config, model, dataset, callbacks, loss_fn).fit()``."""
    return Trainer(config, model=model, dataset=dataset, callbacks=callbacks, loss_fn=loss_fn).fit()
