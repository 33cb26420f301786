"""Checkers for notebook 03 (UNet blocks).

- ``check_timestep_embedding(fn)``: the sinusoidal timestep embedding (Vaswani et al. 2017, sec. 3.5, as
  used by Ho et al. 2020)::

      h = dim // 2,   w_i = 10000 ** (-i / h)  for i = 0 .. h-1
      emb(t) = [sin(t w_0), ..., sin(t w_{h-1}), cos(t w_0), ..., cos(t w_{h-1})]     # (B, dim)

  Ho et al.'s code divides by ``h - 1`` instead of ``h`` (``log(10000) / (half_dim - 1)``), so that the
  slowest frequency is exactly 1/10000: both conventions are accepted (the pass message says which one
  was used). The usual slips (cos first, interleaved sin/cos, ``i/dim``, a different base) are named.
- ``check_resblock_forward(fn)``: ``fn(block, x, emb)``, the forward pass of a timestep-conditioned residual
  block (Ho et al. 2020, appendix B; scale-shift: Dhariwal & Nichol 2021, sec. 3), given a module holding
  ``norm1, conv1, emb_proj, norm2, dropout, conv2, skip`` and ``scale_shift``.
- ``check_multihead_attention(fn)``: ``fn(q, k, v, num_heads)`` on tokens ``(B, N, C)``: split the channels
  into heads, softmax(q k^T / sqrt(d)) v per head (Vaswani et al. 2017, eqs. 1 and sec. 3.2.2), merge.

The references are written here (explicit loops over heads and samples, float64), independently of
:mod:`ddpm_lib.models.embeddings` and :mod:`ddpm_lib.models.blocks`.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lib.course.exercises import ExerciseError, call_student, check_tensor, exercise, passed

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
    """The formula above in float32 arithmetic, (B, dim) on ``t``'s device (what the notebook uses when not done).

    Computed in the same float32 steps as the notebook's solution (exponents i / h, then exp), so that a
    student copy compares with float32 code at float32 tolerances; at t ~ 1000 a float64 version differs
    from float32 code by ~4e-5, more than the notebook's 1e-5.
    """
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=t.device) / half
    angles = t.to(torch.float32)[:, None] * torch.exp(-math.log(10000.0) * exponents)[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


@exercise(reference=reference_timestep_embedding, library=('ddpm_lib.models.embeddings.timestep_embedding', 'ddpm_lib.models.embeddings.TimestepEmbedding'))
def check_timestep_embedding(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> None:
    """Check ``fn(t, dim) -> (B, dim)`` float tensor (``t``: LongTensor ``(B,)``, ``dim`` even)."""
    t = torch.tensor([0, 1, 3, 10, 250, 999])
    conventions = set()
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
            conventions.add("i/h")
            continue
        if torch.allclose(got64, _reference(t, dim, denom=dim // 2 - 1), atol=1e-4, rtol=1e-4):
            conventions.add("i/(h-1)")
            continue
        raise ExerciseError(_diagnose(got64, t, dim))
    note = ""
    if conventions == {"i/(h-1)"}:
        note = (" You used Ho et al.'s exponent i/(h-1) (their code's log(10000) / (half_dim - 1)); ddpm_lib and "
                "Vaswani et al. use i/h. Both give a unique, smooth code, and the MLP after it learns either.")
    elif len(conventions) > 1:
        raise ExerciseError(f"{_NAME}: your exponent switches between i/h and i/(h-1) depending on dim; pick one.")
    passed("sinusoidal timestep embedding", "Every t gets a unique code, smooth in t, at many frequencies." + note)


def _diagnose(got: torch.Tensor, t: torch.Tensor, dim: int) -> str:
    half = dim // 2

    def close(variant: torch.Tensor) -> bool:
        return torch.allclose(got, variant, atol=1e-4, rtol=1e-4)

    hints = [
        (dict(order="cos_sin"), "you put the cosines first. Here the sines come first: torch.cat([sin, cos], dim=1) "
                                "(diffusers' flip_sin_to_cos=True gives your order; both work, but be consistent)."),
        (dict(order="interleaved"), "you interleaved sin and cos (sin, cos, sin, cos, ...) as in Vaswani et al.'s "
                                    "formula. Here the h sines come first, then the h cosines: torch.cat([sin, cos], dim=1)."),
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


# --- the residual block's forward pass ----------------------------------------------------------------


class _Block(nn.Module):
    """The residual block's layers, named as in the notebook (norm1, conv1, emb_proj, norm2, dropout, conv2, skip)."""

    def __init__(self, cin: int, cout: int, emb_dim: int, scale_shift: bool, groups: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.scale_shift = scale_shift
        self.norm1 = nn.GroupNorm(groups, cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.emb_proj = nn.Linear(emb_dim, 2 * cout if scale_shift else cout)
        self.norm2 = nn.GroupNorm(groups, cout)
        self.dropout = nn.Dropout(0.0)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()
        with torch.no_grad():  # random weights everywhere (conv2 too), GroupNorm affine included
            for p in self.parameters():
                p.copy_(0.3 * torch.randn(p.shape, generator=g))


def _group_norm(x: torch.Tensor, norm: nn.GroupNorm) -> torch.Tensor:
    """GroupNorm written out: per sample and group, (x - mean) / sqrt(var + eps), then the per-channel affine."""
    b, c, h, w = x.shape
    xg = x.reshape(b, norm.num_groups, -1)
    mean = xg.mean(-1, keepdim=True)
    var = xg.var(-1, unbiased=False, keepdim=True)
    y = ((xg - mean) / torch.sqrt(var + norm.eps)).reshape(b, c, h, w)
    return y * norm.weight.double()[None, :, None, None] + norm.bias.double()[None, :, None, None]


def _conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    return F.conv2d(x, conv.weight.double(), conv.bias.double(), padding=conv.padding)


def _silu(x: torch.Tensor) -> torch.Tensor:
    return x * torch.sigmoid(x)


def _resblock_variant(block, x, emb, *, emb_silu=True, emb_after_norm=False, skip=True, silu_first=False,
                      one_plus_scale=True, swap_scale_shift=False) -> torch.Tensor:
    """The block in float64; the keywords produce the usual mistakes for diagnosis."""
    x, emb = x.double(), emb.double()
    act = (lambda t, n: _group_norm(_silu(t), n)) if silu_first else (lambda t, n: _silu(_group_norm(t, n)))
    h = _conv(act(x, block.norm1), block.conv1)
    e_in = _silu(emb) if emb_silu else emb
    e = (e_in @ block.emb_proj.weight.double().T + block.emb_proj.bias.double())[:, :, None, None]
    if block.scale_shift:
        scale, shift = e.chunk(2, dim=1)
        if swap_scale_shift:
            scale, shift = shift, scale
        h = _group_norm(h, block.norm2) * ((1 + scale) if one_plus_scale else scale) + shift
    elif emb_after_norm:
        h = _group_norm(h, block.norm2) + e
    else:
        h = _group_norm(h + e, block.norm2)
    h = _conv(_silu(h), block.conv2)
    if not skip:
        return h
    s = x if isinstance(block.skip, nn.Identity) else _conv(x, block.skip)
    return s + h


def reference_resblock_forward(block, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    """conv2(dropout(SiLU(GN2(conv1(SiLU(GN1(x))) + W SiLU(emb))))) + skip(x); scale-shift: GN2(h)(1 + s) + b.

    Written with nn.functional calls on the block's own layers (what the notebook uses when not done).
    """
    h = block.conv1(F.silu(block.norm1(x)))
    e = block.emb_proj(F.silu(emb))[:, :, None, None]
    if block.scale_shift:
        scale, shift = e.chunk(2, dim=1)
        h = block.norm2(h) * (1 + scale) + shift
    else:
        h = block.norm2(h + e)
    h = block.conv2(block.dropout(F.silu(h)))
    return block.skip(x) + h


_RESBLOCK_MISTAKES = [
    (dict(emb_silu=False), "the embedding goes through SiLU before its linear layer: emb_proj(F.silu(emb))."),
    (dict(emb_after_norm=True), "add the embedding BEFORE the second GroupNorm: h = norm2(h + e), not norm2(h) + e."),
    (dict(skip=False), "the skip connection is missing: return skip(x) + h (self.skip is a 1x1 convolution when the "
                       "channel count changes, the identity otherwise)."),
    (dict(silu_first=True), "normalise first, then activate: SiLU(GroupNorm(x)), not GroupNorm(SiLU(x))."),
    (dict(one_plus_scale=False), "scale-shift uses (1 + scale): h = norm2(h) * (1 + scale) + shift, so that a zero "
                                 "embedding projection leaves the features unchanged."),
    (dict(swap_scale_shift=True), "scale and shift are swapped: scale, shift = e.chunk(2, dim=1), scale first."),
]


def _resblock_cases():
    g = torch.Generator().manual_seed(31)
    cases = []
    for k, (cin, cout, scale_shift) in enumerate([(8, 8, False), (8, 16, False), (8, 16, True), (16, 8, True)]):
        block = _Block(cin, cout, emb_dim=12, scale_shift=scale_shift, groups=4, seed=100 + k).eval()
        x = torch.randn(3, cin, 5, 6, generator=g)
        emb = torch.randn(3, 12, generator=g)
        cases.append((f"{cin} -> {cout} channels, {'scale-shift' if scale_shift else 'additive'} conditioning",
                      block, x, emb))
    return cases


@exercise(reference=reference_resblock_forward, library=('ddpm_lib.models.blocks.ResBlock.forward',))
def check_resblock_forward(fn: Callable) -> None:
    """Check ``fn(block, x, emb) -> (B, C_out, H, W)`` against the block written out in float64."""
    name = "resblock_forward"
    for desc, block, x, emb in _resblock_cases():
        try:
            got = call_student(name, fn, block, x.clone(), emb.clone())
        except ExerciseError as e:
            extra = ""
            if "must match" in str(e) or "size of tensor" in str(e):
                extra = (" Hint: a shape mismatch. The embedding becomes one value per channel, (B, C, 1, 1): index "
                         "[:, :, None, None]; and the skip path must be self.skip(x) when the channel count changes.")
            raise ExerciseError(f"{e} ({desc}).{extra}") from e.__cause__
        expected = _resblock_variant(block, x, emb)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all() and not (
                torch.allclose(got.detach().double(), expected, atol=1e-4, rtol=1e-4)):
            for kw, hint in _RESBLOCK_MISTAKES:
                if kw.keys() & {"one_plus_scale", "swap_scale_shift"} and not block.scale_shift:
                    continue
                wrong = _resblock_variant(block, x, emb, **kw)
                if torch.allclose(got.detach().double(), wrong, atol=1e-4, rtol=1e-4):
                    raise ExerciseError(f"{name}: wrong values ({desc}). Hint: {hint}")
        check_tensor(f"{name} ({desc})", got, expected, atol=1e-4, rtol=1e-4,
                     hint="h = conv1(silu(norm1(x))); e = emb_proj(silu(emb))[:, :, None, None]; h = norm2(h + e) "
                          "(or norm2(h) * (1 + scale) + shift); h = conv2(dropout(silu(h))); return skip(x) + h.")
    passed(name, "GroupNorm, SiLU, conv; the timestep added per channel; zero-initialised conv2 makes it start as the identity.")


# --- multi-head attention ----------------------------------------------------------------------------


def _attention_variant(q, k, v, num_heads: int, *, scale: str = "d", softmax_dim: int = -1, split: str = "right",
                       merge: str = "right", qk_swapped: bool = False) -> torch.Tensor:
    """Multi-head attention on (B, N, C) tokens, a loop over samples and heads in float64; keywords give the mistakes."""
    b, n, c = q.shape
    d = c // num_heads
    q, k, v = q.double(), k.double(), v.double()

    def heads(t):  # (B, N, C) -> (B, heads, N, d)
        if split == "right":
            return t.reshape(b, n, num_heads, d).permute(0, 2, 1, 3)
        return t.reshape(b, num_heads, n, d)  # reshape without moving the head axis: mixes tokens and channels

    qh, kh, vh = heads(q), heads(k), heads(v)
    out = torch.empty(b, num_heads, n, d, dtype=torch.float64)
    for i in range(b):
        for j in range(num_heads):
            s = (kh[i, j] @ qh[i, j].T) if qk_swapped else (qh[i, j] @ kh[i, j].T)
            s = s / {"d": math.sqrt(d), "c": math.sqrt(c), "none": 1.0}[scale]
            out[i, j] = torch.softmax(s, dim=softmax_dim) @ vh[i, j]
    if merge == "right":
        return out.permute(0, 2, 1, 3).reshape(b, n, c)
    return out.reshape(b, n, c)  # merge without moving the head axis back


def reference_multihead_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_heads: int) -> torch.Tensor:
    """softmax(q_h k_h^T / sqrt(d)) v_h for each head h (d = C / heads channels), heads concatenated: (B, N, C)."""
    b, n, c = q.shape
    split = [t.reshape(b, t.shape[1], num_heads, c // num_heads).transpose(1, 2) for t in (q, k, v)]
    scores = split[0] @ split[1].transpose(-1, -2) / math.sqrt(c // num_heads)
    return (torch.softmax(scores, dim=-1) @ split[2]).transpose(1, 2).reshape(b, n, c)


_ATTENTION_MISTAKES = [
    (dict(scale="c"), "scale the scores by 1 / sqrt(d), d = C / num_heads the channels PER HEAD, not 1 / sqrt(C)."),
    (dict(scale="none"), "the scores need the 1 / sqrt(d) scaling (Vaswani et al. eq. 1): without it the softmax "
                         "saturates as d grows."),
    (dict(softmax_dim=-2), "take the softmax over the KEYS, the last axis of q k^T (dim=-1): each query's weights "
                           "must sum to 1."),
    (dict(qk_swapped=True), "the scores are transposed: use q @ k.transpose(-1, -2) (rows = queries, columns = keys)."),
    (dict(split="wrong"), "splitting the heads: reshape (B, N, C) to (B, N, heads, d) and THEN move the head axis, "
                          ".transpose(1, 2) -> (B, heads, N, d); reshaping straight to (B, heads, N, d) mixes tokens "
                          "and channels."),
    (dict(merge="wrong"), "merging the heads: move the head axis back first, out.transpose(1, 2) -> (B, N, heads, d), "
                          "then reshape to (B, N, C)."),
]


@exercise(reference=reference_multihead_attention, library=('ddpm_lib.models.blocks.AttentionBlock',))
def check_multihead_attention(fn: Callable) -> None:
    """Check ``fn(q, k, v, num_heads) -> (B, N, C)`` for 1, 2 and 4 heads, with N != C."""
    name = "multihead_attention"
    g = torch.Generator().manual_seed(41)
    for b, n, c, heads in [(2, 7, 8, 1), (2, 5, 12, 2), (1, 9, 16, 4), (3, 6, 8, 4)]:
        desc = f"q, k, v of shape {(b, n, c)}, {heads} head(s)"
        # as in the notebook, q, k and v are chunks of one projection: views that are not contiguous in memory
        q, k, v = (torch.randn(b, n, 3 * c, generator=g) * 1.5).chunk(3, dim=-1)
        try:
            got = call_student(name, fn, q, k, v, heads)
        except ExerciseError as e:
            extra = ""
            if "view size is not compatible" in str(e):
                extra = (" Hint: .view() only works when the memory layout allows it; after .transpose() (and on "
                         "q, k, v, which are slices of one projection) use .reshape() instead.")
            raise ExerciseError(f"{e} ({desc}).{extra}") from e.__cause__
        expected = _attention_variant(q, k, v, heads)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and torch.isfinite(got).all() and not (
                torch.allclose(got.detach().double(), expected, atol=1e-5, rtol=1e-4)):
            for kw, hint in _ATTENTION_MISTAKES:
                wrong = _attention_variant(q, k, v, heads, **kw)
                if not torch.allclose(wrong, expected, atol=1e-5, rtol=1e-4) and torch.allclose(
                        got.detach().double(), wrong, atol=1e-5, rtol=1e-4):
                    raise ExerciseError(f"{name}: wrong values ({desc}). Hint: {hint}")
        check_tensor(f"{name} ({desc})", got, expected, atol=1e-5, rtol=1e-4,
                     hint="split each of q, k, v to (B, heads, N, d); softmax(q @ k^T / sqrt(d), dim=-1) @ v; "
                          "merge back to (B, N, C).")
    passed(name, "Every token takes a softmax-weighted average of the values, one weighting per head.")
