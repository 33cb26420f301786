"""Cost of one training step of each recipe-search trial, relative to the recipe's, timed interleaved.

    python benchmarks/recipe_step_cost.py --trials benchmarks/recipe_trials.json --threads 2 --rounds 7

Each trial's model (the recipe's preset with the trial's ``unet`` overrides) and batch size, one full bf16 training
step (``train_throughput.make_step``: loss, backward, clipping, AdamW, EMA) on a batch already in memory, every
configuration once per round in a rotating order (``benchmarks/timing.py``). Prints seconds per step (median
[min..max]) and the per-round ratio to the recipe's step with its spread: a ratio measured this way holds under
outside load, so ``steps the recipe reaches in 8 minutes / ratio`` is the step count a trial can afford in the same
time (the recipe's own end-to-end rate is in benchmarks/RESULTS.md).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import fmt_speedup, interleaved_times, median_spread, speedup  # noqa: E402
from train_throughput import make_step  # noqa: E402

from ddpm_lib.diffusion.schedules import make_schedule  # noqa: E402
from ddpm_lib.models.unet import UNet  # noqa: E402
from ddpm_lib.training.config import TrainConfig  # noqa: E402


def build(recipe: str, fields: dict):
    cfg = TrainConfig.from_recipe(recipe, **fields)
    torch.manual_seed(0)
    model = UNet.from_preset(cfg.preset, **{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.unet.items()})
    c = model.config
    x = torch.rand(cfg.batch_size, c.in_channels, c.image_size, c.image_size) * 2 - 1
    step = make_step(model, make_schedule(cfg.schedule, cfg.num_timesteps), x, "bf16", compiled=False)
    return step, sum(p.numel() for p in model.parameters()), cfg.batch_size


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", required=True)
    p.add_argument("--recipe", default="fashion_mnist_cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=2, help="steps per configuration and round")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    trials = {"recipe": {}, **json.loads(Path(a.trials).read_text())}
    built = {name: build(a.recipe, {k: v for k, v in f.items() if k in ("unet", "batch_size")}) for name, f in trials.items()}
    times = interleaved_times({n: b[0] for n, b in built.items()}, rounds=a.rounds, steps=a.steps)
    print(f"torch {torch.__version__}, {a.threads} thread(s), {a.rounds} rounds x {a.steps} steps, bf16 autocast")
    for name, (_, params, batch) in built.items():
        med, lo, hi = median_spread(times[name])
        print(f"{name:32s} {params / 1e6:5.2f} M  batch {batch:3d}  {med:.3f} s/step [{lo:.3f}..{hi:.3f}]  "
              f"speed vs the recipe (>1: faster): {fmt_speedup(speedup(times['recipe'], times[name]))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
