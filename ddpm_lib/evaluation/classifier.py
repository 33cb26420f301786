"""A small CNN classifier trained on the dataset itself: offline features for FID, KID and IS.

The standard FID uses Inception-v3 trained on ImageNet (see :mod:`ddpm_lib.evaluation.features`); its weights
must be downloaded once. This module gives a fully offline alternative: a 6-layer CNN trained for a
few minutes on the very dataset the diffusion model learns (Fashion-MNIST or CIFAR-10). Its
penultimate layer (``features``, 128-d) plays the role of Inception's pool3 features and its
``logits`` the role of Inception's class scores, in the spirit of the "FID with a domain
classifier" used for MNIST-like data.

**Such numbers are not comparable to published FIDs** (different network, feature size and
training): use them to compare models, samplers and guidance scales with each other, on the same
classifier file.

Command line::

    python -m ddpm_lib.evaluation.classifier train --dataset cifar10 --steps 3000 --out runs/classifier-cifar10/classifier.pt
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lib import pretrained
from ddpm_lib import settings as settings_mod
from ddpm_lib.data.sources import REAL_DATASETS, dataset_info, load_dataset
from ddpm_lib.files import ClobberError, check_output_file
from ddpm_lib.training.checkpoint import load_checkpoint, save_checkpoint

FORMAT = "ddpm_lib.classifier/1"  # a format tag stored in every classifier file, not a module path: never renamed


@dataclass(frozen=True)
class ClassifierConfig:
    """Size of a :class:`FeatureClassifier`; invalid values raise ``ValueError``."""

    in_channels: int = 3
    num_classes: int = 10
    width: int = 32  # channels of the first stage; stages have width, 2 width, 4 width
    feature_dim: int = 128  # size of the penultimate layer (the FID features)
    image_size: int = 32

    def __post_init__(self):
        for name in ("in_channels", "num_classes", "width", "feature_dim", "image_size"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"ClassifierConfig.{name} must be a positive int, got {v!r}.")
        if self.num_classes < 2:
            raise ValueError(f"ClassifierConfig.num_classes must be >= 2, got {self.num_classes}.")
        if self.image_size % 8:
            raise ValueError(f"ClassifierConfig.image_size must be a multiple of 8 (3 poolings), got {self.image_size}.")


def _stage(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


class FeatureClassifier(nn.Module):
    """conv stages (w, 2w, 4w; each halves the size) -> global average pool -> features -> logits.

    Inputs are images in [-1, 1], shape (B, in_channels, H, W).
    """

    def __init__(self, config: ClassifierConfig | None = None, **kwargs):
        super().__init__()
        if config is None:
            config = ClassifierConfig(**kwargs)
        elif kwargs:
            raise ValueError("pass either a ClassifierConfig or keyword arguments, not both.")
        self.config = config
        w = config.width
        self.body = nn.Sequential(_stage(config.in_channels, w), _stage(w, 2 * w), _stage(2 * w, 4 * w))
        self.embed = nn.Sequential(nn.Linear(4 * w, config.feature_dim), nn.ReLU(inplace=True))
        self.head = nn.Linear(config.feature_dim, config.num_classes)

    @property
    def num_features(self) -> int:
        return self.config.feature_dim

    def _check(self, x: torch.Tensor) -> None:
        if x.ndim != 4 or x.shape[1] != self.config.in_channels:
            raise ValueError(
                f"the classifier expects images (B, {self.config.in_channels}, H, W) in [-1, 1], got shape "
                f"{tuple(x.shape)}: was it trained on another dataset?"
            )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features (B, feature_dim): the FID/KID features."""
        self._check(x)
        h = self.body(x.float())
        return self.embed(h.mean(dim=(2, 3)))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (B, num_classes): what the Inception Score uses."""
        return self.head(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits(x)


def dataset_to_tensors(dataset, max_items: int | None = None, batch_size: int = 512) -> tuple[torch.Tensor, torch.Tensor]:
    """Read (image, label) pairs once into tensors: images (N, C, H, W) float in [-1, 1], labels (N,)."""
    if isinstance(dataset, (tuple, list)) and len(dataset) == 2 and isinstance(dataset[0], torch.Tensor):
        x, y = dataset
        return x[:max_items], torch.as_tensor(y)[:max_items].long()
    n = len(dataset) if max_items is None else min(max_items, len(dataset))
    if n == 0:
        raise ValueError("the dataset is empty.")
    loader = torch.utils.data.DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size, shuffle=False)
    xs, ys = [], []
    for x, y in loader:
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return torch.cat(xs), torch.cat(ys).long()


def train_classifier(
    model: FeatureClassifier,
    data,
    steps: int = 2000,
    batch_size: int = 128,
    lr: float = 2e-3,
    hflip: bool = False,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
    log_every: int = 0,
) -> list[dict]:
    """Train with AdamW + cosine learning-rate decay on (images, labels) tensors or a dataset.

    ``hflip`` adds random horizontal flips (right for CIFAR-10, not needed for Fashion-MNIST).
    Returns the history (step, loss, batch accuracy); leaves the model in eval mode.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be a positive int, got {steps!r}.")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    x_all, y_all = dataset_to_tensors(data)
    if int(y_all.max()) >= model.config.num_classes or int(y_all.min()) < 0:
        raise ValueError(f"labels must lie in 0..{model.config.num_classes - 1}, got {int(y_all.min())}..{int(y_all.max())}.")
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device).train()
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    history = []
    n = len(x_all)
    perm, pos = torch.randperm(n, generator=g), 0
    for step in range(1, steps + 1):
        if pos + batch_size > n:
            perm, pos = torch.randperm(n, generator=g), 0
        idx = perm[pos : pos + batch_size]
        pos += batch_size
        x, y = x_all[idx].to(device), y_all[idx].to(device)
        if hflip:
            flip = torch.rand(len(x), generator=g) < 0.5
            x = torch.where(flip.to(device)[:, None, None, None], x.flip(-1), x)
        logits = model.logits(x)
        loss = F.cross_entropy(logits, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        rec = {"step": step, "loss": float(loss.detach()), "acc": float((logits.detach().argmax(1) == y).float().mean())}
        history.append(rec)
        if log_every and step % log_every == 0:
            print(f"step {step}/{steps}: loss {rec['loss']:.3f}, batch accuracy {rec['acc']:.2f}", flush=True)
    model.eval()
    return history


@torch.no_grad()
def accuracy(model: FeatureClassifier, data, batch_size: int = 512) -> float:
    """Top-1 accuracy on (images, labels) tensors or a dataset (model put in eval mode)."""
    x_all, y_all = dataset_to_tensors(data)
    model.eval()
    device = next(model.parameters()).device
    correct = 0
    for x, y in zip(x_all.split(batch_size), y_all.split(batch_size)):
        correct += int((model.logits(x.to(device)).argmax(1).cpu() == y).sum())
    return correct / len(y_all)


def save_classifier(model: FeatureClassifier, path: str | Path, **meta) -> Path:
    """Atomically save weights + config + ``meta`` (e.g. dataset, test accuracy); loadable with weights_only."""
    payload = {
        "format": FORMAT,
        "config": asdict(model.config),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta),
    }
    return save_checkpoint(path, payload)


def load_classifier(path: str | Path, device: torch.device | str = "cpu") -> FeatureClassifier:
    """Load a classifier saved by :func:`save_classifier`; ``model.meta`` holds what was saved with it."""
    payload = load_checkpoint(path, map_location="cpu")
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a feature-classifier file (format {payload.get('format') if isinstance(payload, dict) else None!r}, "
            f"expected {FORMAT!r}): train one with `python -m ddpm_lib.evaluation.classifier train`."
        )
    model = FeatureClassifier(ClassifierConfig(**payload["config"]))
    model.load_state_dict(payload["state_dict"])
    model.meta = payload.get("meta", {})
    model.source = Path(path)
    return model.to(device).eval()


def default_classifier_path(dataset: str) -> Path:
    """``<runs_dir>/classifier-<dataset>[-fast]/classifier.pt``."""

    return settings_mod.settings.run_dir(f"classifier-{dataset}") / "classifier.pt"


def get_classifier(
    dataset: str,
    path: str | Path | None = None,
    steps: int | None = None,
    device: torch.device | str | None = None,
    train_if_missing: bool = True,
    verbose: bool = True,
) -> FeatureClassifier:
    """The feature classifier for ``dataset``, in this order: the file ``path``; without ``path``, your own
    in :func:`default_classifier_path`, else the one shipped in :mod:`ddpm_lib.pretrained` (the classifier
    the model card's FIDs were measured with). If none exists it is trained on the training split (fast
    mode: seconds on the stand-in) and saved at ``path`` (or the default path) with its test accuracy.
    ``model.source`` is the file it came from."""

    s = settings_mod.settings
    device = torch.device(device) if device is not None else s.device
    explicit = path is not None
    path = Path(path) if explicit else default_classifier_path(dataset)
    found = path if path.is_file() else None if explicit else pretrained.classifier_path(dataset)
    if found is not None:
        model = load_classifier(found, device)
        if verbose:
            acc = model.meta.get("test_accuracy")
            shipped = " (shipped with ddpm_lib; yours would go to " + str(path) + ")" if found != path else ""
            print(f"loaded feature classifier {found}{shipped}" + (f", test accuracy {acc:.3f}" if acc is not None else ""))
        return model
    if not train_if_missing:
        raise FileNotFoundError(f"no feature classifier at {path}: train one with `python -m ddpm_lib.evaluation.classifier train --dataset {dataset}`.")
    info = dataset_info(dataset)
    # cpu mode: 3,000 CIFAR-10 steps took 637 s on 2 idle cores (test accuracy 0.83); 1,000 reached 0.75
    steps = steps if steps is not None else s.pick(full=3000, fast=60, cpu=1000)
    if verbose:
        print(f"no feature classifier at {path}: training one on {dataset} ({steps} steps on {device}) ...", flush=True)
    train = load_dataset(dataset, train=True, max_items=s.max_train_images)
    test = load_dataset(dataset, train=False, max_items=s.pick(full=None, fast=256))
    model = FeatureClassifier(in_channels=info.channels, num_classes=info.num_classes, width=s.pick(full=32, fast=8))
    t0 = time.perf_counter()
    train_classifier(model.to(device), train, steps=steps, batch_size=s.pick(full=128, fast=32), hflip=info.channels == 3)
    acc = accuracy(model, test)
    save_classifier(model, path, dataset=dataset, steps=steps, test_accuracy=acc, seconds=time.perf_counter() - t0)
    model.meta = {"dataset": dataset, "steps": steps, "test_accuracy": acc}
    model.source = path
    if verbose:
        print(f"trained feature classifier for {dataset} in {time.perf_counter() - t0:.1f} s: test accuracy {acc:.3f}; saved {path}")
    return model


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m ddpm_lib.evaluation.classifier", description="Train the FID feature classifier.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train on a dataset's training split, report test accuracy, save",
                       description="Train the small CNN whose features the default FID uses, on a dataset's "
                       "training split; report its test accuracy and save it.")
    t.add_argument("--dataset", required=True, choices=REAL_DATASETS, help="dataset to train on")
    t.add_argument("--root", default=None, help="data folder (default: settings.data_dir)")
    t.add_argument("--steps", type=int, default=3000, help="optimizer steps (default 3000)")
    t.add_argument("--batch", type=int, default=128, help="images per step (default 128)")
    t.add_argument("--lr", type=float, default=2e-3, help="Adam learning rate (default 2e-3)")
    t.add_argument("--width", type=int, default=32, help="channels of the first convolution (default 32)")
    t.add_argument("--max-items", type=int, default=None, help="train on the first N images only (default: all)")
    t.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    t.add_argument("--out", default=None, help="output file (default: <runs dir>/classifier-<dataset>[-<mode>]/classifier.pt, "
                   "the runs folder of ddpm_lib.settings)")
    t.add_argument("--overwrite", action="store_true", help="replace an --out file that is not a feature classifier")
    return p


def is_classifier_file(path: Path) -> bool:
    """True when ``path`` holds a classifier saved by :func:`save_classifier` (what ``train --out`` may replace)."""
    try:
        return load_checkpoint(path).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def main(argv: list[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    out = Path(a.out) if a.out is not None else default_classifier_path(a.dataset)
    try:  # before minutes of training: never replace a file that is not a classifier (ddpm_lib.files)
        check_output_file(a.out if a.out is not None else out, option="--out", kind="a feature classifier",
                          is_own=is_classifier_file, overwrite=a.overwrite)
    except ClobberError as e:
        print(f"{build_parser().prog} train: error: {e}", file=sys.stderr)
        return 2
    info = dataset_info(a.dataset)
    t0 = time.perf_counter()
    train = load_dataset(a.dataset, train=True, root=a.root, max_items=a.max_items)
    test = load_dataset(a.dataset, train=False, root=a.root)
    x_train, y_train = dataset_to_tensors(train)
    print(f"loaded {len(x_train)} training and {len(test)} test images in {time.perf_counter() - t0:.1f} s", flush=True)
    model = FeatureClassifier(in_channels=info.channels, num_classes=info.num_classes, width=a.width)
    device = torch.device(a.device) if a.device else None
    if device is not None:
        model.to(device)
    t1 = time.perf_counter()
    train_classifier(model, (x_train, y_train), steps=a.steps, batch_size=a.batch, lr=a.lr, hflip=info.channels == 3, log_every=max(1, a.steps // 10))
    seconds = time.perf_counter() - t1
    acc = accuracy(model, test)
    save_classifier(model, out, dataset=a.dataset, steps=a.steps, test_accuracy=acc, seconds=seconds)
    print(f"test accuracy {acc:.4f} after {a.steps} steps ({seconds:.0f} s); saved {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
