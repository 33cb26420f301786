"""Train a diffusion model: the loop of Ho et al. 2020 (Algorithm 1) plus the practical parts.

One optimizer step::

    x0 ~ data, t ~ U{0..T-1}, eps ~ N(0, I)        (ddpm_lib.losses.training_loss)
    loss = || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2
    loss.backward(); clip the gradient norm; AdamW step; update the EMA of the weights

and around it: linear learning-rate warm-up then cosine decay (Loshchilov & Hutter 2017), gradient
accumulation, mixed precision (bf16 autocast on CUDA, or fp16 with a GradScaler; the forward process
stays fp32), an EMA of the weights used for sampling (ddpm_lib.ema), ``channels_last`` and
``torch.compile`` switches, sample grids from the EMA model, early stopping on a loss plateau,
a progress bar, ``metrics.csv`` (column ``loss`` and friends), TensorBoard when installed, and
crash-safe checkpoints ``latest.pt`` / ``best.pt`` / ``final.pt`` that ``resume=True`` continues from
exactly (on a CPU, a run of 2N steps and a run of N steps resumed for N more end with identical
weights: the data order is a function of (seed, epoch) and every RNG state is saved).

    from ddpm_lib.trainer import TrainConfig, Trainer
    cfg = TrainConfig(dataset="fashion_mnist", preset="fashion_mnist", steps=20_000, out_dir="runs/fmnist")
    result = Trainer(cfg).fit()

The same from a shell: ``python -m ddpm_lib train --preset fashion_mnist --out runs/fmnist --steps 20000``.

The configuration lives in :mod:`ddpm_lib.train_config`, the ``metrics.csv`` helpers in
:mod:`ddpm_lib.monitor` and the checkpoint and RNG-state helpers in :mod:`ddpm_lib.checkpoint`; their
public names are re-exported here.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ddpm_lib import distributed as dist_utils
from ddpm_lib.checkpoint import (
    FORMAT,
    check_config_matches,
    get_rng_state,
    load_checkpoint,
    model_config_dict,
    save_checkpoint,
    set_rng_state,
)
from ddpm_lib.ema import EMA, unwrap_model
from ddpm_lib.losses import training_loss
from ddpm_lib.monitor import (
    METRIC_COLUMNS,
    LiveLossPlot,
    append_metrics,
    plot_metrics,
    read_metrics,
    truncate_metrics,
)
from ddpm_lib.schedules import make_schedule
from ddpm_lib.train_config import (
    LR_DECAYS,
    MIXED_PRECISION,
    TrainConfig,
    lr_curve,
    lr_factor,
    parse_field_value,
    resolve_mixed_precision,
)

# The Trainer's companions, importable from here too (``from ddpm_lib.trainer import TrainConfig``).
__all__ = [
    "LR_DECAYS", "METRIC_COLUMNS", "MIXED_PRECISION", "LiveLossPlot", "NonFiniteLossError", "TrainConfig",
    "Trainer", "get_rng_state", "lr_curve", "lr_factor", "parse_field_value", "plot_metrics", "read_metrics",
    "set_rng_state", "train",
]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss; the last good checkpoint is kept."""


# ---------------------------------------------------------------------------------------------------
# the trainer


def _default_device(config: TrainConfig) -> torch.device:
    if config.device is not None:
        return torch.device(config.device)
    from ddpm_lib.settings import settings

    return settings.device


class Trainer:
    """Runs a :class:`TrainConfig`. ``model`` and ``dataset`` may be given instead of being built from the config.

    After :meth:`fit`, ``trainer.model`` holds the raw weights, ``trainer.ema`` the averaged ones
    (``trainer.ema_model()`` gives a model holding them), ``trainer.run_dir`` the run folder.
    """

    def __init__(self, config: TrainConfig, model: nn.Module | None = None, dataset=None, callbacks=None):
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}.")
        self.config = config.validate()
        cfg = config
        self.dist = dist_utils.init_distributed(_default_device(cfg))
        self.device = dist_utils.device_for(self.dist, _default_device(cfg))
        self.precision = resolve_mixed_precision(cfg.mixed_precision, self.device)  # "auto" -> "bf16" or "no"
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("TrainConfig.mixed_precision='fp16' needs a CUDA GPU (it uses a GradScaler): use 'bf16' or 'no'.")
        world = self.dist.world_size
        if cfg.batch_size % (cfg.grad_accum * world):
            raise ValueError(
                f"TrainConfig.batch_size={cfg.batch_size} must be divisible by grad_accum * processes = "
                f"{cfg.grad_accum} * {world}."
            )
        self.micro_batch = cfg.batch_size // (cfg.grad_accum * world)
        self.run_dir = Path(cfg.out_dir).expanduser()
        self.callbacks = list(callbacks or [])

        from ddpm_lib.settings import seed_everything

        seed_everything(cfg.seed)
        self.dataset = dataset if dataset is not None else self._load_dataset()
        first = self.dataset[0]
        x_shape = tuple((first[0] if isinstance(first, (tuple, list)) else first).shape)
        self.data_shape = x_shape
        self.raw_model = (model if model is not None else self._build_model()).to(self.device)
        self._check_model_fits_data()
        if cfg.channels_last:
            self.raw_model = self.raw_model.to(memory_format=torch.channels_last)
        self.schedule = make_schedule(cfg.schedule, cfg.num_timesteps).to(self.device)
        self.ema = EMA(self.raw_model, decay=cfg.ema_decay, warmup=cfg.ema_warmup)
        self.optimizer = torch.optim.AdamW(self.raw_model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer,
            lambda s: lr_factor(s, cfg.warmup_steps, cfg.steps, cfg.lr_decay, cfg.min_lr_ratio),
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        self.model = self.raw_model
        if self.dist.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DDP(self.raw_model, device_ids=ids)
        if cfg.compile:
            self.model = torch.compile(self.model)
        if self.dist.rank > 0:  # different noise in each process; data order is shared via the sampler
            torch.manual_seed(cfg.seed + 100_003 * self.dist.rank)

        # progress state (all saved in checkpoints)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0
        self.smoothed = 0.0
        self.smoothed_n = 0
        self.best_loss = math.inf
        self.es_best = math.inf
        self.es_best_step = 0
        self._ema_model = None
        self._tb = None
        self._resumed_from = None

    # ---- construction helpers --------------------------------------------------------------------
    def _load_dataset(self):
        from ddpm_lib.data import load_dataset
        from ddpm_lib.unet import PRESETS

        cfg = self.config
        size = int(cfg.unet.get("image_size", PRESETS[cfg.preset].image_size))
        return load_dataset(cfg.dataset, train=True, image_size=size, root=cfg.data_root, hflip=cfg.hflip,
                            max_items=cfg.max_items)

    def _num_classes(self) -> int:
        ds = self.dataset
        info = getattr(ds, "info", None)
        if info is not None and getattr(info, "num_classes", None):
            return int(info.num_classes)
        from ddpm_lib.data import dataset_info

        return int(dataset_info(self.config.dataset).num_classes)

    def _build_model(self) -> nn.Module:
        from ddpm_lib.unet import UNet

        overrides = dict(self.config.unet)
        for k, v in list(overrides.items()):
            if isinstance(v, list):
                overrides[k] = tuple(v)
        if self.config.class_conditional and "num_classes" not in overrides:
            overrides["num_classes"] = self._num_classes()
        return UNet.from_preset(self.config.preset, **overrides)

    def _check_model_fits_data(self) -> None:
        cfg = getattr(self.raw_model, "config", None)
        c, h, w = self.data_shape
        if cfg is not None and hasattr(cfg, "in_channels"):
            if cfg.in_channels != c or cfg.image_size != h:
                raise ValueError(
                    f"the model expects {cfg.in_channels}x{cfg.image_size}x{cfg.image_size} images but the dataset "
                    f"{self.config.dataset!r} gives {c}x{h}x{w}: pick a matching preset (fashion_mnist/tiny for 1 channel, "
                    "cifar10_ddpm for 3) or set unet={'in_channels': ..., 'image_size': ...}."
                )
        if self.config.class_conditional and getattr(self.raw_model, "null_class", None) is None:
            raise ValueError("TrainConfig.class_conditional=True but the model is unconditional (num_classes=None).")

    # ---- data order: a function of (seed, epoch), split between processes ---------------------------
    def _epoch_batches(self, epoch: int) -> list[list[int]]:
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(self.dataset, num_replicas=self.dist.world_size, rank=self.dist.rank,
                                     shuffle=True, seed=self.config.seed, drop_last=True)
        sampler.set_epoch(epoch)
        idx = list(sampler)
        n = len(idx) // self.micro_batch
        if n == 0:
            raise ValueError(
                f"the dataset has {len(self.dataset)} images, fewer than one batch of {self.micro_batch} per process: "
                "lower TrainConfig.batch_size or use more images (max_items)."
            )
        return [idx[i * self.micro_batch:(i + 1) * self.micro_batch] for i in range(n)]

    def _batches(self):
        """Yield (x, labels) forever, continuing from (self.epoch, self.batch_in_epoch)."""
        from torch.utils.data import DataLoader

        while True:
            batches = self._epoch_batches(self.epoch)[self.batch_in_epoch:]
            loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.config.num_workers,
                                pin_memory=self.device.type == "cuda",
                                generator=torch.Generator().manual_seed(self.config.seed + self.epoch))
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def _to_device(self, batch):
        if isinstance(batch, (list, tuple)):
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            x, y = batch, None
        x = x.to(self.device, non_blocking=True).float()
        if self.config.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        labels = None
        if self.config.class_conditional:
            labels = torch.as_tensor(y).to(self.device, non_blocking=True).long()
        return x, labels

    # ---- checkpoints --------------------------------------------------------------------------------
    def state_payload(self) -> dict:
        """Everything needed to resume, as plain dicts/tensors (loadable with weights_only=True)."""
        return {
            "format": FORMAT,
            "step": self.step,
            "model": {k: v.detach().cpu() for k, v in self.raw_model.state_dict().items()},
            "ema": {**self.ema.state_dict(), "shadow": {k: v.cpu() for k, v in self.ema.shadow.items()}},
            "optimizer": self.optimizer.state_dict(),
            "lr_scheduler": self.lr_scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": get_rng_state(self.device),
            "data": {"epoch": self.epoch, "batch_in_epoch": self.batch_in_epoch, "seed": self.config.seed},
            "trainer": {"smoothed": self.smoothed, "smoothed_n": self.smoothed_n, "best_loss": self.best_loss,
                        "es_best": self.es_best, "es_best_step": self.es_best_step},
            "train_config": self.config.to_dict(),
            "model_config": model_config_dict(self.raw_model),
            "schedule": {"name": self.config.schedule, "num_timesteps": self.config.num_timesteps},
            "world_size": self.dist.world_size,
            "torch_version": str(torch.__version__),
        }

    def save(self, name: str) -> Path | None:
        """Write ``run_dir/<name>.pt`` atomically (rank 0 only)."""
        if not self.dist.is_main:
            return None
        return save_checkpoint(self.run_dir / f"{name}.pt", self.state_payload())

    def load_state(self, payload: dict) -> None:
        """Restore a payload written by :meth:`state_payload` (the model config must match)."""
        saved_cfg = payload.get("model_config")
        current = model_config_dict(self.raw_model)
        if saved_cfg is not None and current is not None:
            check_config_matches(saved_cfg, current)
        self.raw_model.load_state_dict(payload["model"])
        self.ema.load_state_dict(payload["ema"])
        self.ema.to(self.device)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.lr_scheduler.load_state_dict(payload["lr_scheduler"])
        if payload.get("scaler"):
            self.scaler.load_state_dict(payload["scaler"])
        self.step = int(payload["step"])
        self.epoch = int(payload["data"]["epoch"])
        self.batch_in_epoch = int(payload["data"]["batch_in_epoch"])
        tr = payload["trainer"]
        self.smoothed, self.smoothed_n = float(tr["smoothed"]), int(tr["smoothed_n"])
        self.best_loss, self.es_best, self.es_best_step = float(tr["best_loss"]), float(tr["es_best"]), int(tr["es_best_step"])
        if self.dist.is_main or not self.dist.enabled:
            set_rng_state(payload["rng"], self.device)
        else:  # other ranks: a fresh, rank- and step-dependent stream
            torch.manual_seed(self.config.seed + 100_003 * self.dist.rank + self.step)

    def _prepare_run_dir(self) -> None:
        cfg = self.config
        latest = self.run_dir / "latest.pt"
        if cfg.resume and latest.is_file():
            payload = load_checkpoint(latest, map_location="cpu")
            old = payload.get("train_config", {})
            changed = [k for k in old if k in cfg.to_dict() and old[k] != cfg.to_dict()[k]
                       and k not in ("resume", "overwrite", "steps", "progress", "out_dir", "num_workers", "sample_every",
                                     "checkpoint_every", "log_every", "tensorboard", "device", "num_samples", "sample_steps", "sampler")]
            if changed and self.dist.is_main:
                warnings.warn(f"resuming {latest} with changed settings: {', '.join(changed)}", stacklevel=3)
            self.load_state(payload)
            self._resumed_from = latest
            if self.dist.is_main:
                truncate_metrics(self.run_dir, self.step)
            return
        if cfg.resume and self.dist.is_main:
            print(f"resume=True but {latest} does not exist yet: starting a new run.")
        if latest.is_file() and not cfg.overwrite and not cfg.resume:
            raise ValueError(
                f"TrainConfig.out_dir={cfg.out_dir!r} already holds a run ({latest.name}): pass resume=True to "
                "continue it, overwrite=True to start it again, or choose another out_dir."
            )
        if self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for name in ("latest.pt", "best.pt", "final.pt", "metrics.csv"):
                (self.run_dir / name).unlink(missing_ok=True)

    # ---- sampling -----------------------------------------------------------------------------------
    def ema_model(self) -> nn.Module:
        """A copy of the model holding the EMA weights (kept and refreshed; in eval mode)."""
        if self._ema_model is None:
            import copy

            self._ema_model = copy.deepcopy(unwrap_model(self.raw_model))
        self.ema.copy_to(self._ema_model)
        return self._ema_model.eval()

    def sample_grid(self, path: Path | None = None, num: int | None = None) -> torch.Tensor:
        """Samples from the EMA model with a fixed generator (same noise at every call); saves a grid if ``path``."""
        from ddpm_lib.samplers import sample

        cfg = self.config
        n = num or cfg.num_samples
        model = self.ema_model()
        labels = None
        if getattr(model, "null_class", None) is not None:
            labels = torch.arange(n, device=self.device) % model.null_class
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # never disturb the training RNG streams
            x = sample(model, self.schedule, (n, *self.data_shape), sampler=cfg.sampler,
                       num_steps=None if cfg.sampler == "ddpm" else cfg.sample_steps,
                       generator=torch.Generator().manual_seed(cfg.seed), labels=labels,
                       prediction_type=cfg.prediction_type, progress=False, device=self.device)
        if path is not None:
            from ddpm_lib.viz import save_grid

            path.parent.mkdir(parents=True, exist_ok=True)
            save_grid(x.float().cpu(), path, nrow=int(math.ceil(math.sqrt(n))))
        return x

    # ---- the loop -----------------------------------------------------------------------------------
    def _autocast(self):
        mp = self.precision
        if mp == "no":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if mp == "bf16" else torch.float16)

    def _non_finite(self, what: str, value: float) -> NonFiniteLossError:
        latest = self.run_dir / "latest.pt"
        kept = f"The last good checkpoint is kept: {latest} (step {self._last_saved_step})." if latest.is_file() \
            else "No checkpoint had been saved yet."
        return NonFiniteLossError(
            f"training stopped at step {self.step + 1}: the {what} is {value} (not finite). {kept} "
            f"Hint: lower the learning rate (lr={self.config.lr:g}), keep grad_clip on, "
            f"or train in fp32 (mixed_precision='no', now {self.precision!r})."
        )

    def train_step(self, batches) -> tuple[float, float]:
        """One optimizer step over ``grad_accum`` micro-batches; returns (loss, grad norm)."""
        import contextlib

        cfg = self.config
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        total = torch.zeros((), device=self.device)
        for micro in range(cfg.grad_accum):
            x, labels = self._to_device(next(batches))
            sync_ctx = contextlib.nullcontext()
            if self.dist.enabled and micro < cfg.grad_accum - 1 and hasattr(self.model, "no_sync"):
                sync_ctx = self.model.no_sync()
            with sync_ctx:
                with self._autocast():
                    loss = training_loss(self.model, self.schedule, x, labels=labels, prediction_type=cfg.prediction_type,
                                         loss_type=cfg.loss_type, min_snr_gamma=cfg.min_snr_gamma,
                                         label_dropout=cfg.label_dropout)
                self.scaler.scale(loss / cfg.grad_accum).backward()
            total += loss.detach() / cfg.grad_accum
        total = dist_utils.all_reduce_mean(total, self.dist)
        loss_value = float(total)
        if not math.isfinite(loss_value):
            raise self._non_finite("loss", loss_value)
        self.scaler.unscale_(self.optimizer)
        params = [p for p in self.raw_model.parameters() if p.grad is not None]
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else float("inf")
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm))
        if not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            raise self._non_finite("gradient norm", grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.lr_scheduler.step()
        self.ema.update(self.raw_model)
        self.step += 1
        return loss_value, grad_norm

    def _update_smoothed(self, loss: float) -> float:
        b = self.config.loss_smoothing
        self.smoothed = b * self.smoothed + (1 - b) * loss
        self.smoothed_n += 1
        return self.smoothed / (1 - b**self.smoothed_n) if b > 0 else self.smoothed

    def _open_tensorboard(self):
        if not (self.config.tensorboard and self.dist.is_main):
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard not installed: CSV only
            return None
        return SummaryWriter(str(self.run_dir / "tb"), purge_step=self.step or None)

    def fit(self, max_steps: int | None = None) -> dict:
        """Train until ``config.steps`` (or stop early); returns a summary dict.

        ``max_steps`` stops after that many optimizer steps in total (as if the run were interrupted;
        ``latest.pt`` is written, ``final.pt`` is not): continue later with ``resume=True``.
        """
        from tqdm.auto import tqdm

        cfg = self.config
        self._prepare_run_dir()
        dist_utils.barrier(self.dist)
        main = self.dist.is_main
        if main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        self._last_saved_step = self.step if self._resumed_from else None
        self._tb = self._open_tensorboard()
        end = cfg.steps if max_steps is None else min(cfg.steps, max_steps)
        batches = self._batches()
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (cfg.progress and main), desc="training",
                   dynamic_ncols=True)
        interval_losses, interval_start, t0 = [], time.perf_counter(), time.perf_counter()
        interval_steps = 0
        stop_reason = "completed" if end == cfg.steps else "max_steps"
        smoothed = math.nan
        grad_norm = math.nan
        try:
            while self.step < end:
                loss, grad_norm = self.train_step(batches)
                smoothed = self._update_smoothed(loss)
                interval_losses.append(loss)
                interval_steps += 1
                bar.update(1)
                lr_now = self.optimizer.param_groups[0]["lr"]
                last = self.step == end
                if (cfg.log_every and self.step % cfg.log_every == 0) or last:
                    now = time.perf_counter()
                    ips = interval_steps * cfg.batch_size / max(now - interval_start, 1e-9)
                    row = {"step": self.step, "epoch": self.epoch, "loss": float(np.mean(interval_losses)),
                           "smoothed_loss": smoothed, "lr": lr_now, "grad_norm": grad_norm, "img_per_s": ips,
                           "elapsed_s": now - t0}
                    if main:
                        append_metrics(self.run_dir, [row])
                        bar.set_postfix(loss=f"{row['loss']:.4f}", lr=f"{lr_now:.2e}", img_s=f"{ips:.0f}")
                        if self._tb is not None:
                            for k in ("loss", "smoothed_loss", "lr", "grad_norm", "img_per_s"):
                                self._tb.add_scalar(f"train/{k}", row[k], self.step)
                        for cb in self.callbacks:
                            cb(self, row)
                    interval_losses, interval_steps, interval_start = [], 0, time.perf_counter()
                # early stopping on a plateau of the smoothed loss (after the warm-up)
                stop_early = False
                if cfg.early_stopping_patience is not None and self.step > cfg.warmup_steps:
                    if smoothed < self.es_best - cfg.early_stopping_min_delta:
                        self.es_best, self.es_best_step = smoothed, self.step
                    elif self.step - self.es_best_step >= cfg.early_stopping_patience:
                        stop_early = True
                if main and cfg.sample_every and (self.step % cfg.sample_every == 0 or last):
                    self._try_sample_grid(self.run_dir / "samples" / f"step_{self.step:07d}.png")
                if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or last or stop_early:
                    self._checkpoint(smoothed)
                if stop_early:
                    stop_reason = "early_stopping"
                    if main:
                        print(f"early stopping at step {self.step}: the smoothed loss has not improved by more than "
                              f"{cfg.early_stopping_min_delta} for {cfg.early_stopping_patience} steps "
                              f"(best {self.es_best:.4f} at step {self.es_best_step}).")
                    break
        finally:
            bar.close()
            if self._tb is not None:
                self._tb.close()
        if stop_reason != "max_steps":
            if main:
                self.save("final")
        summary = {"step": self.step, "stopped": stop_reason, "smoothed_loss": smoothed, "best_loss": self.best_loss,
                   "run_dir": str(self.run_dir)}
        if self.dist.enabled:
            summary["rank_weight_hashes"] = self._rank_weight_hashes()
        dist_utils.barrier(self.dist)
        return summary

    def _checkpoint(self, smoothed: float) -> None:
        self.save("latest")
        self._last_saved_step = self.step
        if smoothed < self.best_loss:
            self.best_loss = smoothed
            self.save("best")

    def _try_sample_grid(self, path: Path) -> None:
        try:
            self.sample_grid(path)
        except ImportError as e:  # samplers/viz missing in a stripped-down install
            warnings.warn(f"sample grid skipped: {e}", stacklevel=2)

    def _rank_weight_hashes(self) -> list[str]:
        """SHA-256 of the weights in every process (identical when DDP kept them in sync)."""
        import hashlib

        h = hashlib.sha256()
        for k, v in sorted(self.raw_model.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().cpu().contiguous().numpy().tobytes())
        hashes = dist_utils.all_gather_objects(h.hexdigest(), self.dist)
        if self.dist.is_main:
            (self.run_dir / "distributed.json").write_text(json.dumps(
                {"world_size": self.dist.world_size, "backend": self.dist.backend, "weight_sha256": hashes}, indent=2))
        return hashes


def train(config: TrainConfig, model: nn.Module | None = None, dataset=None, callbacks=None) -> dict:
    """``Trainer(config, model, dataset, callbacks).fit()``."""
    return Trainer(config, model=model, dataset=dataset, callbacks=callbacks).fit()
