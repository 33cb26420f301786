"""The noise-prediction network: a UNet with timestep (and class) conditioning.

Architecture of Ho et al. (2020, sec. 4 and appendix B; their official ``diffusion_tf`` code): a
convolutional encoder that halves the resolution at each level, a middle at the lowest resolution,
and a decoder that doubles it back, each decoder block receiving the matching encoder activation
through a skip connection (concatenated along channels)::

    x -> conv_in -> [level 0: res blocks (+attn)] -> down -> [level 1 ...] -> ... -> mid
                        |  skips  |                              ...
    out <- conv_out <- [level 0: res blocks (+attn)] <- up <- [level 1 ...] <- ... <-

Every residual block receives ``emb = MLP(sinusoids(t)) (+ class embedding)``. ``channel_mults``
sets the channels of each level (``base_channels * mult``), ``attention_resolutions`` the feature
map sizes that get self-attention, and the output convolution is zero-initialised, so a fresh UNet
predicts exactly zero.

Use a preset, or build your own config::

    model = UNet.from_preset("fashion_mnist")              # 32x32x1, 3.9 M parameters
    model = UNet(UNetConfig(image_size=32, in_channels=3, base_channels=64, channel_mults=(1, 2, 2)))
    eps = model(x_t, t)                                    # same shape as x_t

Class conditioning (``num_classes=K``) adds an embedding of the label; index ``K`` is the extra
"null" class used for classifier-free guidance (Ho & Salimans 2022), and ``labels=None`` means
"null class for every sample".
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ddpm_lib.models.blocks import (
    CONDITIONING_MODES,
    AttentionBlock,
    Downsample,
    ResBlock,
    Upsample,
)
from ddpm_lib.models.embeddings import TimestepEmbedding


@dataclass(frozen=True)
class UNetConfig:
    """Everything that defines a :class:`UNet`. Invalid values raise ``ValueError`` on construction."""

    image_size: int = 32
    in_channels: int = 3
    out_channels: int | None = None  # None: same as in_channels
    base_channels: int = 128
    channel_mults: tuple[int, ...] = (1, 2, 2, 2)
    num_res_blocks: int = 2
    attention_resolutions: tuple[int, ...] = (16,)  # feature-map sizes (in pixels) that get attention
    num_heads: int = 1
    head_channels: int | None = None  # if set, heads = channels // head_channels (overrides num_heads)
    dropout: float = 0.0
    num_classes: int | None = None  # None: unconditional; K: labels 0..K-1 plus the null class K
    conditioning: str = "add"  # "add" (Ho et al.) or "scale_shift" (AdaGN, Dhariwal & Nichol)
    num_groups: int = 32  # GroupNorm groups
    mid_attention: bool = True  # self-attention in the middle block (Ho et al.: yes)
    gradient_checkpointing: bool = False
    time_embed_mult: int = 4  # embedding width = base_channels * time_embed_mult (Ho et al.: 4)
    # derived, not a constructor argument
    resolutions: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        # accept lists (e.g. a config read back from JSON) but store tuples, so configs stay hashable
        for name in ("channel_mults", "attention_resolutions"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.out_channels is None:
            object.__setattr__(self, "out_channels", self.in_channels)
        self._validate()
        levels = len(self.channel_mults)
        object.__setattr__(self, "resolutions", tuple(self.image_size >> i for i in range(levels)))

    def _validate(self) -> None:
        def bad(fieldname: str, msg: str):
            raise ValueError(f"UNetConfig.{fieldname}: {msg}")

        for name in ("image_size", "in_channels", "out_channels", "base_channels", "num_groups", "time_embed_mult"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                bad(name, f"must be a positive int, got {v!r}.")
        if not self.channel_mults or any(m < 1 for m in self.channel_mults):
            bad("channel_mults", f"must be a non-empty tuple of positive ints, got {self.channel_mults!r}.")
        if not isinstance(self.num_res_blocks, int) or self.num_res_blocks < 1:
            bad("num_res_blocks", f"must be an int >= 1, got {self.num_res_blocks!r}.")
        if not 0.0 <= self.dropout < 1.0:
            bad("dropout", f"must be in [0, 1), got {self.dropout!r}.")
        if self.conditioning not in CONDITIONING_MODES:
            bad("conditioning", f"{self.conditioning!r} is unknown: use one of {CONDITIONING_MODES}.")
        if self.num_classes is not None and (not isinstance(self.num_classes, int) or self.num_classes < 1):
            bad("num_classes", f"must be None (unconditional) or a positive int, got {self.num_classes!r}.")
        levels = len(self.channel_mults)
        factor = 2 ** (levels - 1)
        if self.image_size % factor != 0:
            bad(
                "image_size",
                f"{self.image_size} is not divisible by 2^(levels-1) = {factor} ({levels} levels in "
                f"channel_mults={self.channel_mults}): use an image_size that is a multiple of {factor}, "
                "or fewer channel_mults.",
            )
        for mult in self.channel_mults:
            ch = self.base_channels * mult
            if ch % self.num_groups != 0:
                bad(
                    "base_channels",
                    f"base_channels * mult = {self.base_channels} * {mult} = {ch} channels is not divisible "
                    f"by num_groups={self.num_groups} (GroupNorm): make base_channels a multiple of "
                    f"{self.num_groups}, or lower num_groups.",
                )
        resolutions = [self.image_size >> i for i in range(levels)]
        for r in self.attention_resolutions:
            if r not in resolutions:
                bad(
                    "attention_resolutions",
                    f"{r} never occurs: the feature maps are {resolutions} pixels wide for "
                    f"image_size={self.image_size} and {levels} levels. Use some of those (or an empty tuple).",
                )
        attn_channels = [self.base_channels * m for m, r in zip(self.channel_mults, resolutions) if r in self.attention_resolutions]
        if self.mid_attention:
            attn_channels.append(self.base_channels * self.channel_mults[-1])
        if self.head_channels is not None:
            if not isinstance(self.head_channels, int) or self.head_channels < 1:
                bad("head_channels", f"must be None or a positive int, got {self.head_channels!r}.")
            for ch in attn_channels:
                if ch % self.head_channels != 0:
                    bad("head_channels", f"{self.head_channels} does not divide the {ch} channels of an attention block: pick a divisor of {ch}.")
        else:
            if not isinstance(self.num_heads, int) or self.num_heads < 1:
                bad("num_heads", f"must be a positive int, got {self.num_heads!r}.")
            for ch in attn_channels:
                if ch % self.num_heads != 0:
                    bad("num_heads", f"{self.num_heads} heads do not divide the {ch} channels of an attention block: pick a divisor of {ch}, or set head_channels instead.")

    def heads_for(self, channels: int) -> int:
        """Number of attention heads for a block with ``channels`` channels."""
        return channels // self.head_channels if self.head_channels is not None else self.num_heads

    def to_dict(self) -> dict:
        """The constructor arguments as plain Python values (for checkpoints); ``UNetConfig(**d)`` inverts it."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.init}


PRESETS: dict[str, UNetConfig] = {
    # For tests and FAST-mode notebooks on a CPU: 0.17 M parameters, ~0.15 GFLOP per image for a
    # training step (forward + backward); every feature of the big models (3 levels, attention, skips).
    "tiny": UNetConfig(
        image_size=32, in_channels=1, base_channels=8, channel_mults=(1, 2, 4), num_res_blocks=1,
        attention_resolutions=(8,), num_heads=1, num_groups=4, dropout=0.0,
    ),
    # Fashion-MNIST padded to 32x32x1: 3.9 M parameters; 32/64/128 channels at 32/16/8 pixels.
    "fashion_mnist": UNetConfig(
        image_size=32, in_channels=1, base_channels=32, channel_mults=(1, 2, 4), num_res_blocks=2,
        attention_resolutions=(8,), num_heads=4, dropout=0.1,
    ),
    # The cpu-mode Fashion-MNIST model (recipe fashion_mnist_cpu): 0.69 M parameters; its recipe's 8 minutes
    # are 2,381 steps at batch 64 on 2 idle CPU cores with bf16 (benchmarks/RESULTS.md, 2026-12-02).
    "fashion_mnist_cpu": UNetConfig(
        image_size=32, in_channels=1, base_channels=16, channel_mults=(1, 2, 4), num_res_blocks=1,
        attention_resolutions=(8,), num_heads=1, num_groups=8, dropout=0.0,
    ),
    # The cpu-mode CIFAR-10 model (recipe cifar10_cpu, the starter weights): 1.5 M parameters with 10
    # classes, small enough to ship in fp16 under 5 MB; 32/64/64/64 channels at 32/16/8/4 pixels.
    "cifar10_cpu": UNetConfig(
        image_size=32, in_channels=3, base_channels=32, channel_mults=(1, 2, 2, 2), num_res_blocks=1,
        attention_resolutions=(8,), num_heads=1, num_groups=8, dropout=0.0,
    ),
    # Ho et al. (2020) CIFAR-10 model: 35,746,307 parameters as in the official diffusion_tf code.
    "cifar10_ddpm": UNetConfig(
        image_size=32, in_channels=3, base_channels=128, channel_mults=(1, 2, 2, 2), num_res_blocks=2,
        attention_resolutions=(16,), num_heads=1, dropout=0.1,
    ),
}


class _Level(nn.Module):
    """One resolution of the encoder or decoder: residual blocks, each optionally followed by attention,
    then a resampler (``nn.Identity`` at the end of the path)."""

    def __init__(self, res: list[ResBlock], attn: list[nn.Module], resample: nn.Module):
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)
        self.resample = resample


class UNet(nn.Module):
    """Ho et al.'s noise-prediction UNet, configured by a :class:`UNetConfig`.

    ``forward(x, t, labels=None)``: ``x`` of shape ``(B, in_channels, S, S)``, ``t`` the 0-based
    timesteps (LongTensor ``(B,)``; a float tensor, a 0-d tensor or a Python number is broadcast),
    ``labels`` a LongTensor ``(B,)`` of class indices in ``0..num_classes`` (``num_classes`` = the
    null class) or ``None``. Returns ``(B, out_channels, S, S)``.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise ValueError(f"UNet(config): expected a UNetConfig, got {type(config).__name__}; use UNet.from_preset(name) for a preset.")
        self.config = config
        self.gradient_checkpointing = config.gradient_checkpointing
        c = config
        emb_dim = c.base_channels * c.time_embed_mult

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, emb_dim, c.dropout, c.conditioning, c.num_groups)

        def attn(ch: int, resolution: int) -> nn.Module:
            if resolution in c.attention_resolutions:
                return AttentionBlock(ch, c.heads_for(ch), c.num_groups)
            return nn.Identity()

        self.time_embed = TimestepEmbedding(c.base_channels, emb_dim)
        self.class_embed = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes is not None else None
        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, 3, padding=1)

        # encoder; skip_channels records the channels of every activation kept for the decoder
        skip_channels = [c.base_channels]
        ch = c.base_channels
        last = len(c.channel_mults) - 1
        self.down = nn.ModuleList()
        for i, (mult, resolution) in enumerate(zip(c.channel_mults, c.resolutions)):
            blocks, attns = [], []
            for _ in range(c.num_res_blocks):
                blocks.append(res(ch, c.base_channels * mult))
                ch = c.base_channels * mult
                attns.append(attn(ch, resolution))
                skip_channels.append(ch)
            resample = Downsample(ch) if i != last else nn.Identity()
            if i != last:
                skip_channels.append(ch)
            self.down.append(_Level(blocks, attns, resample))

        self.mid_res1 = res(ch, ch)
        self.mid_attn = AttentionBlock(ch, c.heads_for(ch), c.num_groups) if c.mid_attention else nn.Identity()
        self.mid_res2 = res(ch, ch)

        # decoder, stored from the lowest resolution up (the order it runs in)
        self.up = nn.ModuleList()
        for i in reversed(range(len(c.channel_mults))):
            mult, resolution = c.channel_mults[i], c.resolutions[i]
            blocks, attns = [], []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(res(ch + skip_channels.pop(), c.base_channels * mult))
                ch = c.base_channels * mult
                attns.append(attn(ch, resolution))
            resample = Upsample(ch) if i != 0 else nn.Identity()
            self.up.append(_Level(blocks, attns, resample))
        assert not skip_channels

        self.norm_out = nn.GroupNorm(c.num_groups, ch)
        self.conv_out = nn.Conv2d(ch, c.out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # a fresh model predicts exactly zero
        nn.init.zeros_(self.conv_out.bias)

    # ------------------------------------------------------------------ construction helpers
    @classmethod
    def from_preset(cls, name: str, **overrides) -> UNet:
        """``UNet(PRESETS[name] with the given fields replaced)``, e.g. ``from_preset("tiny", num_classes=10)``."""
        if name not in PRESETS:
            raise ValueError(f"unknown UNet preset {name!r}: choose one of {sorted(PRESETS)}.")
        unknown = set(overrides) - {f.name for f in dataclasses.fields(UNetConfig) if f.init}
        if unknown:
            raise ValueError(f"UNet.from_preset: unknown UNetConfig field(s) {sorted(unknown)}.")
        if "in_channels" in overrides and "out_channels" not in overrides:
            overrides["out_channels"] = overrides["in_channels"]  # presets predict noise: output mirrors input
        return cls(dataclasses.replace(PRESETS[name], **overrides))

    @property
    def null_class(self) -> int | None:
        """The label meaning "no class" (classifier-free guidance): ``num_classes``, or None if unconditional."""
        return self.config.num_classes

    # ------------------------------------------------------------------ forward
    def _block(self, block: nn.Module, *args: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)

    def embed(self, t: torch.Tensor | int | float, labels: torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """The conditioning vector ``emb`` (B, E) that every residual block receives."""
        if not torch.is_tensor(t):
            t = torch.tensor(t, device=device)
        if t.ndim == 0:
            t = t.expand(batch)
        emb = self.time_embed(t.to(device))
        if self.class_embed is not None:
            if labels is None:
                labels = torch.full((batch,), self.config.num_classes, dtype=torch.long, device=device)
            emb = emb + self.class_embed(labels.to(device))
        elif labels is not None:
            raise ValueError("labels were given but this UNet is unconditional (num_classes=None): pass labels=None, or build the model with num_classes.")
        return emb

    def forward(self, x: torch.Tensor, t: torch.Tensor | int | float, labels: torch.Tensor | None = None) -> torch.Tensor:
        emb = self.embed(t, labels, x.shape[0], x.device)
        h = self.conv_in(x)
        skips = [h]
        for level in self.down:
            for block, attn in zip(level.res, level.attn):
                h = attn(self._block(block, h, emb))
                skips.append(h)
            if not isinstance(level.resample, nn.Identity):
                h = level.resample(h)
                skips.append(h)
        h = self.mid_res2(self.mid_attn(self.mid_res1(h, emb)), emb)
        for level in self.up:
            for block, attn in zip(level.res, level.attn):
                h = attn(self._block(block, torch.cat([h, skips.pop()], dim=1), emb))
            h = level.resample(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    # ------------------------------------------------------------------ inspection
    def parameter_summary(self, print_table: bool = True) -> list[dict]:
        """Parameters per part of the network (embeddings, each encoder level, middle, each decoder level, output).

        Returns a list of rows ``{"part", "resolution", "channels", "params"}`` (the last row is the
        total) and prints them as a table unless ``print_table=False``.
        """
        c = self.config

        def count(*modules) -> int:
            return sum(p.numel() for m in modules if m is not None for p in m.parameters())

        rows = [{"part": "time embedding", "resolution": "-", "channels": c.base_channels * c.time_embed_mult, "params": count(self.time_embed)}]
        if self.class_embed is not None:
            rows.append({"part": f"class embedding ({c.num_classes}+1)", "resolution": "-", "channels": c.base_channels * c.time_embed_mult, "params": count(self.class_embed)})
        rows.append({"part": "conv_in", "resolution": c.image_size, "channels": c.base_channels, "params": count(self.conv_in)})
        for i, level in enumerate(self.down):
            attn = " +attn" if c.resolutions[i] in c.attention_resolutions else ""
            rows.append({"part": f"down {i}{attn}", "resolution": c.resolutions[i], "channels": c.base_channels * c.channel_mults[i], "params": count(level)})
        rows.append({"part": "middle" + (" +attn" if c.mid_attention else ""), "resolution": c.resolutions[-1], "channels": c.base_channels * c.channel_mults[-1], "params": count(self.mid_res1, self.mid_attn, self.mid_res2)})
        for j, level in enumerate(self.up):
            i = len(c.channel_mults) - 1 - j
            attn = " +attn" if c.resolutions[i] in c.attention_resolutions else ""
            rows.append({"part": f"up {i}{attn}", "resolution": c.resolutions[i], "channels": c.base_channels * c.channel_mults[i], "params": count(level)})
        rows.append({"part": "output", "resolution": c.image_size, "channels": c.out_channels, "params": count(self.norm_out, self.conv_out)})
        total = sum(p.numel() for p in self.parameters())
        assert total == sum(r["params"] for r in rows), "parameter_summary missed a module"
        rows.append({"part": "total", "resolution": "", "channels": "", "params": total})
        if print_table:
            print(f"{'part':<26}{'res':>6}{'ch':>7}{'params':>14}")
            for r in rows:
                print(f"{r['part']:<26}{r['resolution']!s:>6}{r['channels']!s:>7}{r['params']:>14,}")
        return rows
