"""UNet, its blocks and the timestep embedding, checked against independent references.

References: closed-form formulas written out here, a naive attention computed here, and diffusers
(a test-only oracle): its ``get_timestep_embedding``, ``ResnetBlock2D`` and whole ``UNet2DModel``
loaded with our weights must give our outputs. (``ddpm_lib.models.diffusers_compat`` only renames the weights
and sets UNet2DModel's options; the outputs compared come from two independent implementations.)
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from ddpm_lib.models.blocks import AttentionBlock, Downsample, ResBlock, Upsample
from ddpm_lib.models.diffusers_compat import to_diffusers_state_dict, unet2d_config
from ddpm_lib.models.embeddings import TimestepEmbedding, timestep_embedding
from ddpm_lib.models.unet import PRESETS, UNet, UNetConfig

diffusers = pytest.importorskip("diffusers")


def perturb(model: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Give every parameter random values (the zero-initialised layers make a fresh UNet output 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * std)
    return model


def small_config(**kw) -> UNetConfig:
    base = dict(image_size=16, in_channels=3, base_channels=16, channel_mults=(1, 2), num_res_blocks=1,
                attention_resolutions=(8,), num_heads=2, num_groups=8)
    base.update(kw)
    return UNetConfig(**base)


# ---------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_keep_shape_and_start_at_zero(name):
    torch.manual_seed(0)
    model = UNet.from_preset(name).eval()
    c = model.config
    batch = 1 if name == "cifar10_ddpm" else 3
    x = torch.randn(batch, c.in_channels, c.image_size, c.image_size)
    with torch.no_grad():
        out = model(x, torch.randint(0, 1000, (batch,)))
    assert out.shape == x.shape
    assert torch.count_nonzero(out) == 0, "conv_out is zero-initialised: a fresh UNet predicts 0"


@pytest.mark.parametrize("cin,cout", [(3, 5), (1, 2), (5, 1), (7, 7)])
def test_odd_channel_counts(cin, cout):
    model = perturb(UNet(small_config(in_channels=cin, out_channels=cout)))
    out = model(torch.randn(2, cin, 16, 16), torch.tensor([3, 9]))
    assert out.shape == (2, cout, 16, 16)
    assert out.abs().sum() > 0


def test_out_channels_defaults_to_in_channels():
    assert small_config(in_channels=2).out_channels == 2


def test_timestep_forms_agree():
    model = perturb(UNet(small_config())).eval()
    x = torch.randn(2, 3, 16, 16)
    ref = model(x, torch.tensor([7, 7]))
    for t in (7, 7.0, torch.tensor(7), torch.tensor([7.0, 7.0])):
        torch.testing.assert_close(model(x, t), ref)
    assert not torch.allclose(model(x, torch.tensor([8, 8])), ref), "t must change the output"


# ---------------------------------------------------------------------------------------- classes
def test_labels_change_output_per_sample():
    model = perturb(UNet(small_config(num_classes=3))).eval()
    x = torch.randn(3, 3, 16, 16)
    t = torch.tensor([5, 5, 5])
    a = model(x, t, torch.tensor([0, 1, 2]))
    b = model(x, t, torch.tensor([1, 1, 2]))  # only sample 0's label changed
    assert not torch.allclose(a[0], b[0], atol=1e-4)
    torch.testing.assert_close(a[1:], b[1:])


def test_null_class():
    model = perturb(UNet(small_config(num_classes=4))).eval()
    assert model.null_class == 4
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([10, 20])
    null = model(x, t, torch.full((2,), model.null_class))
    torch.testing.assert_close(model(x, t), null)
    torch.testing.assert_close(model(x, t, None), null)
    assert not torch.allclose(model(x, t, torch.tensor([0, 0])), null, atol=1e-4)


def test_unconditional_model():
    model = UNet(small_config())
    assert model.null_class is None and model.class_embed is None
    with pytest.raises(ValueError, match="unconditional"):
        model(torch.randn(1, 3, 16, 16), torch.tensor([1]), torch.tensor([0]))


# ---------------------------------------------------------------------------------------- gradients
@pytest.mark.parametrize("conditioning", ["add", "scale_shift"])
def test_gradients_reach_every_parameter(conditioning):
    """At init only conv_out gets a gradient (everything upstream is behind its zero weights); after two
    optimiser steps from the genuine init, every parameter - including every class embedding row used -
    gets a non-zero gradient."""
    torch.manual_seed(0)
    model = UNet(small_config(num_classes=3, conditioning=conditioning))
    x = torch.randn(4, 3, 16, 16)
    t = torch.tensor([1, 50, 300, 999])
    labels = torch.tensor([0, 1, 2, 3])  # every class and the null class
    target = torch.randn_like(x)

    def grads():
        model.zero_grad(set_to_none=True)
        F.mse_loss(model(x, t, labels), target).backward()
        return {n: p.grad for n, p in model.named_parameters()}

    g0 = grads()
    nonzero = {n for n, g in g0.items() if g is not None and g.abs().sum() > 0}
    assert nonzero == {"conv_out.weight", "conv_out.bias"}

    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(2):
        grads()
        opt.step()
    missing = [n for n, g in grads().items() if g is None or g.abs().sum() == 0]
    assert not missing, f"no gradient reaches {missing}"


def test_gradient_checkpointing_same_gradients_and_recomputes():
    cfg = small_config(num_classes=2, num_res_blocks=2)
    plain = perturb(UNet(cfg))
    ckpt = UNet(cfg.__class__(**{**cfg.to_dict(), "gradient_checkpointing": True}))
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([3, 400])
    calls = {"plain": 0, "ckpt": 0}
    plain.down[0].res[0].register_forward_pre_hook(lambda *a: calls.__setitem__("plain", calls["plain"] + 1))
    ckpt.down[0].res[0].register_forward_pre_hook(lambda *a: calls.__setitem__("ckpt", calls["ckpt"] + 1))
    for m in (plain, ckpt):
        m(x, t, torch.tensor([0, 1])).square().mean().backward()
    assert calls == {"plain": 1, "ckpt": 2}, "checkpointing recomputes the block's forward during backward"
    for (n, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-5, atol=1e-7, msg=n)


# ---------------------------------------------------------------------------------------- parameter counts
def test_cifar10_ddpm_parameter_count(capsys):
    with torch.device("meta"):  # shapes only: counting needs no memory or random init
        model = UNet.from_preset("cifar10_ddpm")
    n = sum(p.numel() for p in model.parameters())
    print(f"cifar10_ddpm: {n:,} parameters")
    assert abs(n - 35.7e6) / 35.7e6 < 0.01, n  # Ho et al. 2020, appendix B: "35.7 million parameters"
    rows = model.parameter_summary()
    out = capsys.readouterr().out
    assert "total" in out and "down 1 +attn" in out
    assert rows[-1]["params"] == n
    assert sum(r["params"] for r in rows[:-1]) == n
    # an independent count: diffusers' UNet2DModel at Ho et al.'s configuration (google/ddpm-cifar10-32)
    with torch.device("meta"):
        ref = diffusers.UNet2DModel(**unet2d_config(model.config))
    assert sum(p.numel() for p in ref.parameters()) == n


def test_preset_sizes():
    counts = {name: sum(p.numel() for p in UNet.from_preset(name).parameters()) for name in ("tiny", "fashion_mnist")}
    assert counts["tiny"] < 1_000_000
    assert 2_000_000 <= counts["fashion_mnist"] <= 6_000_000
    assert PRESETS["fashion_mnist"].in_channels == 1 and PRESETS["fashion_mnist"].image_size == 32


# ---------------------------------------------------------------------------------------- bad configs
@pytest.mark.parametrize(
    "kw,field",
    [
        (dict(image_size=20, channel_mults=(1, 2, 2, 2)), "image_size"),
        (dict(base_channels=24, num_groups=32), "base_channels"),
        (dict(base_channels=16, channel_mults=(1, 3), num_groups=32), "base_channels"),
        (dict(attention_resolutions=(5,)), "attention_resolutions"),
        (dict(conditioning="film"), "conditioning"),
        (dict(num_heads=3), "num_heads"),
        (dict(head_channels=5), "head_channels"),
        (dict(num_res_blocks=0), "num_res_blocks"),
        (dict(dropout=1.5), "dropout"),
        (dict(num_classes=0), "num_classes"),
        (dict(channel_mults=()), "channel_mults"),
    ],
)
def test_invalid_configs_name_the_field(kw, field):
    base = dict(image_size=32, in_channels=3, base_channels=32, channel_mults=(1, 2), num_res_blocks=1,
                attention_resolutions=(16,))
    base.update(kw)
    with pytest.raises(ValueError, match=f"UNetConfig.{field}"):
        UNet(UNetConfig(**base))


def test_from_preset_errors_and_overrides():
    with pytest.raises(ValueError, match="tiny"):
        UNet.from_preset("huge")
    with pytest.raises(ValueError, match="colour"):
        UNet.from_preset("tiny", colour=3)
    m = UNet.from_preset("tiny", in_channels=3, num_classes=10)
    assert m.config.in_channels == 3 and m.config.out_channels == 3 and m.null_class == 10
    assert PRESETS["tiny"].num_classes is None, "overrides must not change the preset"
    cfg = UNetConfig(**{**m.config.to_dict(), "channel_mults": list(m.config.channel_mults)})  # lists (e.g. from JSON) are fine
    assert cfg == m.config


# ---------------------------------------------------------------------------------------- embedding
@pytest.mark.parametrize("dim", [2, 8, 33, 128])
def test_timestep_embedding_against_formula_and_diffusers(dim):
    t = torch.tensor([0, 1, 7, 250, 999])
    emb = timestep_embedding(t, dim)
    assert emb.shape == (5, dim) and emb.dtype == torch.float32
    # Vaswani et al. sec. 3.5, written out element by element: PE(t, 2i) = sin(t / 10000^(2i/d')),
    # PE(t, 2i+1) = cos(...), with d' = 2 * (dim // 2); ours holds the sines first, then the cosines.
    half = dim // 2
    for b, tb in enumerate(t.tolist()):
        for i in range(half):
            angle = tb / 10000 ** (2 * i / (2 * half))
            assert emb[b, i].item() == pytest.approx(math.sin(angle), abs=2e-4)
            assert emb[b, half + i].item() == pytest.approx(math.cos(angle), abs=2e-4)
    if dim % 2:
        assert torch.all(emb[:, -1] == 0)
    from diffusers.models.embeddings import get_timestep_embedding

    ref = get_timestep_embedding(t, dim, flip_sin_to_cos=False, downscale_freq_shift=0)
    torch.testing.assert_close(emb, ref, atol=1e-5, rtol=1e-5)
    flipped = get_timestep_embedding(t, dim, flip_sin_to_cos=True, downscale_freq_shift=0)
    if dim > 2:
        assert not torch.allclose(emb, flipped), "diffusers' flip_sin_to_cos=True puts cos first"


def test_timestep_embedding_mlp_and_errors():
    mlp = TimestepEmbedding(16, 64)
    t = torch.tensor([3, 4])
    out = mlp(t)
    ref = mlp.fc2(F.silu(mlp.fc1(timestep_embedding(t, 16))))
    torch.testing.assert_close(out, ref)
    with pytest.raises(ValueError, match="dim"):
        timestep_embedding(t, 1)
    with pytest.raises(ValueError, match="shape"):
        timestep_embedding(t[:, None], 8)


# ---------------------------------------------------------------------------------------- blocks
@pytest.mark.parametrize("heads", [1, 4])
def test_attention_block_against_naive_softmax(heads):
    torch.manual_seed(0)
    block = perturb(AttentionBlock(32, num_heads=heads, num_groups=8), std=0.2)
    x = torch.randn(2, 32, 5, 6)
    out = block(x)
    # naive: tokens = pixels; per head softmax(Q K^T / sqrt(d)) V, written with plain matmuls
    b, c, h, w = x.shape
    d = c // heads
    tok = F.group_norm(x, 8, block.norm.weight, block.norm.bias, block.norm.eps).reshape(b, c, h * w).transpose(1, 2)
    wq, wk, wv = block.qkv.weight.split(c)
    bq, bk, bv = block.qkv.bias.split(c)
    q, k, v = tok @ wq.T + bq, tok @ wk.T + bk, tok @ wv.T + bv  # (B, N, C)
    heads_out = []
    for i in range(heads):
        sl = slice(i * d, (i + 1) * d)
        att = torch.softmax(q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(d), dim=-1)  # (B, N, N)
        assert torch.allclose(att.sum(-1), torch.ones(b, h * w))
        heads_out.append(att @ v[..., sl])
    y = torch.cat(heads_out, dim=-1) @ block.proj_out.weight.T + block.proj_out.bias
    ref = x + y.transpose(1, 2).reshape(b, c, h, w)
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-4)


def test_attention_block_starts_as_identity_and_checks_heads():
    block = AttentionBlock(16, num_heads=2, num_groups=4)
    x = torch.randn(1, 16, 4, 4)
    torch.testing.assert_close(block(x), x)
    with pytest.raises(ValueError, match="num_heads"):
        AttentionBlock(16, num_heads=3)


@pytest.mark.parametrize("conditioning", ["add", "scale_shift"])
@pytest.mark.parametrize("cin,cout", [(16, 16), (16, 32)])
def test_resblock_against_diffusers(conditioning, cin, cout):
    from diffusers.models.resnet import ResnetBlock2D

    torch.manual_seed(0)
    ours = perturb(ResBlock(cin, cout, emb_dim=24, conditioning=conditioning, num_groups=8)).eval()
    ref = ResnetBlock2D(in_channels=cin, out_channels=cout, temb_channels=24, groups=8, eps=1e-5,
                        time_embedding_norm="default" if conditioning == "add" else "scale_shift").eval()
    ref.load_state_dict({_resblock_key(k): v for k, v in ours.state_dict().items()})
    x, emb = torch.randn(2, cin, 6, 6), torch.randn(2, 24)
    torch.testing.assert_close(ours(x, emb), ref(x, emb), atol=1e-5, rtol=1e-4)
    fresh = ResBlock(cin, cout, emb_dim=24, conditioning=conditioning, num_groups=8)
    assert torch.count_nonzero(fresh.conv2.weight) == 0 and torch.count_nonzero(fresh.conv2.bias) == 0
    assert isinstance(fresh.skip, torch.nn.Conv2d) == (cin != cout)


def test_down_and_upsample():
    x = torch.randn(2, 8, 12, 12)
    down, up = Downsample(8), Upsample(8)
    assert down(x).shape == (2, 8, 6, 6)
    torch.testing.assert_close(down(x), F.conv2d(x, down.conv.weight, down.conv.bias, stride=2, padding=1))
    y = up(x)
    assert y.shape == (2, 8, 24, 24)
    nearest = x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)  # each pixel copied to a 2x2 patch
    torch.testing.assert_close(y, F.conv2d(nearest, up.conv.weight, up.conv.bias, padding=1))


# ---------------------------------------------------------------------------------------- whole model vs diffusers
_RES = {"emb_proj": "time_emb_proj", "skip": "conv_shortcut"}


def _resblock_key(k: str) -> str:
    name, rest = k.split(".", 1)
    return f"{_RES.get(name, name)}.{rest}"


@pytest.mark.parametrize("num_classes,conditioning", [(None, "add"), (3, "add"), (3, "scale_shift")])
def test_whole_unet_matches_diffusers(num_classes, conditioning):
    cfg = UNetConfig(image_size=16, in_channels=3, out_channels=2, base_channels=16, channel_mults=(1, 2, 2),
                     num_res_blocks=2, attention_resolutions=(8,), num_heads=2, num_groups=8, num_classes=num_classes,
                     conditioning=conditioning)
    ours = perturb(UNet(cfg), std=0.1).eval()
    ref = diffusers.UNet2DModel(**unet2d_config(cfg)).eval()
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in ref.parameters())
    ref.load_state_dict(to_diffusers_state_dict(ours.state_dict()))  # strict: every key maps
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([4, 731])
    labels = None if num_classes is None else torch.tensor([2, 3])
    expected = ref(x, t, class_labels=labels).sample
    torch.testing.assert_close(ours(x, t, labels), expected, atol=1e-4, rtol=1e-4)


# ---------------------------------------------------------------------------------------- runtime options
def test_channels_last_and_bf16_autocast():
    model = perturb(UNet(small_config(num_classes=2))).eval()
    x = torch.randn(2, 3, 16, 16)
    t = torch.tensor([1, 2])
    ref = model(x, t)
    cl = model.to(memory_format=torch.channels_last)(x.to(memory_format=torch.channels_last), t)
    torch.testing.assert_close(cl, ref, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = model(x, t)
    assert low.dtype == torch.bfloat16 and low.shape == ref.shape
    assert (low.float() - ref).abs().max() < 0.05 * ref.abs().max()
    half = UNet(small_config()).to(torch.bfloat16)  # a model cast to bf16 takes bf16 input and int t
    assert half(x.to(torch.bfloat16), t).dtype == torch.bfloat16


def test_compile_fullgraph_traces_without_graph_breaks():
    """TorchDynamo captures the whole forward as one graph (fullgraph=True turns any graph break into an
    error) and the captured graph computes the eager result. Inductor code generation is the slow test."""
    torch._dynamo.reset()
    model = perturb(UNet.from_preset("tiny", num_classes=2)).eval()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x, t, labels = torch.randn(2, 1, 32, 32), torch.tensor([5, 70]), torch.tensor([0, 2])
    torch.testing.assert_close(compiled(x, t, labels), model(x, t, labels), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_compile_inductor_matches_eager_forward_and_backward():
    torch._dynamo.reset()
    model = perturb(UNet.from_preset("tiny", num_classes=2))
    compiled = torch.compile(model, fullgraph=True)  # inductor
    x, t, labels = torch.randn(2, 1, 32, 32), torch.tensor([5, 70]), torch.tensor([0, 2])
    torch.testing.assert_close(compiled(x, t, labels), model(x, t, labels), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(compiled(x, t), model(x, t), atol=1e-4, rtol=1e-4)  # labels=None path
    compiled(x, t, labels).square().mean().backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    model(x, t, labels).square().mean().backward()
    for n, p in model.named_parameters():
        torch.testing.assert_close(ref[n], p.grad, atol=1e-4, rtol=1e-3, msg=n)
