"""Starter weights shipped inside the package, so every student sees real images, offline, on any machine.

Two small models trained with the course's cpu recipes (:mod:`ddpm_lib.training.recipes`), stored as slim
checkpoints (EMA weights in fp16, each file under 5 MB) next to this file; ``MODEL_CARD.md`` says
what data and compute produced each, how good they are, and the exact command that reproduces them
(``make weights``)::

    from ddpm_lib.loading import load_model
    model, schedule, cfg, step = load_model("pretrained:fashion_mnist")   # as for a run's final.pt
    python -m ddpm_lib sample --ckpt pretrained:cifar10 --class 3 --guidance 3 --out cats.png

Next to them ship the two feature classifiers (:mod:`ddpm_lib.evaluation.classifier`) that measured the card's
FIDs, listed in ``classifiers.json``: FID with classifier features is only comparable on the same
classifier file, so a student who evaluates a model gets numbers comparable with the card's, and
notebook 07 need not train one first.

This package holds the files and their registries; it imports nothing above :mod:`ddpm_lib.files`, so
every layer can find a starter file. Building a model from one is :func:`ddpm_lib.loading.load_model`.
Every load checks the file's SHA-256 against ``registry.json`` or ``classifiers.json``, so a damaged
or swapped file is an error, never a silent surprise.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

from ddpm_lib.files import sha256

HERE = Path(__file__).resolve().parent
PREFIX = "pretrained:"


class PretrainedError(ValueError):
    """An unknown name, a missing file or a checksum mismatch: the message says which and what to do."""


@cache
def registry() -> dict[str, dict]:
    """``registry.json``: for each name, its file, SHA-256, recipe, sampler defaults and measured statistics."""
    return json.loads((HERE / "registry.json").read_text())


@cache
def classifier_registry() -> dict[str, dict]:
    """``classifiers.json``: for each dataset, the shipped feature classifier's file, SHA-256 and training."""
    file = HERE / "classifiers.json"
    return json.loads(file.read_text()) if file.is_file() else {}


def names() -> list[str]:
    return sorted(registry())


def path(name: str) -> Path:
    """The verified file of starter model ``name`` (``PretrainedError`` if unknown, missing or corrupt)."""
    entries = registry()
    if name not in entries:
        if not entries:  # a checkout whose weights have not been built yet (`make weights`)
            raise PretrainedError(f"starter model {name!r}: no starter weights are registered in {HERE / 'registry.json'}; "
                                  "run `make weights` or reinstall ddpm-course.")
        raise PretrainedError(f"unknown starter model {name!r}: choose one of {', '.join(names())} "
                              f"(e.g. --ckpt {PREFIX}{names()[0]}).")
    return _verified(HERE / entries[name]["file"], entries[name]["sha256"], f"starter model {name!r}")


def classifier_path(dataset: str) -> Path | None:
    """The verified feature classifier shipped for ``dataset`` (``None`` if none is shipped for it;
    ``PretrainedError`` if its file is missing or corrupt)."""
    entry = classifier_registry().get(dataset)
    if entry is None:
        return None
    return _verified(HERE / entry["file"], entry["sha256"], f"feature classifier for {dataset!r}")


def _verified(file: Path, expected_sha256: str, what: str) -> Path:
    if not file.is_file():
        raise PretrainedError(f"{what}: {file} is missing from the installed package; "
                              "reinstall ddpm-course (pip install --force-reinstall ...) or run `make weights`.")
    digest = sha256(file)
    if digest != expected_sha256:
        raise PretrainedError(f"{what}: {file} has SHA-256 {digest[:12]}..., expected "
                              f"{expected_sha256[:12]}... (a damaged or replaced file); reinstall ddpm-course.")
    return file


def resolve(spec: str | Path) -> Path:
    """``"pretrained:NAME"`` -> the verified file of that starter model; any other path is returned as is."""
    text = str(spec)
    return path(text[len(PREFIX):]) if text.startswith(PREFIX) else Path(spec)


def info(name: str) -> dict:
    """The registry entry of ``name``: recipe, steps, sampler defaults, measured quality and data statistics."""
    path(name)  # same errors as loading
    return dict(registry()[name])
