"""Telling the network which timestep it is denoising: sinusoidal features followed by a small MLP.

The UNet is shared by all timesteps ``t = 0 .. T-1``; it learns a different denoiser for each one
only because ``t`` is an input. Ho et al. (2020, appendix B) feed ``t`` in through "the Transformer
sinusoidal position embedding" of Vaswani et al. (2017, sec. 3.5)::

    PE(t, 2i)   = sin(t / max_period^(2i/d))
    PE(t, 2i+1) = cos(t / max_period^(2i/d)),      i = 0 .. d/2 - 1

Convention used here (and checked against ``diffusers`` in the tests):

- **sin first, then cos, concatenated** (not interleaved): ``[sin(t w_0) .. sin(t w_{h-1}),
  cos(t w_0) .. cos(t w_{h-1})]`` with ``h = dim // 2``. Interleaving is only a fixed permutation
  of the features, which the following linear layer absorbs, so both orders are equally good; we
  keep Ho et al.'s official (TensorFlow) order.
- **frequencies** ``w_i = max_period^(-i/h)`` - exactly Vaswani's ``10000^(-2i/d)``, from 1 down to
  (just above) ``1/max_period``. Ho et al.'s code divides by ``h - 1`` instead of ``h`` so that the
  last frequency is exactly ``1/max_period``; the difference is immaterial for learning.
- an odd ``dim`` gets one zero column at the end.

In ``diffusers.models.embeddings.get_timestep_embedding(t, dim, flip_sin_to_cos, downscale_freq_shift,
scale, max_period)`` the frequencies are ``exp(-log(max_period) * i / (h - downscale_freq_shift))``
and ``flip_sin_to_cos=True`` swaps the halves to give ``[cos, sin]``. So our embedding equals
``get_timestep_embedding(t, dim, flip_sin_to_cos=False, downscale_freq_shift=0)``; Ho et al.'s code
corresponds to ``downscale_freq_shift=1``; diffusers' ``UNet2DModel`` and Nichol & Dhariwal's
guided-diffusion use ``flip_sin_to_cos=True, downscale_freq_shift=0`` (cos first).
"""

from __future__ import annotations

import math

import torch
from torch import nn


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal features of the timesteps ``t`` (shape ``(B,)``), returned as float32 ``(B, dim)``.

    ``out[:, i] = sin(t * w_i)`` and ``out[:, h + i] = cos(t * w_i)`` with ``h = dim // 2`` and
    ``w_i = max_period ** (-i / h)`` (Vaswani et al. 2017, sec. 3.5; see the module docstring).
    ``t`` may be integer or float (fractional timesteps are fine).
    """
    if dim < 2:
        raise ValueError(f"timestep_embedding: dim must be at least 2 (one sin and one cos), got {dim}.")
    if t.ndim != 1:
        raise ValueError(f"timestep_embedding: t must have shape (B,), got {tuple(t.shape)}; use t.reshape(-1).")
    half = dim // 2
    exponents = torch.arange(half, device=t.device, dtype=torch.float32) / half
    freqs = torch.exp(-math.log(max_period) * exponents)  # w_i = max_period^(-i/h)
    angles = t.to(torch.float32)[:, None] * freqs[None, :]  # (B, h)
    emb = torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)
    if dim % 2 == 1:
        emb = nn.functional.pad(emb, (0, 1))
    return emb


class TimestepEmbedding(nn.Module):
    """``t -> Linear(SiLU(Linear(sinusoids(t))))``: the MLP of Ho et al.'s UNet (``temb`` in their code).

    ``base_dim`` sinusoidal features (the UNet's base channel count) are lifted to ``emb_dim``
    (4 x base channels in Ho et al.). Every residual block then applies its own ``SiLU + Linear`` to
    this vector, so no activation is applied after the last layer here.
    """

    def __init__(self, base_dim: int, emb_dim: int, max_period: float = 10000.0):
        super().__init__()
        self.base_dim = base_dim
        self.max_period = max_period
        self.fc1 = nn.Linear(base_dim, emb_dim)
        self.act = nn.SiLU()
        self.fc2 = nn.Linear(emb_dim, emb_dim)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        emb = timestep_embedding(t, self.base_dim, self.max_period)
        emb = emb.to(self.fc1.weight.dtype)  # float32 sinusoids; match a model cast to bf16/fp16
        return self.fc2(self.act(self.fc1(emb)))
