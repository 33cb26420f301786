"""What bf16 autocast buys and costs when sampling: the network's forward pass, float32 against bf16.

Notebook 08 runs its samplers' network calls under bf16 autocast on a machine where the recipes train in bf16
(``resolve_mixed_precision("auto", device) == "bf16"``). This script measures, for one checkpoint, the two
sides of that choice:

- speed: forward passes of a batch under ``torch.inference_mode``, float32 and bf16 timed interleaved round
  by round (``benchmarks/timing.py``), reported as the median of the per-round ratios with their spread;
- accuracy: the relative difference ``|eps_bf16 - eps_fp32| / |eps_fp32|`` on the same batch, at several t.

    python benchmarks/sampling_precision.py --ckpt pretrained:fashion_mnist --batch 200 --rounds 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.timing import fmt_speedup, interleaved_times, median_spread, speedup  # noqa: E402
from ddpm_lib.loading import load_model  # noqa: E402


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", default="pretrained:fashion_mnist")
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--steps", type=int, default=2, help="forward passes per round")
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model, schedule, cfg, _ = load_model(args.ckpt, device="cpu")
    c, s = model.config.in_channels, model.config.image_size
    x = torch.randn(args.batch, c, s, s, generator=torch.Generator().manual_seed(0))
    labels = torch.zeros(args.batch, dtype=torch.long) if model.config.num_classes else None

    def forward(bf16: bool, t: int = schedule.num_timesteps // 2):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            return model(x, torch.full((args.batch,), t), labels).float()

    times = interleaved_times({"fp32": lambda: forward(False), "bf16": lambda: forward(True)},
                              rounds=args.rounds, steps=args.steps)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.ckpt}, batch {args.batch}")
    for name, ts in times.items():
        med, lo, hi = median_spread(ts)
        print(f"  {name}: {args.batch / med:7.1f} images/s per forward pass  [{args.batch / hi:.1f}..{args.batch / lo:.1f}]")
    print(f"  bf16 speed-up (paired): {fmt_speedup(speedup(times['fp32'], times['bf16']))}")
    for t in (10, schedule.num_timesteps // 4, schedule.num_timesteps // 2, schedule.num_timesteps - 1):
        e32, e16 = forward(False, t), forward(True, t)
        print(f"  t = {t:4d}: |eps_bf16 - eps_fp32| / |eps_fp32| = {float((e16 - e32).norm() / e32.norm()):.3%}")


if __name__ == "__main__":
    main()
