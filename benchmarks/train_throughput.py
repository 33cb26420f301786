"""Images per second of the full DDPM training step, for the course's presets and speed switches.

One step = sample t and noise, build x_t (fp32), UNet forward (+ loss) under the chosen precision,
backward, gradient clipping at 1.0, AdamW step, EMA update - exactly what ``ddpm_lib.trainer``
does per step, with the batch already on the device (so data loading is not measured).
Combinations: preset x precision (fp32, bf16 autocast) x mode (eager, torch.compile). The table shows
images/s and the ratio to the preset's fp32-eager figure.

    python benchmarks/train_throughput.py                                  # CPU: small batch, few steps
    python benchmarks/train_throughput.py --device cuda --batch 128 --steps 50 --modes eager,compiled
    python benchmarks/train_throughput.py --json results.json

On a CPU the default skips ``compiled`` (inductor's C++ compile takes minutes per model there; pass
``--modes eager,compiled`` to try it); bf16 on a CUDA GPU without bf16 support is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ddpm_lib.ema import EMA  # noqa: E402
from ddpm_lib.losses import training_loss  # noqa: E402
from ddpm_lib.schedules import make_schedule  # noqa: E402
from ddpm_lib.unet import UNet  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, schedule, x, precision: str, compiled: bool):
    device = x.device
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    ema = EMA(model, decay=0.9999)
    net = torch.compile(model) if compiled else model
    gen = torch.Generator(device=device).manual_seed(0)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = training_loss(net, schedule, x, generator=gen)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        ema.update(model)
        return loss

    return step


def bench(preset: str, precision: str, mode: str, device: torch.device, batch: int, steps: int, warmup: int,
          channels_last: bool) -> dict:
    torch.manual_seed(0)
    model = UNet.from_preset(preset).to(device)
    cfg = model.config
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    schedule = make_schedule("linear", 1000).to(device)
    step = make_step(model, schedule, x, precision, mode == "compiled")
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    warm_s = time.perf_counter() - t0
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        sync(device)
        times.append(time.perf_counter() - t)
    med = statistics.median(times)
    return {"preset": preset, "precision": precision, "mode": mode, "batch": batch, "steps": steps,
            "step_s": med, "img_per_s": batch / med, "warmup_s": warm_s,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--presets", default="fashion_mnist,cifar10_ddpm")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--modes", default=None, help="eager,compiled (default: both on CUDA, eager on CPU)")
    p.add_argument("--batch", type=int, default=None, help="default 128 on CUDA, 8 on CPU")
    p.add_argument("--steps", type=int, default=None, help="timed steps (median taken); default 30 CUDA, 3 CPU")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first; default 5 CUDA (+compile), 1 CPU")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    modes = (a.modes or ("eager,compiled" if cuda else "eager")).split(",")
    batch = a.batch or (128 if cuda else 8)
    steps = a.steps or (30 if cuda else 3)
    warmup = a.warmup if a.warmup is not None else (5 if cuda else 1)
    notes = []
    if not cuda and "compiled" not in modes:
        notes.append("compiled: skipped on CPU by default (inductor compiles C++ for minutes); --modes eager,compiled to try")
    precisions = a.precisions.split(",")
    if cuda and "bf16" in precisions and not torch.cuda.is_bf16_supported():
        precisions.remove("bf16")
        notes.append("bf16: skipped, this GPU has no bf16 support")
    hw = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    print(f"# training step throughput on {device} ({hw}), torch {torch.__version__}, batch {batch}, "
          f"median of {steps} steps after {warmup} warm-up")
    rows = []
    for preset in a.presets.split(","):
        for precision in precisions:
            for mode in modes:
                try:
                    r = bench(preset, precision, mode, device, batch, steps, warmup, a.channels_last)
                except Exception as e:  # noqa: BLE001 - report and carry on with the other combinations
                    notes.append(f"{preset} {precision} {mode}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                    continue
                rows.append(r)
                print(f"  {preset:14s} {precision:5s} {mode:8s} {r['img_per_s']:9.1f} img/s", flush=True)
    print()
    print("| preset | params | precision | mode | img/s | vs fp32 eager |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        base = next((b for b in rows if b["preset"] == r["preset"] and b["precision"] == "fp32" and b["mode"] == "eager"), None)
        ratio = f"{r['img_per_s'] / base['img_per_s']:.2f}x" if base else "-"
        print(f"| {r['preset']} | {r['params_m']:.1f} M | {r['precision']} | {r['mode']} | {r['img_per_s']:.1f} | {ratio} |")
    for n in notes:
        print(f"note: {n}")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": str(device), "hardware": hw, "torch": torch.__version__,
                                            "rows": rows, "notes": notes}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
