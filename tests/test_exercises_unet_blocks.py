"""Notebook 03's ResBlock-forward and multi-head-attention checkers: right answers pass (ddpm_lib's own blocks,
torch's fused attention, hand-written variants), the usual mistakes are named."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.unet import check_multihead_attention, check_resblock_forward

# --- ResBlock forward ----------------------------------------------------------------------------


def forward_via_library(block, x, emb):
    """ddpm_lib.models.blocks.ResBlock with the block's weights loaded: an oracle written by someone else."""
    from ddpm_lib.models.blocks import ResBlock

    cin, cout = block.conv1.in_channels, block.conv1.out_channels
    lib = ResBlock(cin, cout, emb_dim=block.emb_proj.in_features, num_groups=block.norm1.num_groups,
                   conditioning="scale_shift" if block.scale_shift else "add").eval()
    lib.load_state_dict(block.state_dict())
    return lib(x, emb)


def test_resblock_accepts_right_answers(capsys):
    for fn in (forward_right, forward_via_library):
        assert check_resblock_forward(fn) is fn
    assert capsys.readouterr().out.count("Correct") == 2


def _mistake(**kw):
    def fn(block, x, emb):
        act = (lambda t, n: n(F.silu(t))) if kw.get("silu_first") else (lambda t, n: F.silu(n(t)))
        h = block.conv1(act(x, block.norm1))
        e = block.emb_proj(emb if kw.get("no_emb_silu") else F.silu(emb))[:, :, None, None]
        if block.scale_shift:
            scale, shift = e.chunk(2, dim=1)
            if kw.get("swap"):
                scale, shift = shift, scale
            h = block.norm2(h) * (scale if kw.get("no_one") else 1 + scale) + shift
        elif kw.get("after_norm"):
            h = block.norm2(h) + e
        else:
            h = block.norm2(h + e)
        h = block.conv2(block.dropout(F.silu(h)))
        return h if kw.get("no_skip") else block.skip(x) + h
    return fn


forward_right = _mistake()  # every mistake switched off: the right answer, written by the test


@pytest.mark.parametrize("wrong, words", [
    (_mistake(no_emb_silu=True), "through SiLU"),
    (_mistake(after_norm=True), "BEFORE the second GroupNorm"),
    (_mistake(no_skip=True), "skip connection is missing"),
    (_mistake(silu_first=True), "normalise first"),
    (_mistake(no_one=True), "(1 + scale)"),
    (_mistake(swap=True), "swapped"),
    (lambda block, x, emb: x + forward_right(block, x, emb) - block.skip(x), "shape mismatch"),  # x + h: 8 vs 16 channels
    (lambda block, x, emb: forward_right(block, x, emb) + block.emb_proj(emb)[:, :1, None, None], "values differ"),
])
def test_resblock_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_resblock_forward(wrong)
    assert words in str(info.value), str(info.value)


# --- multi-head attention --------------------------------------------------------------------------


def attention_right(q, k, v, num_heads):
    b, n, c = q.shape
    qh, kh, vh = (t.reshape(b, n, num_heads, c // num_heads).transpose(1, 2) for t in (q, k, v))
    w = torch.softmax(qh @ kh.transpose(-1, -2) / math.sqrt(c // num_heads), dim=-1)
    return (w @ vh).transpose(1, 2).reshape(b, n, c)


def attention_fused(q, k, v, num_heads):
    b, n, c = q.shape
    qh, kh, vh = (t.reshape(b, n, num_heads, c // num_heads).transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(qh, kh, vh).transpose(1, 2).reshape(b, n, c)


def attention_einsum_float64(q, k, v, num_heads):
    b, n, c = q.shape
    d = c // num_heads
    qh, kh, vh = (t.double().reshape(b, n, num_heads, d) for t in (q, k, v))
    w = torch.einsum("bnhd,bmhd->bhnm", qh, kh).div(math.sqrt(d)).softmax(-1)
    return torch.einsum("bhnm,bmhd->bnhd", w, vh).reshape(b, n, c)


def test_attention_accepts_right_answers(capsys):
    for fn in (attention_right, attention_fused, attention_einsum_float64):
        assert check_multihead_attention(fn) is fn
    assert capsys.readouterr().out.count("Correct") == 3


def _att(scale=None, dim=-1, split_ok=True, merge_ok=True, swap=False, merge_view=False):
    def fn(q, k, v, num_heads):
        b, n, c = q.shape
        d = c // num_heads
        if split_ok:
            qh, kh, vh = (t.reshape(b, n, num_heads, d).transpose(1, 2) for t in (q, k, v))
        else:
            qh, kh, vh = (t.reshape(b, num_heads, n, d) for t in (q, k, v))
        s = (kh @ qh.transpose(-1, -2)) if swap else (qh @ kh.transpose(-1, -2))
        s = s / (math.sqrt(d) if scale is None else scale(c))
        out = torch.softmax(s, dim=dim) @ vh
        if merge_view:
            return out.transpose(1, 2).view(b, n, c)  # the transposed tensor cannot be viewed: needs reshape
        return out.transpose(1, 2).reshape(b, n, c) if merge_ok else out.reshape(b, n, c)
    return fn


@pytest.mark.parametrize("wrong, words", [
    (_att(scale=lambda c: math.sqrt(c)), "PER HEAD"),
    (_att(scale=lambda c: 1.0), "1 / sqrt(d) scaling"),
    (_att(dim=-2), "over the KEYS"),
    (_att(swap=True), "transposed"),
    (_att(split_ok=False), "splitting the heads"),
    (_att(merge_ok=False), "merging the heads"),
    (lambda q, k, v, h: attention_right(q, k, v, h)[:, 0], "shape"),
    (_att(merge_view=True), "use .reshape()"),
    (lambda q, k, v, h: attention_right(q, k, v, h) + 1e-3, "values differ"),
])
def test_attention_names_the_mistake(wrong, words):
    with pytest.raises(ExerciseError) as info:
        check_multihead_attention(wrong)
    assert words in str(info.value), str(info.value)
