"""Export a ddpm_lib UNet to Hugging Face diffusers' ``UNet2DModel`` (same architecture, same weights).

- :func:`unet2d_config` gives the ``UNet2DModel`` keyword arguments that build the architecture of
  ``UNet(config)``: channels per level, residual blocks, attention placement and head size, GroupNorm
  groups, time embedding (sinusoidal, sin before cos, no frequency shift), dropout, AdaGN when
  ``conditioning="scale_shift"``, and the label embedding with its extra null class.
- :func:`to_diffusers_state_dict` renames a ddpm_lib UNet's weights to diffusers' names (and splits the
  fused q/k/v projection of each attention block into three).
- :func:`to_diffusers` does both: a ``UNet2DModel`` holding the weights of a ddpm_lib UNet.
- :func:`save_diffusers` / :func:`load_diffusers`: share a trained model as a diffusers ``DDPMPipeline``
  folder (the UNet and a ``DDPMScheduler`` with the same betas), and load such a folder back.

::

    from ddpm_lib.models.diffusers_compat import to_diffusers
    ref = to_diffusers(model).eval()       # model: a ddpm_lib.models.unet.UNet
    ref(x, t, class_labels=labels).sample  # == model(x, t, labels)

The tests and ``benchmarks/unet_throughput.py`` use it to check the UNet against an independent
implementation. diffusers is imported only inside the functions that need it (it is not a dependency of
ddpm_lib).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from ddpm_lib.diffusion.schedules import make_schedule
from ddpm_lib.models.unet import UNet, UNetConfig


def unet2d_config(config: UNetConfig) -> dict:
    """Keyword arguments of ``diffusers.UNet2DModel`` for the architecture of ``UNet(config)``.

    Raises ``ValueError`` for what UNet2DModel cannot express: attention blocks with different head
    sizes (it has one ``attention_head_dim``) or a time embedding that is not 4 x ``base_channels`` wide.
    """
    chans = [config.base_channels * m for m in config.channel_mults]
    attn = [r in config.attention_resolutions for r in config.resolutions]
    head_dims = {c // config.heads_for(c) for c, a in zip(chans + [chans[-1]], attn + [config.mid_attention]) if a}
    if len(head_dims) > 1:
        raise ValueError(f"diffusers uses one head size for every attention block; this config has head sizes {sorted(head_dims)}.")
    if config.time_embed_mult != 4:
        raise ValueError(f"diffusers' time embedding is 4 x base_channels wide; this config has time_embed_mult={config.time_embed_mult}.")
    return dict(
        sample_size=config.image_size, in_channels=config.in_channels, out_channels=config.out_channels,
        block_out_channels=tuple(chans), layers_per_block=config.num_res_blocks,
        down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
        up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
        attention_head_dim=head_dims.pop() if head_dims else None,
        norm_num_groups=config.num_groups, norm_eps=1e-5, dropout=config.dropout,
        attn_norm_num_groups=config.num_groups,  # its default drops the mid-block attention's GroupNorm under scale_shift
        flip_sin_to_cos=False, freq_shift=0, downsample_padding=1, add_attention=config.mid_attention,
        resnet_time_scale_shift="default" if config.conditioning == "add" else "scale_shift",
        num_class_embeds=None if config.num_classes is None else config.num_classes + 1,
    )


def _diffusers_names(key: str) -> list[str]:
    """UNet2DModel's name(s) for the ddpm_lib UNet weight ``key``: three (q, k, v) for a fused qkv projection."""
    k2 = key.replace("time_embed.fc1", "time_embedding.linear_1").replace("time_embed.fc2", "time_embedding.linear_2")
    k2 = k2.replace("class_embed.", "class_embedding.").replace("norm_out.", "conv_norm_out.")
    k2 = re.sub(r"^(down|up)\.(\d+)\.res\.", r"\1_blocks.\2.resnets.", k2)
    k2 = re.sub(r"^(down|up)\.(\d+)\.attn\.", r"\1_blocks.\2.attentions.", k2)
    k2 = re.sub(r"^down\.(\d+)\.resample\.", r"down_blocks.\1.downsamplers.0.", k2)
    k2 = re.sub(r"^up\.(\d+)\.resample\.", r"up_blocks.\1.upsamplers.0.", k2)
    k2 = k2.replace("mid_res1.", "mid_block.resnets.0.").replace("mid_res2.", "mid_block.resnets.1.")
    k2 = k2.replace("mid_attn.", "mid_block.attentions.0.")
    k2 = k2.replace(".emb_proj.", ".time_emb_proj.").replace(".skip.", ".conv_shortcut.")
    if "attentions" in k2:
        k2 = k2.replace(".norm.", ".group_norm.").replace(".proj_out.", ".to_out.0.")
        if ".qkv." in k2:
            return [k2.replace(".qkv.", f".to_{part}.") for part in "qkv"]
    return [k2]


def to_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ddpm_lib UNet state dict under UNet2DModel's names (the fused qkv projection split into q, k, v)."""
    out = {}
    for k, v in state_dict.items():
        names = _diffusers_names(k)
        for name, val in zip(names, v.chunk(len(names), dim=0)):
            out[name] = val
    return out


def from_diffusers_state_dict(state_dict: dict[str, torch.Tensor], keys) -> dict[str, torch.Tensor]:
    """The inverse of :func:`to_diffusers_state_dict`: UNet2DModel weights under the ddpm_lib names ``keys``
    (q, k, v joined into the fused projection). Raises ``KeyError`` naming a weight the state dict lacks."""
    out = {}
    for k in keys:
        names = _diffusers_names(k)
        missing = [n for n in names if n not in state_dict]
        if missing:
            raise KeyError(f"the diffusers weights lack {missing[0]} (for ddpm_lib's {k}): not this architecture")
        out[k] = torch.cat([state_dict[n] for n in names], dim=0) if len(names) > 1 else state_dict[names[0]]
    return out


def to_diffusers(model: nn.Module) -> nn.Module:
    """A ``diffusers.UNet2DModel`` (on the CPU) with the architecture and weights of the ddpm_lib UNet ``model``."""
    from diffusers import UNet2DModel  # diffusers is a test-only oracle, not a dependency

    ref = UNet2DModel(**unet2d_config(model.config))
    ref.load_state_dict(to_diffusers_state_dict(model.state_dict()))  # strict: every weight has a place
    return ref


# ---------------------------------------------------------------------------------------------------
# Sharing a model the way Hugging Face users expect: a DDPMPipeline folder

DIFFUSERS_PREDICTION = {"epsilon": "epsilon", "x0": "sample", "v": "v_prediction"}  # ddpm_lib -> DDPMScheduler
EXPORT_INFO = "ddpm_lib.json"


def save_diffusers(model: nn.Module, schedule, folder: str | Path, prediction_type: str = "epsilon") -> Path:
    """Write ``model`` (a ddpm_lib UNet) and its noise ``schedule`` as a diffusers ``DDPMPipeline`` folder.

    The folder holds ``unet/`` (a ``UNet2DModel`` with the same weights, :func:`to_diffusers`),
    ``scheduler/`` (a ``DDPMScheduler`` with the schedule's exact betas as ``trained_betas``, Ho et al.'s
    posterior variance ``fixed_small``, ``x0`` clipping, and the model's prediction type),
    ``model_index.json`` and ``ddpm_lib.json`` (the UNet config and schedule, for :func:`load_diffusers`).
    ``DDPMPipeline.from_pretrained(folder)`` loads it in diffusers; the folder can be pushed to the
    Hugging Face Hub as it is. Needs the ``diffusers`` package (``pip install diffusers``).
    """
    import safetensors.torch  # noqa: F401  diffusers <= 0.32 calls safetensors.torch.save_file without importing it
    from diffusers import (  # optional (test-oracle extra), only to export
        DDPMPipeline,
        DDPMScheduler,
    )

    if prediction_type not in DIFFUSERS_PREDICTION:
        raise ValueError(f"prediction_type {prediction_type!r}: use one of {sorted(DIFFUSERS_PREDICTION)}.")
    folder = Path(folder)
    scheduler = DDPMScheduler(num_train_timesteps=schedule.num_timesteps,
                              trained_betas=schedule.betas.detach().float().cpu().tolist(),
                              variance_type="fixed_small", clip_sample=True, clip_sample_range=1.0,
                              prediction_type=DIFFUSERS_PREDICTION[prediction_type])
    DDPMPipeline(unet=to_diffusers(model), scheduler=scheduler).save_pretrained(folder)
    info = {"format": "ddpm_lib diffusers export 1", "model_config": model.config.to_dict(),
            "schedule": {"name": schedule.name, "num_timesteps": schedule.num_timesteps},
            "prediction_type": prediction_type}
    (folder / EXPORT_INFO).write_text(json.dumps(info, indent=1) + "\n", encoding="utf-8")
    return folder


def load_diffusers(folder: str | Path, device: str | torch.device | None = None):
    """``(model, schedule, prediction_type)`` from a folder :func:`save_diffusers` wrote: a ddpm_lib UNet with
    the ``unet/`` weights (read by diffusers' ``UNet2DModel.from_pretrained``), in eval mode on ``device``
    (default: CPU). The schedule is rebuilt by name and checked against the folder's ``trained_betas``."""
    from diffusers import UNet2DModel  # optional (test-oracle extra), only to load an export

    folder = Path(folder)
    if not (folder / EXPORT_INFO).is_file():
        raise FileNotFoundError(f"{folder}: no {EXPORT_INFO}, so not a folder ddpm_lib's save_diffusers wrote.")
    info = json.loads((folder / EXPORT_INFO).read_text(encoding="utf-8"))
    config = UNetConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in info["model_config"].items()})
    model = UNet(config)
    ref = UNet2DModel.from_pretrained(folder / "unet", low_cpu_mem_usage=False)
    model.load_state_dict(from_diffusers_state_dict(ref.state_dict(), model.state_dict().keys()))
    schedule = make_schedule(info["schedule"]["name"], int(info["schedule"]["num_timesteps"]))
    betas = json.loads((folder / "scheduler" / "scheduler_config.json").read_text())["trained_betas"]
    if len(betas) != schedule.num_timesteps or not torch.allclose(torch.tensor(betas), schedule.betas.float().cpu()):
        raise ValueError(f"{folder}: the scheduler's betas are not those of the {info['schedule']['name']} schedule "
                         f"with {schedule.num_timesteps} steps that {EXPORT_INFO} names.")
    device = torch.device(device) if device is not None else torch.device("cpu")
    return model.to(device).eval(), schedule.to(device), info["prediction_type"]
