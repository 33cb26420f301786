"""Search for the `fashion_mnist_cpu` recipe: train each trial, then measure it the way the recipe is judged.

Each trial is a set of TrainConfig fields laid over the recipe. It is trained (by steps, or by the clock with
``minutes``), then evaluated with ``ddpm_lib.evaluation.evaluate`` (FID / KID on the shipped Fashion-MNIST
classifier, DDIM-50, against the real test images, next to the real-vs-real floor at the same n), and a 64-image
grid is written. One JSON line per trial goes to ``--results`` (appended, so a search can be stopped and resumed:
trials already there are skipped).

    DDPM_DATA_DIR=../shared/data/fashion-mnist-partial python benchmarks/recipe_search.py \\
        --trials benchmarks/recipe_trials.json --runs /tmp/search --results benchmarks/recipe_search.jsonl \\
        --grids docs/search --num 1000 --threads 1

A trial's wall time is only comparable with others run under the same load: the relative cost of two UNets is
measured interleaved by ``benchmarks/unet_throughput.py``; the recipe itself is checked by the clock
(``--minutes``) on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ddpm_lib.diffusion.samplers import sample
from ddpm_lib.evaluation.evaluate import evaluate, format_report
from ddpm_lib.loading import load_model
from ddpm_lib.settings import seed_everything
from ddpm_lib.training.config import TrainConfig
from ddpm_lib.training.trainer import Trainer
from ddpm_lib.viz import save_grid


def run_trial(name: str, fields: dict, runs: Path, grids: Path, num: int, recipe: str) -> dict:
    out = runs / name
    cfg = TrainConfig.from_recipe(recipe, **{"out_dir": str(out), "progress": False, "tensorboard": False,
                                             "sample_every": 0, "resume": True, **fields})
    seed_everything(cfg.seed)
    t0 = time.perf_counter()
    result = Trainer(cfg).fit()
    train_s = time.perf_counter() - t0
    report = evaluate(out / "final.pt", num=num, sampler="ddim", steps=50, seed=0, device="cpu")
    print(f"{name}: {format_report(report)}", flush=True)
    model, schedule, tcfg, _ = load_model(out / "final.pt", device="cpu")
    c = model.config
    grid = sample(model, schedule, (64, c.in_channels, c.image_size, c.image_size), "ddim", num_steps=50,
                  generator=torch.Generator().manual_seed(0), prediction_type=tcfg.prediction_type, progress=False)
    grids.mkdir(parents=True, exist_ok=True)
    save_grid(grid, grids / f"{name}.png", nrow=8)
    params = sum(p.numel() for p in model.parameters())
    return {"name": name, "fields": fields, "steps": result["step"], "stopped": result["stopped"],
            "train_seconds": round(train_s, 1), "seconds_per_step": round(train_s / max(result["step"], 1), 4),
            "parameters": params, "fid": report["metrics"]["fid"], "kid": report["metrics"]["kid"],
            "kid_std": report["metrics"]["kid_std"], "floor_fid": (report["floor"] or {}).get("fid"),
            "num": num, "smoothed_loss": result["smoothed_loss"], "grid": str(grids / f"{name}.png"),
            "date": time.strftime("%Y-%m-%d"), "torch": torch.__version__, "threads": torch.get_num_threads()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--trials", required=True, help="JSON file: {name: {TrainConfig field: value}}")
    p.add_argument("--runs", required=True, help="folder for the trial runs")
    p.add_argument("--results", required=True, help="JSON-lines file the results are appended to")
    p.add_argument("--grids", required=True, help="folder for the 64-image sample grids")
    p.add_argument("--recipe", default="fashion_mnist_cpu")
    p.add_argument("--num", type=int, default=1000, help="samples per FID")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--only", nargs="*", default=None, help="run only these trials")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    trials = json.loads(Path(args.trials).read_text())
    results = Path(args.results)
    done = {json.loads(line)["name"] for line in results.read_text().splitlines() if line.strip()} if results.exists() else set()
    for name, fields in trials.items():
        if name in done or (args.only and name not in args.only):
            continue
        row = run_trial(name, fields, Path(args.runs), Path(args.grids), args.num, args.recipe)
        with results.open("a") as f:
            f.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
