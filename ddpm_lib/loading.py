"""Rebuilding a model from a run's checkpoint, its payload, or the starter weights (``"pretrained:NAME"``,
:mod:`ddpm_lib.pretrained`): :func:`load_model` reads the file once and returns the model, its schedule,
its training config and the step it was saved at.

    from ddpm_lib.loading import load_model
    model, schedule, cfg, step = load_model("pretrained:fashion_mnist")

It sits above training (it needs :class:`~ddpm_lib.training.config.TrainConfig` to read what a run was
trained with) and below evaluation and the course, which load models through it.
"""

from __future__ import annotations

import os
import warnings
from typing import NamedTuple

import torch

from ddpm_lib import settings as settings_mod
from ddpm_lib.diffusion.schedules import NoiseSchedule, make_schedule
from ddpm_lib.models.unet import UNet, UNetConfig
from ddpm_lib.training.checkpoint import check_finite, load_model_weights, read_payload
from ddpm_lib.training.config import START_ACTIONS, TrainConfig


class LoadedModel(NamedTuple):
    """What :func:`load_model` returns: unpack it as ``model, schedule, config, step``."""

    model: torch.nn.Module
    schedule: NoiseSchedule
    config: TrainConfig
    step: int  # the optimizer step the checkpoint was saved at


def load_model(source: str | os.PathLike | dict, use_ema: bool = True,
               device: str | torch.device | None = None) -> LoadedModel:
    """Rebuild the model of a Trainer checkpoint (full or slim), its payload dict, or ``"pretrained:NAME"``
    (the starter weights of :mod:`ddpm_lib.pretrained`), reading the file once.

    ``use_ema=True`` loads the averaged weights (what you want for sampling; a slim checkpoint has only
    those, stored in fp16 and copied into the fp32 model). Non-finite weights are refused. The model is
    returned in eval mode on ``device`` (default: ``settings.device``), with its schedule, its
    :class:`~ddpm_lib.training.config.TrainConfig` and its step.
    """
    payload, where = read_payload(source)
    if payload.get("model_config") is None:
        raise ValueError(f"{where} holds no model_config: it was not written by ddpm_lib's Trainer.")
    try:
        mcfg = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in payload["model_config"].items()})
    except TypeError as e:
        raise ValueError(f"{where}: its model_config does not describe a ddpm_lib UNet ({e}).") from None
    model = UNet(mcfg)
    load_model_weights(model, payload, use_ema=use_ema, source=where)
    check_finite(model.state_dict(), where)
    sched = payload.get("schedule") or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fields of another ddpm_lib version
        stored = {k: v for k, v in (payload.get("train_config") or {}).items() if k not in START_ACTIONS}
        cfg = TrainConfig.from_dict(stored, strict=False)  # an older run may hold resume/overwrite: not the run's
    schedule = make_schedule(sched.get("name", cfg.schedule), int(sched.get("num_timesteps", cfg.num_timesteps)))
    device = torch.device(device) if device is not None else settings_mod.settings.device
    return LoadedModel(model.to(device).eval(), schedule.to(device), cfg, int(payload.get("step", 0)))
