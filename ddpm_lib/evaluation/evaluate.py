"""Evaluate a trained model: sample N images, then FID / KID (and IS) against the dataset's test split, next to
the floor: the same metrics for N real training images (what real images score with this N and classifier).

Command line (also ``python -m ddpm_lib evaluate ...``)::

    python -m ddpm_lib.evaluation.evaluate --ckpt runs/cifar10/final.pt --num 10000 --sampler ddim --steps 50 \\
        [--features classifier|inception] [--classifier PATH] [--guidance W] [--batch B] [--out report.json]

``--features classifier`` (default) uses the small dataset-specific CNN of :mod:`ddpm_lib.evaluation.classifier`
(fully offline; the package ships one per dataset, the files the model card's FIDs were measured with):
numbers comparable between your own runs and the card only.
``--features inception`` uses Inception-v3 pool3 features (:mod:`ddpm_lib.evaluation.features`; needs the
weights file, ``make fid-weights``): with the FID weights and 50,000 samples against the training
set this is the protocol of published FIDs; against the 10,000-image test split, as here, FIDs come
out a few points higher (FID is biased upward for small N, see notebook 07).

For a class-conditional model the samples get balanced labels (``i % num_classes``) and
``--guidance`` is the classifier-free guidance scale (default 1: plain conditional sampling;
0: unconditional).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import time
from pathlib import Path

import torch

from ddpm_lib.command_line import (
    OneLineParser,
    add_sampling_options,
    check_sample_memory,
    run_guarded,
)
from ddpm_lib.data.sources import REAL_DATASETS, load_dataset
from ddpm_lib.diffusion.samplers import SAMPLER_NAMES, sample_batched
from ddpm_lib.evaluation.classifier import get_classifier
from ddpm_lib.evaluation.features import InceptionFeatures, compute_features
from ddpm_lib.evaluation.metrics import (
    fid_from_features,
    inception_score,
    kernel_inception_distance,
)
from ddpm_lib.files import atomic_write, check_output_file, read_json_object
from ddpm_lib.loading import load_model
from ddpm_lib.settings import settings


def balanced_labels(num: int, num_classes: int) -> torch.Tensor:
    """``[0, 1, ..., K-1, 0, 1, ...]``: as many samples of each class as possible."""
    return torch.arange(num) % num_classes


@torch.no_grad()
def generate(
    model,
    schedule,
    num: int,
    shape: tuple[int, int, int],
    sampler: str = "ddim",
    steps: int | None = 50,
    batch_size: int = 250,
    labels: torch.Tensor | None = None,
    guidance_scale: float = 1.0,
    generator: torch.Generator | None = None,
    progress: bool = False,
    prediction_type: str = "epsilon",
) -> torch.Tensor:
    """``num`` samples (CPU, clamped to [-1, 1]) drawn in batches (:func:`ddpm_lib.diffusion.samplers.sample_batched`)."""

    return sample_batched(model, schedule, num, shape, batch_size=batch_size, labels=labels, generator=generator,
                          progress=progress, sampler=sampler, num_steps=steps, guidance_scale=guidance_scale,
                          prediction_type=prediction_type)


def metrics_from_features(
    fake_features: torch.Tensor,
    real_features: torch.Tensor,
    fake_logits: torch.Tensor | None = None,
    kid_subsets: int = 100,
    kid_subset_size: int = 1000,
    is_splits: int = 10,
    seed: int = 0,
) -> dict:
    """FID, KID (mean, std) and, with logits, IS (mean, std) from already-computed features."""
    n = min(len(fake_features), len(real_features))
    size = min(kid_subset_size, n)
    kid_mean, kid_std = kernel_inception_distance(fake_features, real_features, subsets=kid_subsets, subset_size=size, generator=seed)
    result = {
        "fid": fid_from_features(fake_features, real_features),
        "kid": kid_mean,
        "kid_std": kid_std,
        "kid_subset_size": size,
    }
    if fake_logits is not None:
        splits = max(1, min(is_splits, len(fake_logits) // 2))
        result["is"], result["is_std"] = inception_score(fake_logits, splits=splits, kind="logits")
        result["is_splits"] = splits
    return result


def real_floor(extractor, dataset: str, data_root, num: int, image_size: int, f_real: torch.Tensor, batch: int,
               device, seed: int = 0) -> dict | None:
    """FID / KID of ``num`` real *training* images against the same test features: what a model whose samples
    were real images would score with this n, classifier and reference (FID is biased upward at small n, see
    notebook 07), so every FID can stand next to its floor. None for datasets without a separate test split."""
    if dataset not in REAL_DATASETS:
        return None
    train = load_dataset(dataset, train=True, root=data_root, max_items=num, image_size=image_size)
    f_train = compute_features(extractor.features, torch.utils.data.DataLoader(train, batch_size=batch), batch, device)
    return {**metrics_from_features(f_train, f_real, seed=seed), "num": len(train),
            "what": f"{len(train)} real {dataset} training images vs the same test split"}


def _check_arguments(features: str, num: int, batch: int, steps: int | None, guidance: float | None) -> None:
    """Refuse a bad option before any work (minutes of feature extraction): ValueError naming it and the fix."""
    if features not in ("classifier", "inception"):
        raise ValueError(f"features must be 'classifier' or 'inception', got {features!r}.")
    for name, value in (("num", num), ("batch", batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"--{name} must be a positive int, got {value!r}.")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise ValueError(f"--steps must be >= 1 (or 0 / None for all T with ddpm), got {steps!r}.")
    if guidance is not None and not math.isfinite(guidance):
        raise ValueError(f"--guidance must be a finite number, got {guidance!r}.")


def _feature_extractor(features: str, dataset: str, classifier, inception_weights, device, progress: bool,
                       ckpt) -> tuple:
    """(the feature extractor, the report's entry on it); built before sampling, so missing weights fail early."""
    if features == "classifier" and classifier is None and dataset not in REAL_DATASETS:
        raise ValueError(f"{ckpt} was trained on dataset={dataset!r}, for which ddpm_lib has no feature classifier (only "
                         f"{' and '.join(REAL_DATASETS)}): pass --classifier FILE (a FeatureClassifier trained on such "
                         "images), or --features inception (Inception-v3; make fid-weights).")
    if features == "classifier":
        extractor = get_classifier(dataset, path=classifier, device=device, train_if_missing=classifier is None, verbose=progress)
        return extractor, {"path": str(extractor.source), "test_accuracy": extractor.meta.get("test_accuracy")}
    extractor = InceptionFeatures(inception_weights).to(device)
    return extractor, {"path": str(extractor.weights_path), "variant": extractor.variant}


def _sample_metrics(extractor, fake: torch.Tensor, real, requested: torch.Tensor | None, num_classes: int | None,
                    batch: int, device, seed: int) -> tuple[dict, torch.Tensor, int]:
    """Metrics of the samples against the test split: (metrics, the test split's features, the feature dimension).

    With ``requested`` (the samples' labels, for the dataset's classifier) and a classifier of ``num_classes``
    classes, ``class_accuracy``: how often it names the class each sample was asked for (guidance at work)."""
    f_fake = compute_features(extractor.features, fake, batch, device)
    f_real = compute_features(extractor.features, torch.utils.data.DataLoader(real, batch_size=batch), batch, device)
    logits_fake = compute_features(extractor.logits, fake, batch, device)
    metrics = metrics_from_features(f_fake, f_real, logits_fake, seed=seed)
    if requested is not None and logits_fake.shape[1] == num_classes:
        metrics["class_accuracy"] = (logits_fake.argmax(1) == requested).double().mean().item()
    return metrics, f_real, int(f_fake.shape[1])


def evaluate(
    ckpt: str | Path,
    num: int = 10_000,
    sampler: str = "ddim",
    steps: int | None = 50,
    features: str = "classifier",
    classifier: str | Path | None = None,
    inception_weights: str | Path | None = None,
    guidance: float | None = None,
    batch: int = 250,
    dataset: str | None = None,
    data_root: str | None = None,
    max_real: int | None = None,
    seed: int = 0,
    use_ema: bool = True,
    device: str | torch.device | None = None,
    out: str | Path | None = None,
    progress: bool = False,
    overwrite: bool = False,
) -> dict:
    """Sample ``num`` images from the checkpoint and compare them with the test split; returns the report.

    ``out``: write the report there as JSON; an existing file that is not an evaluate report (a checkpoint,
    say) is refused before any work unless ``overwrite`` (:func:`ddpm_lib.files.check_output_file`).
    """

    _check_arguments(features, num, batch, steps, guidance)
    if out is not None:
        out = check_output_file(out, option="--out", kind="an evaluate report", is_own=is_report, overwrite=overwrite)
    t_start = time.perf_counter()
    device = torch.device(device) if device is not None else settings.device
    model, schedule, cfg, _ = load_model(ckpt, use_ema=use_ema, device=device)
    dataset = dataset or cfg.dataset
    data_root = data_root if data_root is not None else cfg.data_root
    null = getattr(model, "null_class", None)
    if null is None and guidance not in (None, 1.0):
        raise ValueError(f"--guidance {guidance} needs a class-conditional model; {ckpt} is unconditional.")
    w = 1.0 if guidance is None else float(guidance)
    c = model.config
    shape = (c.in_channels, c.image_size, c.image_size)
    check_sample_memory(num, shape)
    extractor, extractor_info = _feature_extractor(features, dataset, classifier, inception_weights, device, progress, ckpt)

    real = load_dataset(dataset, train=False, root=data_root, max_items=max_real, image_size=c.image_size)
    labels = balanced_labels(num, null) if null is not None else None
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    fake = generate(model, schedule, num, shape, sampler, steps, batch, labels, w, gen, progress, cfg.prediction_type)
    sample_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    fb = max(1, min(batch, 500))
    metrics, f_real, feature_dim = _sample_metrics(extractor, fake, real, labels if features == "classifier" else None,
                                                   null, fb, device, seed)
    floor = real_floor(extractor, dataset, data_root, num, c.image_size, f_real, fb, device, seed)
    feature_seconds = time.perf_counter() - t1
    notes = small_sample_warnings(num, feature_dim)

    report = {
        "checkpoint": str(ckpt),
        "dataset": dataset,
        "reference": f"{dataset} test split ({len(real)} images)",
        "settings": {
            "num": num, "sampler": sampler, "steps": steps, "guidance": w if null is not None else None,
            "features": features, "batch": batch, "seed": seed, "use_ema": use_ema,
            "num_timesteps": schedule.num_timesteps, "prediction_type": cfg.prediction_type,
        },
        "extractor": extractor_info,
        "num_samples": num,
        "num_real": len(real),
        "seconds": {
            "sampling": sample_seconds, "features": feature_seconds, "total": time.perf_counter() - t_start,
        },
        "images_per_second": num / sample_seconds if sample_seconds > 0 else math.inf,
        "metrics": metrics,
        "floor": floor,
        "warnings": notes,
        "comparable_to_published": False if features == "classifier" else "only with the FID weights and 50k samples vs the training set",
        "device": str(device),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
    if out is not None:
        atomic_write(Path(out), json.dumps(report, indent=2))
    return report


def small_sample_warnings(num: int, feature_dim: int) -> list[str]:
    """The warning a report carries when ``num`` samples cannot give a usable FID: the sample covariance of ``num``
    feature vectors has rank at most ``num - 1``, so with ``num <= feature_dim`` it is singular."""
    if num > feature_dim:
        return []
    return [f"only {num} samples for {feature_dim}-dimensional features: their covariance is singular (FID needs more "
            f"than {feature_dim} samples), so FID, KID and IS from so few are noisy and biased; compare them only with "
            "runs of the same --num, and use --num 10000 for numbers worth reporting."]


def is_report(path: Path) -> bool:
    """True when ``path`` holds a JSON report written by :func:`evaluate` (what ``--out`` may replace)."""
    obj = read_json_object(path)
    return obj is not None and {"checkpoint", "settings", "metrics"} <= set(obj)


def format_report(r: dict) -> str:
    m = r["metrics"]
    line = (
        f"{r['settings']['features']} features, {r['num_samples']} samples ({r['settings']['sampler']}, "
        f"{r['settings']['steps']} steps) vs {r['reference']}: FID {m['fid']:.3f}, "
        f"KID {m['kid']:.5f} ± {m['kid_std']:.5f}"
    )
    if "is" in m:
        line += f", IS {m['is']:.3f} ± {m['is_std']:.3f}"
    if "class_accuracy" in m:
        line += f", the classifier names the requested class for {m['class_accuracy']:.1%}"
    floor = r.get("floor")
    if floor is not None:
        line += f"; floor ({floor['what']}): FID {floor['fid']:.3f}, KID {floor['kid']:.5f}"
    return line + f"  [{r['seconds']['total']:.1f} s]"


def add_arguments(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    add_sampling_options(p, SAMPLER_NAMES, num=10_000, batch=250)
    p.add_argument("--features", default="classifier", choices=["classifier", "inception"],
                   help="classifier: the course's small CNN, offline (default); inception: Inception-v3, as in papers")
    p.add_argument("--classifier", default=None, help="feature classifier file (default: runs/classifier-<dataset>/classifier.pt if you trained one, else the one shipped with ddpm_lib)")
    p.add_argument("--inception-weights", default=None, help="Inception-v3 weights file (default: data/fid_weights/...)")
    p.add_argument("--dataset", default=None, help="reference dataset (default: the checkpoint's)")
    p.add_argument("--data-root", default=None, help="folder of the reference dataset (default: DDPM_DATA_DIR)")
    p.add_argument("--max-real", type=int, default=None, help="use only this many test images")
    p.add_argument("--out", default=None, help="write the JSON report here")
    p.add_argument("--overwrite", action="store_true", help="replace an --out file that is not an evaluate report")
    p.set_defaults(func=run_from_args)
    return p


def run_from_args(args: argparse.Namespace) -> dict:
    report = evaluate(
        args.ckpt, num=args.num, sampler=args.sampler, steps=(None if args.steps == 0 else args.steps), features=args.features,
        classifier=args.classifier, inception_weights=args.inception_weights, guidance=args.guidance,
        batch=args.batch, dataset=args.dataset, data_root=args.data_root, max_real=args.max_real,
        seed=args.seed, use_ema=not args.no_ema, device=args.device, out=args.out, progress=True,
        overwrite=args.overwrite,
    )
    print(format_report(report))
    for line in report["warnings"]:
        print(f"warning: {line}")
    if args.out:
        print(f"report written to {args.out}")
    return report


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``evaluate`` on an argparse sub-parser collection (used by :mod:`ddpm_lib.cli`)."""
    return add_arguments(subparsers.add_parser("evaluate", help="FID/KID/IS of samples against the test split",
                                                description=__doc__.splitlines()[0]))


def build_parser() -> argparse.ArgumentParser:
    return add_arguments(OneLineParser(prog="python -m ddpm_lib.evaluation.evaluate", description=__doc__.splitlines()[0]))


def main(argv: list[str] | None = None) -> int:
    """``python -m ddpm_lib.evaluation.evaluate``: the same as ``python -m ddpm_lib evaluate`` (bad input: one line, exit 2)."""

    parser = build_parser()
    return run_guarded(parser.prog, parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
