"""Export a ddpm_lib UNet to Hugging Face diffusers' ``UNet2DModel`` (same architecture, same weights).

- :func:`unet2d_config` gives the ``UNet2DModel`` keyword arguments that build the architecture of
  ``UNet(config)``: channels per level, residual blocks, attention placement and head size, GroupNorm
  groups, time embedding (sinusoidal, sin before cos, no frequency shift), dropout, AdaGN when
  ``conditioning="scale_shift"``, and the label embedding with its extra null class.
- :func:`to_diffusers_state_dict` renames a ddpm_lib UNet's weights to diffusers' names (and splits the
  fused q/k/v projection of each attention block into three).
- :func:`to_diffusers` does both: a ``UNet2DModel`` holding the weights of a ddpm_lib UNet.

::

    from ddpm_lib.models.diffusers_compat import to_diffusers
    ref = to_diffusers(model).eval()       # model: a ddpm_lib.models.unet.UNet
    ref(x, t, class_labels=labels).sample  # == model(x, t, labels)

The tests and ``benchmarks/unet_throughput.py`` use it to check the UNet against an independent
implementation. diffusers is imported only inside :func:`to_diffusers` (it is not a dependency of
ddpm_lib).
"""

from __future__ import annotations

import re

import torch
from torch import nn

from ddpm_lib.models.unet import UNetConfig


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


def to_diffusers_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A ddpm_lib UNet state dict under UNet2DModel's names (the fused qkv projection split into q, k, v)."""
    out = {}
    for k, v in state_dict.items():
        k2 = k.replace("time_embed.fc1", "time_embedding.linear_1").replace("time_embed.fc2", "time_embedding.linear_2")
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
                for part, val in zip("qkv", v.chunk(3, dim=0)):
                    out[k2.replace(".qkv.", f".to_{part}.")] = val
                continue
        out[k2] = v
    return out


def to_diffusers(model: nn.Module) -> nn.Module:
    """A ``diffusers.UNet2DModel`` (on the CPU) with the architecture and weights of the ddpm_lib UNet ``model``."""
    from diffusers import UNet2DModel  # diffusers is a test-only oracle, not a dependency

    ref = UNet2DModel(**unet2d_config(model.config))
    ref.load_state_dict(to_diffusers_state_dict(model.state_dict()))  # strict: every weight has a place
    return ref
