"""Turn a finished training run into shipped starter weights: slim file, checksum, quality, model card.

    python -m tools.build_pretrained fashion_mnist --run runs/fashion_mnist_cpu --machine "2-core CPU" \\
        --command "python -m ddpm_lib train --recipe fashion_mnist_cpu --out runs/fashion_mnist_cpu"

Steps: export the run's EMA weights in fp16 (:func:`ddpm_lib.training.checkpoint.export_slim`) to
``ddpm_lib/pretrained/NAME.pt``; measure the classifier-feature FID/KID of ``--num`` samples against
the real test images (:func:`ddpm_lib.evaluation.evaluate.evaluate`); record image statistics of the real test
images and of the samples (:func:`image_stats`, what ``tests/test_pretrained.py`` checks new samples
against); save sample grids into ``docs/``; update ``registry.json`` and regenerate ``MODEL_CARD.md``.
``make weights`` runs the two recipes and this, for both models.

With ``--classifier FILE`` it ships a feature classifier instead (:mod:`ddpm_lib.evaluation.classifier`): copies it to
``ddpm_lib/pretrained/classifier_NAME.pt`` and records it in ``classifiers.json`` and the card. ``make
weights`` ships the classifiers first, so the models' FIDs are measured with the shipped classifiers.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import platform
import shutil
from pathlib import Path

import torch

from ddpm_lib.data.sources import load_dataset
from ddpm_lib.diffusion.samplers import sample
from ddpm_lib.evaluation.classifier import load_classifier
from ddpm_lib.evaluation.evaluate import evaluate
from ddpm_lib.files import atomic_write, sha256
from ddpm_lib.loading import load_model
from ddpm_lib.pretrained import HERE, classifier_path, classifier_registry, registry
from ddpm_lib.training.checkpoint import export_slim, read_payload
from ddpm_lib.training.recipes import get_recipe
from ddpm_lib.viz import save_grid

DOCS = HERE.parent.parent / "docs"


def image_stats(x: torch.Tensor) -> dict[str, float]:
    """Statistics that tell real images from noise, for ``x`` in [-1, 1] of shape (N, C, H, W):
    mean and std of the pixels, the fraction of background pixels (below -0.8, i.e. darker than 10% grey),
    and the correlation of horizontally adjacent pixels (about 0 for noise, near 1 for photographs)."""
    x = x.detach().float().clamp(-1, 1)
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    corr = torch.corrcoef(torch.stack([a, b]))[0, 1]
    return {
        "mean": float(x.mean()),
        "std": float(x.std()),
        "background_fraction": float((x < -0.8).float().mean()),
        "neighbour_correlation": float(corr),
    }


def stats_close(got: dict, ref: dict, tolerance: dict) -> list[str]:
    """The statistics of ``got`` that differ from ``ref`` by more than ``tolerance`` (empty list: all close)."""
    return [f"{k}: {got[k]:.3f} vs {ref[k]:.3f} (tolerance {tol})" for k, tol in tolerance.items()
            if abs(got[k] - ref[k]) > tol]


# How far a small batch of samples may stray from the real images' statistics before the test calls it
# "not the dataset". Chosen from the spread of 16-image batches of real images (a few hundredths) and far
# below the gap to noise (uniform noise: background 0.1, neighbour correlation 0).
TOLERANCE = {"mean": 0.2, "std": 0.2, "background_fraction": 0.15, "neighbour_correlation": 0.2}


def _wall_time(run: Path) -> float | None:
    """Training wall time of the run: ``elapsed_s`` restarts at 0 when a run is resumed, so the time is
    the sum of each segment's last ``elapsed_s``."""
    rows = list(csv.DictReader(open(run / "metrics.csv"))) if (run / "metrics.csv").is_file() else []
    elapsed = [float(r["elapsed_s"]) for r in rows]
    ends = [a for a, b in zip(elapsed, elapsed[1:]) if b < a]  # the last row before each restart
    return sum(ends) + elapsed[-1] if elapsed else None


def _total_wall_time(run_s: float | None, base: dict | None) -> float | None:
    """The run's wall time plus that of the weights it fine-tuned from (unknown if either is)."""
    if base is None:
        return run_s
    return None if run_s is None or base["wall_time_s"] is None else run_s + base["wall_time_s"]


def _grids(name: str, model, schedule, cfg, sample_cfg: dict, seed: int) -> list[str]:

    c = model.config
    g = torch.Generator().manual_seed(seed)
    written = []
    if getattr(model, "null_class", None) is None:
        x = sample(model, schedule, (64, c.in_channels, c.image_size, c.image_size), sampler=sample_cfg["sampler"],
                   num_steps=sample_cfg["steps"], generator=g, prediction_type=cfg.prediction_type)
        path = DOCS / f"pretrained_{name}.png"
        save_grid(x.float().cpu(), path, nrow=8)
        written.append(str(path.relative_to(DOCS.parent)))
        return written
    k = model.null_class
    labels = torch.arange(k).repeat_interleave(6)  # 6 samples per class, one class per row after the transpose
    for w in (0.0, 1.0, 3.0):
        g = torch.Generator().manual_seed(seed)  # the same noise at every w
        x = sample(model, schedule, (len(labels), c.in_channels, c.image_size, c.image_size),
                   sampler=sample_cfg["sampler"], num_steps=sample_cfg["steps"], generator=g, labels=labels,
                   guidance_scale=w, prediction_type=cfg.prediction_type)
        path = DOCS / f"pretrained_{name}_w{w:g}.png"
        save_grid(x.float().cpu(), path, nrow=6)
        written.append(str(path.relative_to(DOCS.parent)))
    return written


def measure_quality(path: Path, dataset: str, sample_cfg: dict, num: int, seed: int, guidance: float | None) -> dict:
    """FID / KID of ``num`` samples of the shipped file ``path`` on the shipped classifier, next to the floor (as many
    real training images measured the same way) and, for a class-conditional model, how often the classifier names
    the requested class."""
    report = evaluate(path, num=num, sampler=sample_cfg["sampler"], steps=sample_cfg["steps"], guidance=guidance,
                      seed=seed, device="cpu", batch=256, classifier=classifier_path(dataset))
    m, floor = report["metrics"], report["floor"] or {}
    return {"features": "classifier", "num_samples": num, "reference": report["reference"], "guidance": guidance,
            "classifier_test_accuracy": report["extractor"]["test_accuracy"],
            **{k: m[k] for k in ("fid", "kid", "kid_std")},
            "class_accuracy": m.get("class_accuracy"),
            "floor_fid": floor.get("fid"), "floor_kid": floor.get("kid"), "floor_num": floor.get("num"),
            "date": datetime.date.today().isoformat()}


def measure_all(path: Path, dataset: str, sample_cfg: dict, num: int, seed: int, conditional: bool) -> dict:
    """``quality`` at the recipe's sampler settings; for a class-conditional model also ``quality_unguided`` (w = 0)."""
    guidance = sample_cfg.get("guidance") if conditional else None
    out = {"quality": measure_quality(path, dataset, sample_cfg, num, seed, guidance)}
    if conditional:
        out["quality_unguided"] = measure_quality(path, dataset, sample_cfg, num, seed, 0.0)
    return out


def requality(name: str, num: int, seed: int) -> dict:
    """Measure the shipped file ``NAME.pt`` again (FID, floor, class accuracy) and record it, without re-exporting."""
    entry = dict(registry()[name])
    model, _, cfg, _ = load_model(HERE / entry["file"], device="cpu")
    entry.update(measure_all(HERE / entry["file"], cfg.dataset, dict(entry["sample"]), num, seed,
                             getattr(model, "null_class", None) is not None))
    _record(registry, "registry.json", name, entry)
    return entry


def fine_tune_base(name: str, init_from: str | None, reg: dict) -> dict | None:
    """What a run fine-tuned from (``TrainConfig.init_from``): the starting weights' own training, which the card
    adds to the run's. From the registry when it started from the starter it replaces (``pretrained:NAME``: its
    steps and wall time, already totals if that one was fine-tuned too), else from the checkpoint (its step; wall
    time unknown). ``None`` for a run trained from random weights."""
    if not init_from:
        return None
    if init_from == f"pretrained:{name}" and name in reg:
        e = reg[name]
        return {"init_from": init_from, "sha256": e["sha256"], "steps": int(e["train_steps"]),
                "wall_time_s": e.get("train_wall_time_s")}
    payload, _ = read_payload(init_from)
    return {"init_from": init_from, "sha256": None, "steps": int(payload.get("step", 0)), "wall_time_s": None}


def build(name: str, run: Path, ckpt: str, recipe: str, command: str, machine: str, note: str, num: int,
          seed: int) -> dict:
    out = HERE / f"{name}.pt"
    base = fine_tune_base(name, json.loads((run / "config.json").read_text()).get("init_from"), registry())
    export_slim(run / ckpt, out)
    out.chmod(0o644)  # package data: readable by everyone who installs it
    model, schedule, cfg, _ = load_model(out, device="cpu")
    sample_cfg = dict(get_recipe(recipe).sample)
    conditional = getattr(model, "null_class", None) is not None
    real = load_dataset(cfg.dataset, train=False, image_size=model.config.image_size, root=cfg.data_root)
    xr = torch.stack([real[i][0] for i in range(min(len(real), 2000))])
    payload = torch.load(out, weights_only=True)
    entry = {
        "file": out.name,
        "sha256": sha256(out),
        "size_bytes": out.stat().st_size,
        "parameters": sum(p.numel() for p in model.parameters()),
        "recipe": recipe,
        "dataset": cfg.dataset,
        "class_conditional": getattr(model, "null_class", None) is not None,
        "train_steps": int(payload["step"]) + (base["steps"] if base else 0),
        "batch_size": cfg.batch_size,
        "seed": cfg.seed,
        "train_wall_time_s": _total_wall_time(_wall_time(run), base),
        "fine_tuned_from": base,
        "command": command,
        "machine": machine,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
        "sample": sample_cfg,
        **(measure_all(out, cfg.dataset, sample_cfg, num, seed, conditional) if num else {"quality": None}),
        "data_stats": image_stats(xr),
        "tolerance": TOLERANCE,
        "grids": _grids(name, model, schedule, cfg, sample_cfg, seed),
        "note": note,
    }
    _record(registry, "registry.json", name, entry)
    return entry


def ship_classifier(dataset: str, src: Path, command: str, machine: str, note: str) -> dict:
    """Copy the feature classifier ``src`` into the package as ``classifier_DATASET.pt``, record it in
    ``classifiers.json`` and regenerate the card."""

    meta = load_classifier(src).meta  # also checks that it is a classifier file
    if meta.get("dataset") != dataset:
        raise ValueError(f"{src} is a classifier for {meta.get('dataset')!r}, not {dataset!r}.")
    out = HERE / f"classifier_{dataset}.pt"
    shutil.copyfile(src, out)
    out.chmod(0o644)
    entry = {
        "file": out.name, "sha256": sha256(out), "size_bytes": out.stat().st_size, "dataset": dataset,
        "steps": meta.get("steps"), "test_accuracy": meta.get("test_accuracy"), "train_seconds": meta.get("seconds"),
        "command": command, "machine": machine, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
        "note": note,
    }
    _record(classifier_registry, "classifiers.json", dataset, entry)
    return entry


def _record(reader, file_name: str, key: str, entry: dict) -> None:
    """Set ``key`` to ``entry`` in the registry file that ``reader`` reads (keeping the other entries), then
    regenerate the card from both registries."""
    reader.cache_clear()  # the file as it is now: another build may have recorded its entry since this one started
    reg = dict(reader())
    reg[key] = entry
    atomic_write(HERE / file_name, json.dumps(reg, indent=2) + "\n")
    reader.cache_clear()
    atomic_write(HERE / "MODEL_CARD.md", model_card(registry(), classifier_registry()))


def model_card(reg: dict, classifiers: dict) -> str:
    lines = [
        "# Starter weights: model card",
        "",
        "Generated by `python -m tools.build_pretrained` from `registry.json` and `classifiers.json` (do not edit by hand;",
        "`make weights` reproduces every file). Quality is the FID/KID of the classifier features of",
        "`ddpm_lib.evaluation.classifier` against the real test images: comparable between these models and your own",
        "runs, **not** with published (Inception) FIDs.",
        "",
    ]
    rows = [
        ("data", lambda e: e["dataset"] + (" (class-conditional)" if e["class_conditional"] else "")),
        ("recipe", lambda e: f"`{e['recipe']}`"),
        ("parameters", lambda e: f"{e['parameters']:,}"),
        ("file (fp16 EMA weights)", lambda e: f"`{e['file']}`, {e['size_bytes'] / 1e6:.2f} MB"),
        ("sha256", lambda e: f"`{e['sha256']}`"),
        ("training", lambda e: f"{e['train_steps']:,} steps at batch {e['batch_size']}, seed {e['seed']}" + (
            f" ({e['fine_tuned_from']['steps']:,} for the weights it started from, then "
            f"{e['train_steps'] - e['fine_tuned_from']['steps']:,} fine-tuning from them: "
            f"`--init-from {e['fine_tuned_from']['init_from']}`)" if e.get("fine_tuned_from") else "")),
        ("wall time", lambda e: f"{e['train_wall_time_s'] / 60:.1f} min" if e["train_wall_time_s"] else "?"),
        ("machine", lambda e: e["machine"]),
        ("command", lambda e: f"`{e['command']}`"),
        ("torch, date", lambda e: f"{e['torch']}, {e['date']}"),
        ("sampler", lambda e: ", ".join(f"{k} {v}" for k, v in e["sample"].items())),
        ("FID (classifier features)", lambda e: _fid_cell(e["quality"])),
        ("KID", lambda e: "not measured" if not e["quality"] else f"{e['quality']['kid']:.4f} ± {e['quality']['kid_std']:.4f}"),
        ("unguided (w = 0): FID", lambda e: _fid_cell(e["quality_unguided"]) if e.get("quality_unguided") else "-"),
        ("classifier names the requested class", lambda e: "-" if not (e["quality"] or {}).get("class_accuracy") else
         f"{e['quality']['class_accuracy']:.1%} at guidance {e['quality']['guidance']:g}" + (
             f", {e['quality_unguided']['class_accuracy']:.1%} at w = 0" if e.get("quality_unguided") else "")),
        ("real test images: mean / std / background / neighbour corr.",
         lambda e: " / ".join(f"{e['data_stats'][k]:.3f}" for k in ("mean", "std", "background_fraction",
                                                                     "neighbour_correlation"))),
        ("sample grids", lambda e: ", ".join(f"[{Path(g).name}](../../{g})" for g in e["grids"])),
        ("honest note", lambda e: e["note"]),
    ]
    lines += _table(reg, rows)
    if classifiers:
        lines += [
            "",
            "## The feature classifiers",
            "",
            "The FIDs above were measured with these files, shipped in the package (`classifiers.json`), so",
            "`python -m ddpm_lib evaluate` and notebook 07 use them unless you train your own (a classifier in",
            "`runs/classifier-<dataset>[-mode]/classifier.pt` comes first).",
            "",
        ]
        crows = [
            ("file", lambda e: f"`{e['file']}`, {e['size_bytes'] / 1e6:.2f} MB"),
            ("sha256", lambda e: f"`{e['sha256']}`"),
            ("training", lambda e: f"{e['steps']:,} steps" + (f", {e['train_seconds'] / 60:.1f} min" if e["train_seconds"] else "")),
            ("test accuracy", lambda e: f"{e['test_accuracy']:.3f}"),
            ("machine", lambda e: e["machine"]),
            ("command", lambda e: f"`{e['command']}`"),
            ("torch, date", lambda e: f"{e['torch']}, {e['date']}"),
            ("honest note", lambda e: e["note"]),
        ]
        lines += _table(classifiers, crows)
    return "\n".join(lines) + "\n"


def _fid_cell(q: dict | None) -> str:
    """FID with its floor: the same metric for as many real training images (what a perfect model would score)."""
    if not q:
        return "not measured"
    floor = (f"**floor {q['floor_fid']:.2f}** ({q['floor_num']} real training images, same classifier and reference)"
             if q.get("floor_fid") is not None else "floor not measured")
    return (f"{q['fid']:.2f}; {floor}; {q['num_samples']} samples vs {q['reference']}, classifier test accuracy "
            f"{q['classifier_test_accuracy']:.3f}" + (f", measured {q['date']}" if q.get("date") else ""))


def _table(entries: dict, rows: list) -> list[str]:
    """A markdown table with one column per entry and one row per ``(label, entry -> text)``."""
    lines = ["| | " + " | ".join(entries) + " |", "|---|" + "---|" * len(entries)]
    return lines + [f"| {label} | " + " | ".join(str(fn(e)) for e in entries.values()) + " |" for label, fn in rows]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tools.build_pretrained", description=__doc__.splitlines()[0])
    p.add_argument("name", help="starter model name (fashion_mnist or cifar10); with --classifier, the dataset")
    p.add_argument("--run", type=Path, help="the finished run folder (required without --classifier)")
    p.add_argument("--ckpt", default="final.pt", help="checkpoint in the run folder (default final.pt)")
    p.add_argument("--recipe", help="the ddpm_lib.training.recipes recipe the run followed (required without --classifier)")
    p.add_argument("--classifier", type=Path, help="ship this feature-classifier file for dataset NAME instead of a model")
    p.add_argument("--command", help="the exact command that trained the run (for the card; required to ship)")
    p.add_argument("--machine", help="what it was trained on (for the card; required to ship)")
    p.add_argument("--note", default="", help="what the card must say about data and compute")
    p.add_argument("--num", type=int, default=1000, help="samples for the FID/KID (default 1000; 0: skip the evaluation)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--requality", action="store_true", help="measure the shipped NAME.pt again (FID with its floor, "
                   "class accuracy, w = 0 for conditional models) and regenerate the card; nothing is re-exported")
    a = p.parse_args(argv)
    if a.requality:
        entry = requality(a.name, a.num, a.seed)
        print(json.dumps({k: entry.get(k) for k in ("quality", "quality_unguided")}, indent=2))
        return 0
    if not a.command or not a.machine:
        p.error("--command and --machine are required to ship a model or a classifier (the card records them)")
    if a.classifier is not None:
        entry = ship_classifier(a.name, a.classifier, a.command, a.machine, a.note)
        print(json.dumps({k: entry[k] for k in ("file", "sha256", "steps", "test_accuracy")}, indent=2))
        return 0
    if a.run is None or a.recipe is None:
        p.error("--run and --recipe are required to ship a model (or give --classifier FILE)")
    entry = build(a.name, a.run, a.ckpt, a.recipe, a.command, a.machine, a.note, a.num, a.seed)
    print(json.dumps({k: entry[k] for k in ("file", "sha256", "size_bytes", "quality", "data_stats")}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
