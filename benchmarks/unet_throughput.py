"""Throughput of ddpm_lib's UNet against diffusers' UNet2DModel at the same architecture.

Both models are built at a matched configuration (same channels per level, residual blocks,
attention placement and heads, GroupNorm groups, time-embedding width, dropout); the script loads
ddpm_lib's weights into the diffusers model (``ddpm_lib.models.diffusers_compat.to_diffusers``) and checks
both give the same output before timing, so the two really compute the same function. It then times, interleaved round by round (A B, B A,
A B, ...; warm-up first; ``benchmarks/timing.py``):

- training: forward + MSE loss + backward + AdamW step, in steps/s and images/s;
- inference: a forward pass under ``torch.inference_mode``, in images/s;

and prints the throughput ratio ddpm_lib / diffusers (> 1: ddpm_lib is faster) as the median of the
per-round ratios with their spread (min..max), next to the ratio of the medians; a run where the two
disagree by more than 10% or the per-round ratios spread by more than 1.25x is flagged NOISY (outside
load changed during the run: rerun it, with more rounds). FLOPs per image are counted
with ``torch.utils.flop_counter.FlopCounterMode`` (matmuls and convolutions, 2 FLOPs per
multiply-add) to report the achieved GFLOP/s.

    python benchmarks/unet_throughput.py --preset fashion_mnist --batch 32 --threads 1
    python benchmarks/unet_throughput.py --device cuda --dtype bf16 --channels-last --compile --batch 256
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.timing import fmt_speedup, interleaved_times, speedup  # noqa: E402
from ddpm_lib.models.diffusers_compat import to_diffusers  # noqa: E402
from ddpm_lib.models.unet import PRESETS, UNet, UNetConfig  # noqa: E402


class DiffusersAdapter(torch.nn.Module):
    """Gives UNet2DModel the course's call convention ``model(x, t, labels) -> tensor``."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t, labels=None):
        return self.model(x, t, class_labels=labels, return_dict=False)[0]


def count_flops(model, x, t, labels, train: bool) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        if train:
            F.mse_loss(model(x, t, labels), torch.zeros_like(x)).backward()
        else:
            with torch.no_grad():
                model(x, t, labels)
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="fashion_mnist", choices=sorted(PRESETS))
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="bf16 = autocast to bfloat16")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile both models")
    p.add_argument("--rounds", type=int, default=5, help="timed rounds per model (interleaved)")
    p.add_argument("--steps", type=int, default=3, help="training steps / forward passes per round")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per model before the rounds")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (same for both models)")
    p.add_argument("--num-classes", type=int, default=None, help="class-conditional variant")
    p.add_argument("--skip", choices=["train", "inference"], default=None)
    p.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    cfg = PRESETS[args.preset]
    if args.num_classes is not None:
        cfg = UNetConfig(**{**cfg.to_dict(), "num_classes": args.num_classes})
    ours = UNet(cfg)
    # random weights everywhere (the zero-initialised layers would make the equivalence check trivial)
    with torch.no_grad():
        for q in ours.parameters():
            q.add_(torch.randn_like(q) * 0.02)
    try:
        theirs = DiffusersAdapter(to_diffusers(ours))
    except ValueError as e:  # an architecture UNet2DModel cannot express
        raise SystemExit(str(e)) from None
    n_ours = sum(q.numel() for q in ours.parameters())
    n_theirs = sum(q.numel() for q in theirs.parameters())

    B, C, S = args.batch, cfg.in_channels, cfg.image_size
    g = torch.Generator().manual_seed(1)
    x = torch.randn(B, C, S, S, generator=g).to(device)
    t = torch.randint(0, 1000, (B,), generator=g).to(device)
    labels = None if cfg.num_classes is None else torch.randint(0, cfg.num_classes + 1, (B,), generator=g).to(device)
    noise = torch.randn(B, C, S, S, generator=g).to(device)
    if args.channels_last:
        x, noise = x.to(memory_format=torch.channels_last), noise.to(memory_format=torch.channels_last)

    models = {"ddpm_lib": ours, "diffusers": theirs}
    for m in models.values():
        m.to(device)
        if args.channels_last:
            m.to(memory_format=torch.channels_last)
    # same function? (eval mode: no dropout; fp32)
    with torch.no_grad():
        a, b = ours.eval()(x, t, labels), theirs.eval()(x, t, labels)
    max_diff = (a - b).abs().max().item()
    if max_diff > 1e-3 * max(1.0, a.abs().max().item()):
        raise SystemExit(f"the two models disagree (max |diff| = {max_diff:.3g}): the configurations are not matched")

    flops = {name: {"train": count_flops(m.train(), x, t, labels, True) / B,
                    "inference": count_flops(m.eval(), x, t, labels, False) / B} for name, m in models.items()}

    autocast = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if args.dtype == "bf16" else contextlib.nullcontext
    runners = {}
    for name, m in models.items():
        fn = torch.compile(m) if args.compile else m
        opt = torch.optim.AdamW(m.parameters(), lr=1e-4)

        def train_step(fn=fn, m=m, opt=opt):
            m.train()
            with autocast():
                loss = F.mse_loss(fn(x, t, labels).float(), noise)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)

        def infer_step(fn=fn, m=m):
            m.eval()
            with torch.inference_mode(), autocast():
                fn(x, t, labels)

        runners[name] = {"train": train_step, "inference": infer_step}

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    results = {"args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "date": date,
               "torch": torch.__version__, "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None, "threads": torch.get_num_threads(),
               "params": {"ddpm_lib": n_ours, "diffusers": n_theirs}, "max_abs_diff": max_diff,
               "flops_per_image": flops}
    print(f"preset={args.preset} batch={B} device={device} dtype={args.dtype} channels_last={args.channels_last} "
          f"compile={args.compile} threads={torch.get_num_threads()} torch={torch.__version__} date={date} "
          f"load average {results['load_average']}")
    print(f"parameters: ddpm_lib {n_ours:,}  diffusers {n_theirs:,}  (ratio {n_ours / n_theirs:.4f}); "
          f"same output: max |diff| {max_diff:.2e}")
    for mode in ("train", "inference"):
        if args.skip == mode:
            continue
        times = interleaved_times({name: runners[name][mode] for name in models}, rounds=args.rounds,
                                  steps=args.steps, sync=sync, warmup=args.warmup)
        med = {name: statistics.median(v) for name, v in times.items()}
        unit = "train step" if mode == "train" else "forward"
        print(f"\n{mode}: seconds per {unit} (median of {args.rounds} interleaved rounds of {args.steps})")
        for name in models:
            gflops = flops[name][mode] * B / med[name] / 1e9
            spread = f"{min(times[name]):.4f}..{max(times[name]):.4f}"
            print(f"  {name:<10} {med[name]:.4f} s [{spread}]  {1 / med[name]:8.2f} steps/s  "
                  f"{B / med[name]:9.1f} images/s  {flops[name][mode] / 1e9:.3f} GFLOP/image  {gflops:7.1f} GFLOP/s")
        # the two timings of a round ran back to back, under the same outside load: their ratio is the
        # steadier estimate on a shared machine
        sp = speedup(times["diffusers"], times["ddpm_lib"])
        print(f"  ddpm_lib/diffusers throughput, paired [min..max over rounds]: {fmt_speedup(sp)}"
              f"  (ratio of the medians {sp['from_medians']:.3f})")
        results[mode] = {"seconds": times, "median": med, "ratio": sp["from_medians"], "paired_ratio": sp["paired"],
                         "paired_min": sp["min"], "paired_max": sp["max"], "noisy": sp["noisy"],
                         "noisy_because": sp["noisy_because"]}
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
