"""Trials for the CIFAR-10 starter weights (issue 25): measure checkpoints as ``tools.build_pretrained`` does,
and interpolate two checkpoints' EMA weights.

    # FID on the shipped classifier and class accuracy, 500 DDIM-50 samples, one line of JSON per CKPT,W,SEED
    DDPM_DATA_DIR=<CIFAR-10> python -m benchmarks.starter_trials eval pretrained:cifar10,3,0 RUN/final.pt,0,0

    # weight-space interpolation (a "model soup", Wortsman et al. 2022, arXiv:2203.05482):
    # EMA weights (1 - a) * A + a * B, written as a sampling checkpoint (fp32) with B's configs
    python -m benchmarks.starter_trials soup pretrained:cifar10 RUN/final.pt 0.5 OUT.pt

A checkpoint copied out of a run folder must be moved outside it: ``load_checkpoint`` refuses files in a run
folder that match no checksum the run recorded.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from ddpm_lib.training.checkpoint import export_slim, read_payload
from tools.build_pretrained import measure_quality


def soup(a_path: str, b_path: str, a: float, out: str) -> None:
    """Write ``(1 - a) * A + a * B`` of the two checkpoints' EMA weights (same architecture) to ``out``."""
    pa, _ = read_payload(a_path)
    pb, _ = read_payload(b_path)
    wa, wb = pa["ema"]["shadow"], pb["ema"]["shadow"]
    if wa.keys() != wb.keys():
        raise SystemExit(f"{a_path} and {b_path} hold different architectures: they cannot be interpolated.")
    mixed = {k: (1 - a) * wa[k].float() + a * wb[k].float() if wb[k].is_floating_point() else wb[k] for k in wb}
    export_slim({**pb, "ema": {**pb["ema"], "shadow": mixed}}, out, dtype=torch.float32)
    print(f"wrote {out}: {1 - a:g} x {a_path} + {a:g} x {b_path}")


def measure(spec: str, num: int) -> dict:
    """``spec`` = ``CKPT,W,SEED``: what ``tools.build_pretrained`` records for the shipped file (FID on the shipped
    CIFAR-10 classifier next to its floor, and how often it names the requested class), for ``num`` DDIM-50
    samples of CKPT at guidance W."""
    ckpt, w, seed = spec.rsplit(",", 2)
    t = time.time()
    q = measure_quality(ckpt, "cifar10", {"sampler": "ddim", "steps": 50}, num, int(seed), float(w))
    return {"ckpt": ckpt, "seconds": round(time.time() - t), **q}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("eval", help="measure CKPT,W,SEED specs")
    e.add_argument("specs", nargs="+")
    e.add_argument("--num", type=int, default=500)
    s = sub.add_parser("soup", help="interpolate the EMA weights of A and B")
    s.add_argument("a_ckpt")
    s.add_argument("b_ckpt")
    s.add_argument("a", type=float)
    s.add_argument("out")
    args = p.parse_args()
    if args.cmd == "soup":
        soup(args.a_ckpt, args.b_ckpt, args.a, args.out)
    else:
        for spec in args.specs:
            print(json.dumps(measure(spec, args.num)), flush=True)


if __name__ == "__main__":
    main()
