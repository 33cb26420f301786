"""The UNet's building blocks: residual block, self-attention, down- and upsampling.

Each block follows Ho et al. (2020)'s official implementation (a PixelCNN++-style Wide-ResNet
UNet), with the additions of Dhariwal & Nichol (2021): multi-head attention and the option of
scale-shift ("AdaGN") conditioning.

All blocks keep the spatial layout ``(B, C, H, W)`` and work unchanged with ``channels_last``
tensors, bf16 autocast and ``torch.compile(fullgraph=True)`` (their ``forward`` has no
data-dependent Python branches).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

CONDITIONING_MODES = ("add", "scale_shift")


def zero_init(module: nn.Module) -> nn.Module:
    """Set a layer's weight and bias to zero, so the residual branch it ends starts as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block with timestep (and class) conditioning.

    ::

        h = Conv3x3(SiLU(GroupNorm(x)))
        e = Linear(SiLU(emb))                          # emb: time (+ class) embedding, (B, E)
        "add"         : h = SiLU(GroupNorm(h + e))                       (Ho et al. 2020)
        "scale_shift" : h = SiLU(GroupNorm(h) * (1 + s) + b), (s, b) = e (Dhariwal & Nichol 2021, sec. 3, "AdaGN")
        h = Conv3x3(Dropout(h))                       # zero-initialised: the block starts as the identity
        out = skip(x) + h                             # skip: 1x1 conv when the channel count changes

    ``e`` is broadcast over the pixels, so every position is told the same ``t``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        dropout: float = 0.0,
        conditioning: str = "add",
        num_groups: int = 32,
    ):
        super().__init__()
        if conditioning not in CONDITIONING_MODES:
            raise ValueError(f"conditioning={conditioning!r} is unknown: use one of {CONDITIONING_MODES}.")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.scale_shift = conditioning == "scale_shift"
        self.norm1 = nn.GroupNorm(num_groups, in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * out_channels if self.scale_shift else out_channels)
        self.norm2 = nn.GroupNorm(num_groups, out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        e = self.emb_proj(F.silu(emb))[:, :, None, None]
        if self.scale_shift:  # fixed at construction: no graph break under torch.compile
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        else:
            h = self.norm2(h + e)
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over the pixels, with a residual connection.

    Every pixel is a token with ``C`` features. With ``q, k, v = W_qkv GroupNorm(x)`` split into
    heads of ``d = C / heads`` channels, each head computes ``softmax(q k^T / sqrt(d)) v`` (Vaswani
    et al. 2017, eq. 1) with ``torch.nn.functional.scaled_dot_product_attention``; the heads are
    concatenated and mixed by ``W_out``, which is zero-initialised so the block starts as the
    identity. Ho et al. use one head (``d = C``); Dhariwal & Nichol (2021) use several.

    ``qkv`` is a single ``Linear(C, 3C)`` whose outputs are ordered ``[q | k | v]``, each in
    ``heads`` consecutive groups of ``d`` channels.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_groups: int = 32):
        super().__init__()
        if num_heads < 1 or channels % num_heads != 0:
            raise ValueError(
                f"num_heads={num_heads} must be a positive divisor of the channel count {channels}."
            )
        self.channels = channels
        self.num_heads = num_heads
        self.norm = nn.GroupNorm(num_groups, channels)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.proj_out = zero_init(nn.Linear(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, hgt, wid = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        qkv = self.qkv(tokens).reshape(b, hgt * wid, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, heads, HW, d)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        out = self.proj_out(out.transpose(1, 2).reshape(b, hgt * wid, c))  # (B, HW, C)
        return x + out.transpose(1, 2).reshape(b, c, hgt, wid)


class Downsample(nn.Module):
    """Halve the resolution with a 3x3 convolution of stride 2 (Ho et al.'s ``resamp_with_conv``)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour upsampling, then a 3x3 convolution to smooth it."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
