"""Named training recipes: complete, documented training setups, one per dataset and mode.

A recipe fixes everything a run depends on (dataset, UNet preset, schedule, steps, batch size, lr
and warm-up, EMA, precision) plus the sampler it is meant to be sampled with. The course's three
modes (:mod:`ddpm_lib.settings`) each pick one recipe per dataset: ``settings.recipe("cifar10")`` is
``"cifar10_cpu"`` in cpu mode.

    from ddpm_lib.training.config import TrainConfig
    cfg = TrainConfig.from_recipe("fashion_mnist_cpu", out_dir="runs/mine")   # any field overrides
    python -m ddpm_lib train --recipe fashion_mnist_cpu --out runs/mine         # the same from a shell

``cost`` says what a run costs; every figure in it was measured (``benchmarks/RESULTS.md`` has the
commands) or is labelled an estimate with its basis.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Recipe:
    """A complete training setup. ``train`` holds :class:`~ddpm_lib.training.config.TrainConfig` fields,
    ``sample`` the sampler defaults (``sampler``, ``steps``, and ``guidance`` for conditional models)."""

    name: str
    description: str
    cost: str
    train: MappingProxyType = field(repr=False)
    sample: MappingProxyType = field(repr=False)

    def with_(self, **changes: Any) -> Recipe:
        """This recipe with some training fields changed (``recipe.with_(steps=300)``), named
        ``"<name>+steps=300"`` so that a shortened run never passes for the recipe itself. The result is
        validated when it becomes a config (:meth:`TrainConfig.from_recipe <ddpm_lib.training.config.TrainConfig.from_recipe>`)."""
        label = ",".join(f"{k}={v}" for k, v in changes.items())
        return dataclasses.replace(self, name=f"{self.name}+{label}", train=MappingProxyType({**self.train, **changes}))


def _recipe(name: str, description: str, cost: str, sample: dict, **train: Any) -> Recipe:
    return Recipe(name, description, cost, MappingProxyType(train), MappingProxyType(sample))


_FMNIST_SAMPLE = {"sampler": "ddim", "steps": 50}
_CIFAR_SAMPLE = {"sampler": "ddim", "steps": 50, "guidance": 3.0}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        _recipe(
            "fashion_mnist_fast",
            "CI smoke test: the tiny UNet, T = 100, for 60 steps on 512 images (checks code, not images).",
            "seconds on any CPU",
            _FMNIST_SAMPLE,
            dataset="fashion_mnist", max_items=512, preset="tiny", num_timesteps=100, steps=60, batch_size=16, lr=1e-3,
            warmup_steps=10, ema_decay=0.99, checkpoint_every=0, log_every=10,
        ),
        _recipe(
            "fashion_mnist_cpu",
            "Recognisable garments from your own training on a laptop: a 0.69 M-parameter UNet "
            "(preset fashion_mnist_cpu), batch 64, lr 2e-3 with a cosine decay that follows the clock, EMA 0.995, "
            "bf16 where the CPU has it, for 8 minutes; sampled with DPM-Solver++ in 20 steps.",
            "8 min of training by the clock (minutes=8, start-up included; the final checkpoint and grid follow). "
            "On 2 idle CPU cores with bf16 that was 2,381 steps, FID 20.8 (DPM-Solver++-20) and 28.6 (DDIM-50) "
            "on the shipped classifier, floor 2.4 (measured 2026-12-02: benchmarks/RESULTS.md). A slower machine "
            "trains fewer steps in the same 8 minutes, with the learning rate decayed as far; the 4,000-step cap "
            "only ends a run on a machine 1.7x faster",
            {"sampler": "dpm++", "steps": 20},
            dataset="fashion_mnist", preset="fashion_mnist_cpu", steps=4000, minutes=8.0, batch_size=64, lr=2e-3,
            warmup_steps=100, min_lr_ratio=0.1, ema_decay=0.995, checkpoint_every=500, log_every=50,
            sample_every=400, num_samples=16,
        ),
        _recipe(
            "fashion_mnist_gpu",
            "The 3.9 M-parameter fashion_mnist preset for 20,000 steps at batch 128 (lr 2e-4, EMA 0.9999).",
            "estimate: ~30 min on a recent GPU (unmeasured: no GPU has run it yet)",
            _FMNIST_SAMPLE,
            dataset="fashion_mnist", preset="fashion_mnist", steps=20_000, batch_size=128, lr=2e-4,
            warmup_steps=500, ema_decay=0.9999, checkpoint_every=1000, sample_every=2000,
        ),
        _recipe(
            "cifar10_fast",
            "CI smoke test: a tiny class-conditional 3-channel UNet, T = 100, for 60 steps on 512 images.",
            "seconds on any CPU",
            _CIFAR_SAMPLE,
            dataset="cifar10", max_items=512, preset="tiny", unet={"in_channels": 3}, num_timesteps=100, class_conditional=True,
            label_dropout=0.1, hflip=True, steps=60, batch_size=16, lr=1e-3, warmup_steps=10, ema_decay=0.99,
            checkpoint_every=0, log_every=10,
        ),
        _recipe(
            "cifar10_cpu",
            "Class-conditional CIFAR-10 with classifier-free guidance on a CPU: the 1.5 M-parameter cifar10_cpu "
            "preset, label dropout 0.1, flips, batch 64, lr 1e-3 with cosine decay, EMA 0.999, bf16. The "
            "starter weights ddpm_lib.pretrained 'cifar10' are this recipe.",
            "0.78 s per step on one quiet CPU core with bf16 (82 img/s at batch 64, measured at the start of the "
            "starter run), so about 65 min for the 5,000 steps on an idle core (an estimate from that rate; the "
            "starter run took 2.9 h on a shared machine)",
            _CIFAR_SAMPLE,
            dataset="cifar10", preset="cifar10_cpu", class_conditional=True, label_dropout=0.1, hflip=True,
            steps=5000, batch_size=64, lr=1e-3, warmup_steps=200, min_lr_ratio=0.1, ema_decay=0.999,
            checkpoint_every=250, log_every=25, sample_every=1000, num_samples=20,
        ),
        _recipe(
            "cifar10_gpu",
            "Ho et al. (2020)'s CIFAR-10 model (35.7 M parameters, dropout 0.1, flips, lr 2e-4, warm-up 5,000, "
            "EMA 0.9999), here class-conditional with label dropout 0.1 for guidance, for 800,000 steps at batch 128.",
            "estimate: Ho et al. report 10.6 h for 800k steps on a TPU v3-8; about a day on one modern GPU",
            _CIFAR_SAMPLE,
            dataset="cifar10", preset="cifar10_ddpm", class_conditional=True, label_dropout=0.1, hflip=True,
            steps=800_000, batch_size=128, lr=2e-4, warmup_steps=5000, grad_clip=1.0, ema_decay=0.9999,
            checkpoint_every=5000, sample_every=20_000,
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    """The recipe called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"unknown recipe {name!r}: choose one of {', '.join(RECIPES)}.") from None


def recipes_table() -> str:
    """One line per recipe (name, cost, description), for ``--help`` and the README."""
    width = max(map(len, RECIPES))
    return "\n".join(f"  {r.name:<{width}}  {r.cost}. {r.description}" for r in RECIPES.values())
