"""Images per second of the full DDPM training step, for the course's presets and speed switches.

One step = sample t and noise, build x_t (fp32), UNet forward (+ loss) under the chosen precision,
backward, gradient clipping at 1.0, AdamW step, EMA update - exactly what ``ddpm_lib.training.trainer``
does per step, with the batch already on the device (so data loading is not measured).
Configurations: preset x precision (fp32, bf16 autocast) x mode (eager, torch.compile) x dropout.

All configurations are built first, warmed up (compiled), then timed **interleaved in one process**
(``benchmarks/timing.py``: every configuration once per round, in a rotating order), so outside load
hits them all alike. The table gives each configuration's median images/s [min..max over rounds], and
its speed relative to the preset's first configuration (fp32, eager, the preset's dropout) as the
median of the per-round ratios [min..max]; a ratio whose rounds disagree is flagged NOISY.

    python benchmarks/train_throughput.py                                  # CPU: small batch, few steps
    python benchmarks/train_throughput.py --presets fashion_mnist --dropout preset,0 --rounds 9
    python benchmarks/train_throughput.py --device cuda --batch 128 --modes eager,compiled --json r.json

On a CPU the default skips ``compiled`` (inductor's C++ compile takes minutes per model there; pass
``--modes eager,compiled`` to try it); bf16 on a CUDA GPU without bf16 support is skipped with a note.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.timing import fmt_speedup, interleaved_times, median_spread, speedup  # noqa: E402
from ddpm_lib.diffusion.losses import training_loss  # noqa: E402
from ddpm_lib.diffusion.schedules import make_schedule  # noqa: E402
from ddpm_lib.models.ema import EMA  # noqa: E402
from ddpm_lib.models.unet import PRESETS, UNet  # noqa: E402


def make_step(model, schedule, x, precision: str, compiled: bool):
    """One full training step of ``model`` on the fixed batch ``x`` (returns the loss tensor)."""
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


def build(preset: str, precision: str, mode: str, dropout: float | None, device: torch.device, batch: int,
          channels_last: bool):
    torch.manual_seed(0)
    overrides = {} if dropout is None else {"dropout": dropout}
    model = UNet.from_preset(preset, **overrides).to(device)
    cfg = model.config
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    x = torch.rand(batch, cfg.in_channels, cfg.image_size, cfg.image_size, device=device) * 2 - 1
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    schedule = make_schedule("linear", 1000).to(device)
    info = {"preset": preset, "precision": precision, "mode": mode, "dropout": cfg.dropout, "batch": batch,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    return make_step(model, schedule, x, precision, mode == "compiled"), info


FACTORS = ("precision", "mode", "dropout")


def factor_effects(rows: list[dict], times: dict[str, list[float]]) -> list[dict]:
    """For each row and each switch (precision, mode, dropout), the paired speedup over the row that
    differs only in that switch, set to the first value it takes in the table (fp32, eager, the
    preset's dropout)."""
    first = {f: {} for f in FACTORS}
    for r in rows:
        for f in FACTORS:
            first[f].setdefault(r["preset"], r[f])
    out = []
    for r in rows:
        for f in FACTORS:
            if r[f] == first[f][r["preset"]]:
                continue
            base = next((b for b in rows if b["preset"] == r["preset"] and b[f] == first[f][r["preset"]]
                         and all(b[g] == r[g] for g in FACTORS if g != f)), None)
            if base is None:
                continue
            sp = speedup(times[base["name"]], times[r["name"]])
            others = ", ".join(f"{g}={r[g]}" for g in FACTORS if g != f)
            out.append({"preset": r["preset"], "factor": f, "from": base[f], "to": r[f], "others": others,
                        "speedup": sp})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda if available)")
    p.add_argument("--presets", default="fashion_mnist,cifar10_ddpm", help="comma-separated UNet presets")
    p.add_argument("--precisions", default="fp32,bf16", help="comma-separated: fp32, bf16 (autocast)")
    p.add_argument("--modes", default=None, help="eager,compiled (default: both on CUDA, eager on CPU)")
    p.add_argument("--dropout", default="preset",
                   help="comma-separated dropout values to compare, 'preset' = the preset's own (default: preset)")
    p.add_argument("--batch", type=int, default=None, help="default 128 on CUDA, 8 on CPU")
    p.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 7 CUDA, 5 CPU)")
    p.add_argument("--steps", type=int, default=None, help="steps per configuration and round (default 10 CUDA, 1 CPU)")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first; default 5 CUDA (+compile), 1 CPU")
    p.add_argument("--channels-last", action="store_true", help="channels-last model and batch")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads on CPU")
    p.add_argument("--json", default=None, help="also write the results here")
    a = p.parse_args(argv)

    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    cuda = device.type == "cuda"
    if a.threads:
        torch.set_num_threads(a.threads)
    modes = (a.modes or ("eager,compiled" if cuda else "eager")).split(",")
    batch = a.batch or (128 if cuda else 8)
    rounds = a.rounds or (7 if cuda else 5)
    steps = a.steps or (10 if cuda else 1)
    warmup = a.warmup if a.warmup is not None else (5 if cuda else 1)
    dropouts = [None if d.strip() == "preset" else float(d) for d in a.dropout.split(",")]
    notes = []
    if not cuda and "compiled" not in modes:
        notes.append("compiled: skipped on CPU by default (inductor compiles C++ for minutes); --modes eager,compiled to try")
    precisions = a.precisions.split(",")
    if cuda and "bf16" in precisions and not torch.cuda.is_bf16_supported():
        precisions.remove("bf16")
        notes.append("bf16: skipped, this GPU has no bf16 support")
    hw = torch.cuda.get_device_name(device) if cuda else f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads"
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    print(f"# training step throughput on {device} ({hw}), torch {torch.__version__}, batch {batch}, {date}, "
          f"load average {load}; {rounds} interleaved rounds of {steps} step(s) after {warmup} warm-up")

    runners, infos = {}, {}
    for preset in a.presets.split(","):
        if preset not in PRESETS:
            raise SystemExit(f"--presets: unknown preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
        for precision in precisions:
            for mode in modes:
                for dropout in dropouts:
                    name = f"{preset}/{precision}/{mode}/dropout={'preset' if dropout is None else dropout}"
                    try:
                        step, info = build(preset, precision, mode, dropout, device, batch, a.channels_last)
                        t0 = time.perf_counter()
                        for _ in range(warmup):
                            step()
                        if cuda:
                            torch.cuda.synchronize(device)
                        info["warmup_s"] = time.perf_counter() - t0
                    except Exception as e:  # noqa: BLE001 - report and carry on with the other combinations
                        notes.append(f"{name}: failed ({type(e).__name__}: {str(e).splitlines()[0][:120]})")
                        continue
                    runners[name], infos[name] = step, info
                    print(f"  built {name} ({info['params_m']:.1f} M params, warm-up {info['warmup_s']:.1f} s)", flush=True)

    sync = (lambda: torch.cuda.synchronize(device)) if cuda else (lambda: None)
    times = interleaved_times(runners, rounds=rounds, steps=steps, sync=sync, warmup=0)
    rows = []
    for name, ts in times.items():
        info = infos[name]
        med, lo, hi = median_spread(ts)
        base = next(n for n in times if infos[n]["preset"] == info["preset"])
        sp = speedup(times[base], ts)
        rows.append({**info, "name": name, "seconds": ts, "step_s": med, "img_per_s": batch / med,
                     "img_per_s_min": batch / hi, "img_per_s_max": batch / lo, "baseline": base,
                     "speedup": {k: v for k, v in sp.items() if k != "per_round"}, "speedup_per_round": sp["per_round"]})
    print()
    print("| preset | params | precision | mode | dropout | img/s median [min..max] | vs first row of the preset, paired [min..max] |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        vs = "1 (baseline)" if r["name"] == r["baseline"] else fmt_speedup({**r["speedup"], "per_round": r["speedup_per_round"]})
        print(f"| {r['preset']} | {r['params_m']:.1f} M | {r['precision']} | {r['mode']} | {r['dropout']} | "
              f"{r['img_per_s']:.1f} [{r['img_per_s_min']:.1f}..{r['img_per_s_max']:.1f}] | {vs} |")
    effects = factor_effects(rows, times)
    if effects:
        print("\nOne switch at a time (same preset and other settings; paired speedup [min..max over rounds]):")
        for e in effects:
            print(f"  {e['preset']:14s} {e['factor']:9s} {e['from']!s:>8} -> {e['to']!s:<8} ({e['others']}): "
                  f"{fmt_speedup(e['speedup'])}")
    for n in notes:
        print(f"note: {n}")
    if a.json:
        Path(a.json).write_text(json.dumps({"device": str(device), "hardware": hw, "torch": torch.__version__,
                                            "date": date, "load_average": load, "rounds": rounds, "steps": steps,
                                            "batch": batch, "rows": rows, "effects": effects, "notes": notes},
                                           indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
