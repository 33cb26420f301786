"""Checkers for notebook 03 (UNet blocks).

Exercise: write the sinusoidal timestep embedding (Vaswani et al. 2017, sec. 3.5, as used by Ho et
al. 2020)::

    h = dim // 2,   w_i = 10000 ** (-i / h)  for i = 0 .. h-1
    emb(t) = [sin(t w_0), ..., sin(t w_{h-1}), cos(t w_0), ..., cos(t w_{h-1})]     # (B, dim)

The checker compares with that formula written out here, and recognises the usual slips (cos
first, interleaved sin/cos, ``i/(h-1)`` or ``i/dim`` in the exponent, a different base) to say which
one it is.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import ExerciseError, call_student, exercise, passed

_NAME = "timestep_embedding"


def _reference(t: torch.Tensor, dim: int, *, denom: float | None = None, base: float = 10000.0,
               order: str = "sin_cos") -> torch.Tensor:
    """The formula above; the keyword arguments produce the usual wrong variants for diagnosis."""
    half = dim // 2
    i = torch.arange(half, dtype=torch.float64)
    freqs = base ** (-i / (half if denom is None else denom))
    angles = t.to(torch.float64)[:, None] * freqs[None, :]
    s, c = torch.sin(angles), torch.cos(angles)
    if order == "sin_cos":
        return torch.cat([s, c], dim=1)
    if order == "cos_sin":
        return torch.cat([c, s], dim=1)
    return torch.stack([s, c], dim=2).reshape(len(t), dim)  # interleaved sin, cos, sin, cos, ...


def reference_timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """The formula above as a float32 (B, dim) tensor on ``t``'s device."""
    return _reference(t.cpu(), dim).to(device=t.device, dtype=torch.float32)


@exercise(reference=reference_timestep_embedding)
def check_timestep_embedding(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``fn(t, dim) -> (B, dim)`` float tensor (``t``: LongTensor ``(B,)``, ``dim`` even)."""
    t = torch.tensor([0, 1, 3, 10, 250, 999])
    for dim in (16, 6, 64):
        got = call_student(_NAME, fn, t.clone(), dim)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(f"{_NAME}: return a torch.Tensor, got {type(got).__name__}.")
        if tuple(got.shape) != (len(t), dim):
            raise ExerciseError(
                f"{_NAME}: for {len(t)} timesteps and dim={dim} the result must have shape ({len(t)}, {dim}), "
                f"got {tuple(got.shape)}. Use h = dim // 2 frequencies, and concatenate the h sines and the "
                "h cosines along dim=1."
            )
        if not got.is_floating_point():
            raise ExerciseError(f"{_NAME}: the result must be a float tensor (got {got.dtype}); convert t with t.float().")
        got64 = got.detach().to(torch.float64)
        if not torch.isfinite(got64).all():
            raise ExerciseError(f"{_NAME}: the result holds NaN or inf values.")
        expected = _reference(t, dim)
        if torch.allclose(got64, expected, atol=1e-4, rtol=1e-4):
            continue
        raise ExerciseError(_diagnose(got64, t, dim))
    passed("sinusoidal timestep embedding", "Every t gets a unique code, smooth in t, at many frequencies.")


def _diagnose(got: torch.Tensor, t: torch.Tensor, dim: int) -> str:
    half = dim // 2

    def close(variant: torch.Tensor) -> bool:
        return torch.allclose(got, variant, atol=1e-4, rtol=1e-4)

    hints = [
        (dict(order="cos_sin"), "you put the cosines first. Here the sines come first: torch.cat([sin, cos], dim=1) "
                                "(diffusers' flip_sin_to_cos=True gives your order; both work, but be consistent)."),
        (dict(order="interleaved"), "you interleaved sin and cos (sin, cos, sin, cos, ...) as in Vaswani et al.'s "
                                    "formula. Here the h sines come first, then the h cosines: torch.cat([sin, cos], dim=1)."),
        (dict(denom=half - 1 if half > 1 else 1), "your exponent is -i/(h-1), as in Ho et al.'s TensorFlow code: a fine "
                                                  "embedding too, but this exercise (and ddpm_lib, which the next cells compare "
                                                  "with) uses Vaswani et al.'s -i/h with h = dim // 2, i.e. 10000 ** (-2i/dim)."),
        (dict(denom=dim), "your exponent is -i/dim: with h = dim // 2 frequencies it must be -i/h (= -2i/dim), "
                          "otherwise the slowest frequency is only 10000^(-1/2)."),
        (dict(base=math.e), "your frequencies use base e (exp(-i/h)); use 10000 ** (-i/h), i.e. exp(-log(10000) * i / h)."),
    ]
    for kw, hint in hints:
        if close(_reference(t, dim, **kw)):
            return f"{_NAME}: {hint}"
    row1 = got[1]  # t = 1: sin(w_i) in the first half, cos(w_i) in the second
    if torch.allclose(got[0], _reference(t[:1], dim)[0], atol=1e-4):
        # right at t = 0 (all sin 0, all cos 1), so the layout is right and the frequencies are off
        freqs = torch.asin(row1[:half].clamp(-1, 1))
        expected = 10000.0 ** (-torch.arange(half, dtype=torch.float64) / half)
        return (f"{_NAME}: the layout is right (t = 0 gives sines 0 and cosines 1) but the frequencies are not: yours "
                f"look like {freqs[0]:.3g} ... {freqs[-1]:.3g}, expected w_i = 10000 ** (-i/h) from 1 down to "
                f"{expected[-1]:.3g}. Check the base (10000) and the exponent (-i/h, h = dim // 2).")
    return (f"{_NAME}: at t = 0 every sine should be 0 and every cosine 1, so row 0 should be h zeros then h ones; "
            "yours is not. Multiply t by the frequencies (t[:, None] * freqs[None, :]), then take sin and cos.")
