"""Datasets for the course: Fashion-MNIST, CIFAR-10, a folder of images, or an array file.

Every dataset yields ``(image, label)`` with ``image`` a float tensor of shape ``(C, S, S)`` scaled to
``[-1, 1]`` (DDPM's data scaling, Ho et al. 2020, section 3.3: "integers in {0, ..., 255} scaled
linearly to [-1, 1]") and ``label`` a Python int::

    from ddpm_lib.data.sources import load_dataset, make_dataloader
    ds = load_dataset("fashion_mnist", max_items=512)   # 1 x 32 x 32
    loader = make_dataloader(ds, batch_size=64)

This module finds (and downloads) the files; :mod:`ddpm_lib.data.image_datasets` turns them into tensors,
and :mod:`ddpm_lib.data.standins` writes the FAST-mode stand-ins.

Where the data comes from (``settings.data_dir``, i.e. ``DDPM_DATA_DIR``, default ``data/``):

- ``fashion_mnist``: torchvision's raw layout ``FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (``.gz`` copies are unpacked), read by ``torchvision.datasets.FashionMNIST``; 28x28 images are padded
  to 32x32 with background (the usual choice for a UNet that halves the size three times).
- ``cifar10``: torchvision's ``cifar-10-batches-py/`` (the official pickles), or an image-folder copy
  ``cifar10/{train,test}/<class>/*.png|jpg`` (how the JPEG tarball the course ships unpacks).
- ``folder``: any ``torchvision.datasets.ImageFolder`` layout at ``root`` (class sub-folders), resized
  (shorter side) and centre-cropped to ``image_size``.
- ``npy``: a ``.npy`` array of images, or a ``.npz`` with ``images`` (and optional ``labels``).

Downloads: ``download=None`` tries to download missing files unless ``DDPM_OFFLINE=1`` (without a network
the attempt fails within milliseconds: the host is probed first with a short timeout). Offline with no
data, :class:`DatasetNotFoundError` explains which files are expected where and how to get them. In
FAST mode, instead of that error, a small synthetic stand-in *in the dataset's real on-disk format* is
written to ``<data_dir>/_synthetic/`` and loaded through the same torchvision code path, loudly.
"""

from __future__ import annotations

import argparse
import gzip
import os
import socket
import sys
import tempfile
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ddpm_lib import settings as _settings_mod
from ddpm_lib.data.image_datasets import (
    ArrayImageDataset,
    DatasetInfo,
    FolderImageDataset,
    ImageDataset,
    apply_subset,
    array_layout,
    folder_split_root,
    load_folder_dataset,
    load_npy_dataset,
    read_array_file,
)
from ddpm_lib.data.standins import (
    CIFAR10_CLASSES,
    write_cifar10_standin,
    write_fashion_mnist_standin,
    write_idx,
)
from ddpm_lib.files import atomic_write

__all__ = [
    "CIFAR10_CLASSES", "FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "NAMES", "REAL_DATASETS",
    "ArrayImageDataset", "DataStatus", "DatasetInfo", "DatasetNotFoundError", "FolderImageDataset", "ImageDataset",
    "SyntheticDataWarning", "data_status", "dataset_info", "load_dataset", "make_dataloader",
    "write_cifar10_standin", "write_fashion_mnist_standin", "write_idx",
]  # fmt: skip

REAL_DATASETS = ("fashion_mnist", "cifar10")  # the course's two datasets, with download links and stand-ins
NAMES = (*REAL_DATASETS, "folder", "npy")

FASHION_MNIST_CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip

FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_URL_GITHUB = "https://github.com/zalandoresearch/fashion-mnist/tree/master/data/fashion"
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_PICKLES = ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch", "batches.meta")

# Size of the synthetic stand-ins (FAST mode without real data). Bump the version when the drawing changes.
_STANDIN_VERSION = "1"
_STANDIN_FMNIST = {"train": 1024, "test": 256}
_STANDIN_CIFAR_PER_CLASS = {"train": 64, "test": 16}

# How long a download may stall before we give up (seconds), and how long the reachability probe waits.
DOWNLOAD_SOCKET_TIMEOUT = 30.0
PROBE_TIMEOUT = 3.0


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not in the data folder (and could not be downloaded)."""


class SyntheticDataWarning(UserWarning):
    """Raised (as a warning) when FAST mode substitutes a synthetic stand-in for missing real data."""


def dataset_info(name: str, root: str | os.PathLike | None = None) -> DatasetInfo:
    """Channels, number of classes and class names of ``"fashion_mnist"`` or ``"cifar10"``.

    For ``"folder"`` and ``"npy"`` pass ``root`` (the folder / the array file); the information is read
    from there (class sub-folder names; array shape) without decoding every image.
    """
    name = _check_name(name)
    if name == "fashion_mnist":
        return DatasetInfo(name, 1, 10, FASHION_MNIST_CLASSES, 28)
    if name == "cifar10":
        return DatasetInfo(name, 3, 10, CIFAR10_CLASSES, 32)
    if root is None:
        raise ValueError(f"dataset_info({name!r}) needs root= (the {'folder' if name == 'folder' else 'array file'} to inspect).")
    if name == "folder":
        top = folder_split_root(Path(root), train=True)
        classes = tuple(sorted(d.name for d in top.iterdir() if d.is_dir()))
        return DatasetInfo(name, 3, len(classes), classes, None)
    images, labels = read_array_file(Path(root))
    layout = array_layout(images.shape)
    channels = images.shape[1] if layout == "NCHW" else (1 if layout == "NHW" else images.shape[-1])
    n_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 1
    return DatasetInfo(name, min(int(channels), 3), n_classes, tuple(str(i) for i in range(n_classes)), None)


# --------------------------------------------------------------------------------------------------
# Public entry points
# --------------------------------------------------------------------------------------------------


def load_dataset(
    name: str,
    train: bool = True,
    image_size: int = 32,
    root: str | os.PathLike | None = None,
    download: bool | None = None,
    hflip: bool = False,
    max_items: int | None = None,
    *,
    synthetic: bool | None = None,
    grayscale: bool = False,
    subset_seed: int = 0,
) -> ImageDataset:
    """Load a dataset as (image in [-1, 1], int label) pairs; see the module docstring for the layouts.

    Args:
        name: ``"fashion_mnist"``, ``"cifar10"``, ``"folder"`` or ``"npy"``.
        train: the training split (else the test split).
        image_size: side of the square images returned (Fashion-MNIST's 28 is padded to 32; other sizes
            are resized).
        root: for ``fashion_mnist``/``cifar10`` the data folder (default ``settings.data_dir``); for
            ``folder`` the image folder; for ``npy`` the ``.npy``/``.npz`` file.
        download: ``True``: download missing files (a failure raises); ``False``: never; ``None``:
            download unless ``DDPM_OFFLINE=1`` (in FAST mode a failure falls back to the stand-in).
        hflip: random horizontal flip with probability 1/2 (data augmentation, as in DDPM's CIFAR-10 runs).
        max_items: keep a fixed, class-mixed random subset (seeded by ``subset_seed``) of this many images.
        synthetic: ``None``: use the synthetic stand-in only in FAST mode when the real data is missing
            and cannot be downloaded; ``True``: always use it; ``False``: never (raise instead).
        grayscale: for ``folder``: load images as one channel.
    """
    name = _check_name(name)
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 4:
        raise ValueError(f"image_size must be an int >= 4, got {image_size!r}.")
    if max_items is not None and (not isinstance(max_items, int) or max_items < 1):
        raise ValueError(f"max_items must be a positive int or None, got {max_items!r}.")
    split = "train" if train else "test"

    if name in ("folder", "npy"):
        if root is None:
            what = "an image folder (class sub-folders of images)" if name == "folder" else "a .npy or .npz file"
            raise ValueError(f"load_dataset({name!r}) needs root= pointing at {what}.")
        root = Path(root).expanduser()
        if name == "folder":
            ds = load_folder_dataset(root, train=train, image_size=image_size, hflip=hflip, grayscale=grayscale)
        else:
            ds = load_npy_dataset(root, image_size=image_size, hflip=hflip)
        return apply_subset(ds, max_items, subset_seed)

    data_dir = Path(root).expanduser().resolve() if root is not None else _settings_mod.settings.data_dir
    # fast and cpu mode keep every notebook runnable anywhere: no real files and no network -> stand-in
    fast = _settings_mod.settings.mode in ("fast", "cpu")
    use_synthetic = synthetic is True
    why = "asked for (synthetic=True)"
    if not use_synthetic and _find_real(name, data_dir) is None:
        top = data_dir / "cifar10"
        if name == "cifar10" and top.is_dir():  # an image folder was meant but is incomplete: say so, never fall back
            raise DatasetNotFoundError(
                f"{top} looks like a CIFAR-10 image folder but {_cifar_folder_problem(top)}: train/ and test/ each need "
                f"the ten class folders ({', '.join(CIFAR10_CLASSES)}); fix it, or move it away to use the download "
                "or the stand-in.")
        explicit = download is True
        if download is None:
            download = not _offline()
        fallback = synthetic is None and fast and not explicit
        if download:
            try:
                _download(name, data_dir)
            except DatasetNotFoundError as e:
                if not fallback:
                    raise
                use_synthetic = True
                why = "the real files are missing and the download failed: " + _attempt_line(str(e))
        elif fallback:
            use_synthetic = True
            why = "the real files are missing and downloads are off (DDPM_OFFLINE=1 or download=False)"
        else:
            raise _not_found_error(name, data_dir, tried_download=False) from None

    if use_synthetic:
        syn_dir = _ensure_standin(name, data_dir)
        _announce_standin(name, data_dir, syn_dir, why)
        ds = _load_real(name, syn_dir, split, image_size, hflip, synthetic=True)
    else:
        ds = _load_real(name, data_dir, split, image_size, hflip, synthetic=False)
    return apply_subset(ds, max_items, subset_seed)


def make_dataloader(
    dataset: Dataset,
    batch_size: int,
    shuffle: bool = True,
    drop_last: bool = True,
    num_workers: int | None = None,
    *,
    generator: torch.Generator | None = None,
    pin_memory: bool | None = None,
    device: torch.device | str | None = None,
) -> DataLoader:
    """A DataLoader with sensible defaults.

    ``num_workers=None`` picks 0 (load in the main process) unless the device is a CUDA GPU, where it
    picks ``min(8, cpu_count - 1)``: the course's datasets are small and decoded cheaply, and on a
    CPU-only machine worker processes would only compete with the model for the same few cores (and
    start slowly inside notebooks). ``pin_memory`` defaults to True exactly on CUDA.
    ``generator`` makes the shuffling order reproducible whatever ran before.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}.")
    n = len(dataset)
    if drop_last and n < batch_size:
        raise ValueError(
            f"batch_size={batch_size} is larger than the dataset ({n} images) and drop_last=True would give "
            "no batches at all: lower batch_size, load more images (max_items), or pass drop_last=False."
        )
    dev = torch.device(device) if device is not None else _settings_mod.settings.device
    on_cuda = dev.type == "cuda"
    if num_workers is None:
        num_workers = min(8, max(1, (os.cpu_count() or 2) - 1)) if on_cuda else 0
    if num_workers < 0:
        raise ValueError(f"num_workers must be >= 0, got {num_workers}.")
    if pin_memory is None:
        pin_memory = on_cuda
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=shuffle,
        drop_last=drop_last,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        generator=generator,
    )


@dataclass
class DataStatus:
    """Whether a dataset's real files are present (nothing is downloaded to find out)."""

    name: str
    present: bool
    location: Path | None
    layout: str | None
    expected: list[Path] = field(default_factory=list)
    synthetic_present: bool = False

    def line(self) -> str:
        if self.present:
            return f"{self.name:14s} present ({self.layout}) at {self.location}"
        alt = " (synthetic stand-in already written)" if self.synthetic_present else ""
        where = str(self.expected[0].parent)
        if self.name == "cifar10":
            where += f" or {self.expected[0].parent.parent / 'cifar10'}/{{train,test}}/<class>/"
        return f"{self.name:14s} MISSING: looked for {where}{alt}"


def data_status(data_dir: str | os.PathLike | None = None) -> dict[str, DataStatus]:
    """Which of the course's datasets are present in ``data_dir`` (default ``settings.data_dir``). Never downloads."""
    d = Path(data_dir).expanduser().resolve() if data_dir is not None else _settings_mod.settings.data_dir
    out = {}
    for name in REAL_DATASETS:
        found = _find_real(name, d)
        syn = (d / "_synthetic" / f"{name}.stamp").is_file()
        out[name] = DataStatus(
            name=name,
            present=found is not None,
            location=found[0] if found else None,
            layout=found[1] if found else None,
            expected=_expected_files(name, d),
            synthetic_present=syn,
        )
    return out


# --------------------------------------------------------------------------------------------------
# Finding, downloading and loading the real files
# --------------------------------------------------------------------------------------------------


def _check_name(name: str) -> str:
    if not isinstance(name, str):
        raise ValueError(f"dataset name must be a string, one of {NAMES}; got {name!r}.")
    key = name.strip().lower().replace("-", "_")
    key = {"fashionmnist": "fashion_mnist", "cifar_10": "cifar10", "imagefolder": "folder", "npz": "npy"}.get(key, key)
    if key not in NAMES:
        raise ValueError(f"unknown dataset {name!r}: use one of {', '.join(NAMES)}.")
    return key


def _offline() -> bool:
    v = os.environ.get("DDPM_OFFLINE")
    return _settings_mod._parse_bool("DDPM_OFFLINE", v) if v is not None else False


def _fmnist_raw(data_dir: Path) -> Path:
    return data_dir / "FashionMNIST" / "raw"


def _cifar_folder_problem(top: Path) -> str:
    """What keeps ``top`` from being a CIFAR-10 image folder (``train/`` and ``test/``, each with exactly the ten
    class folders), or "" when nothing does."""
    for split in ("train", "test"):
        d = top / split
        if not d.is_dir():
            return f"it has no {split}/ folder"
        classes = {c.name for c in d.iterdir() if c.is_dir()}
        missing, extra = sorted(set(CIFAR10_CLASSES) - classes), sorted(classes - set(CIFAR10_CLASSES))
        if missing or extra:
            return ", ".join(filter(None, [f"{split}/ lacks the class folder(s) {', '.join(missing)}" if missing else "",
                                           f"{split}/ has folder(s) that are no CIFAR-10 class: {', '.join(extra)}"
                                           if extra else ""]))
    return ""


def _cifar_folder_ok(top: Path) -> bool:
    return not _cifar_folder_problem(top)


def _find_real(name: str, data_dir: Path) -> tuple[Path, str] | None:
    """(location, layout) of real files in ``data_dir``, or None. Unpacks Fashion-MNIST ``.gz`` files if needed."""
    if name == "fashion_mnist":
        raw = _fmnist_raw(data_dir)
        if all((raw / f).is_file() for f in FASHION_MNIST_FILES):
            return raw, "idx files"
        if all((raw / f).is_file() or (raw / f"{f}.gz").is_file() for f in FASHION_MNIST_FILES):
            try:
                for f in FASHION_MNIST_FILES:
                    if not (raw / f).is_file():
                        atomic_write(raw / f, gzip.decompress((raw / f"{f}.gz").read_bytes()))
                return raw, "idx files"
            except OSError:
                return None
        return None
    if name == "cifar10":
        pk = data_dir / "cifar-10-batches-py"
        if all((pk / f).is_file() for f in CIFAR10_PICKLES):
            return pk, "pickles"
        if _cifar_folder_ok(data_dir / "cifar10"):
            return data_dir / "cifar10", "image folder"
        return None
    raise AssertionError(name)


def _expected_files(name: str, data_dir: Path) -> list[Path]:
    if name == "fashion_mnist":
        return [_fmnist_raw(data_dir) / f for f in FASHION_MNIST_FILES]
    pk = data_dir / "cifar-10-batches-py"
    return [pk / f for f in CIFAR10_PICKLES]


def _not_found_error(name: str, data_dir: Path, tried_download: bool, reason: str = "") -> DatasetNotFoundError:
    files = "\n".join(f"    {p}" for p in _expected_files(name, data_dir))
    if name == "fashion_mnist":
        how = (
            "    download the four files\n"
            + "".join(f"      {FASHION_MNIST_URL}{f}.gz\n" for f in FASHION_MNIST_FILES)
            + f"    (also at {FASHION_MNIST_URL_GITHUB})\n"
            f"    and put them (the .gz files, or unpacked) into\n      {_fmnist_raw(data_dir)}/\n"
        )
        label = "Fashion-MNIST"
    else:
        how = (
            f"    download\n      {CIFAR10_URL}\n"
            f"    and unpack it into {data_dir}/ (tar -xzf cifar-10-python.tar.gz -C {data_dir}),\n"
            f"    or unpack an image-folder copy so that {data_dir / 'cifar10'}/{{train,test}}/<class>/*.png|jpg exist\n"
            f"    (class folders: {', '.join(CIFAR10_CLASSES)}).\n"
        )
        label = "CIFAR-10"
    if tried_download:
        attempt = f"A download was attempted and failed ({reason or 'unknown reason'})."
    elif reason:
        attempt = f"The files there cannot be used ({reason})."
    else:
        attempt = "No download was attempted (download=False or DDPM_OFFLINE=1)."
    return DatasetNotFoundError(
        f"{label} ({name!r}) was not found in the data folder {data_dir}.\n"
        f"{attempt}\n"
        f"Expected files:\n{files}\n"
        f"How to get them:\n"
        f"  - online: `make data` (or python -m ddpm_lib.data.sources download {name}), or load_dataset({name!r}, download=True);\n"
        f"  - by hand:\n{how}"
        f"  - or point DDPM_DATA_DIR at a folder that already holds a copy (e.g. DDPM_DATA_DIR=/path/to/datasets).\n"
        f"  - or run in FAST mode (DDPM_FAST=1) to use a small synthetic stand-in instead."
    )


def _probe(url: str, timeout: float = PROBE_TIMEOUT) -> str | None:
    """None if a TCP connection to the URL's host opens within ``timeout`` s, else the reason."""
    u = urlparse(url)
    port = u.port or (443 if u.scheme == "https" else 80)
    try:
        with socket.create_connection((u.hostname, port), timeout=timeout):
            return None
    except OSError as e:
        return f"cannot reach {u.hostname}: {e}"


@contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def _download(name: str, data_dir: Path) -> None:
    """Download a dataset with torchvision; any failure becomes a DatasetNotFoundError, quickly when offline."""
    url = FASHION_MNIST_URL if name == "fashion_mnist" else CIFAR10_URL
    reason = _probe(url)
    if reason is not None:
        raise _not_found_error(name, data_dir, tried_download=True, reason=reason) from None
    print(f"Downloading {name} into {data_dir} ...", file=sys.stderr)
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        from torchvision import datasets  # slow import (~1 s)

        with _socket_timeout(DOWNLOAD_SOCKET_TIMEOUT), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for train in (True, False):
                if name == "fashion_mnist":
                    datasets.FashionMNIST(str(data_dir), train=train, download=True)
                else:
                    datasets.CIFAR10(str(data_dir), train=train, download=True)
    except Exception as e:  # noqa: BLE001 - any failure is reported as "not found" with the reason
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise _not_found_error(name, data_dir, tried_download=True, reason=msg) from None
    if _find_real(name, data_dir) is None:
        raise _not_found_error(name, data_dir, tried_download=True, reason="files incomplete after download") from None


def _load_real(name: str, data_dir: Path, split: str, image_size: int, hflip: bool, synthetic: bool) -> ImageDataset:
    from torchvision import datasets  # slow import (~1 s)

    info = dataset_info(name)
    train = split == "train"
    found = _find_real(name, data_dir)
    if found is None:  # pragma: no cover - callers check first
        raise _not_found_error(name, data_dir, tried_download=False) from None
    location, layout = found
    if name == "fashion_mnist":
        try:
            tv = datasets.FashionMNIST(str(data_dir), train=train, download=False)
        except (RuntimeError, AssertionError, ValueError, OSError) as e:  # truncated / not idx files
            raise _not_found_error(name, data_dir, tried_download=False, reason=f"files unreadable: {e}") from None
        images = tv.data.numpy()  # (N, 28, 28) uint8, read by torchvision's idx parser
        labels = tv.targets.numpy()
        return ArrayImageDataset(images, labels, info=info, image_size=image_size, hflip=hflip,
                                 source=f"{location} ({split})", synthetic=synthetic, pad=True)
    if layout == "pickles":
        try:
            tv = datasets.CIFAR10(str(data_dir), train=train, download=False)  # checks every file's md5
        except (RuntimeError, OSError) as e:
            raise _not_found_error(name, data_dir, tried_download=False, reason=f"files corrupted: {e}") from None
        return ArrayImageDataset(tv.data, np.asarray(tv.targets), info=info, image_size=image_size, hflip=hflip,
                                 source=f"{location} ({split})", synthetic=synthetic)
    folder = datasets.ImageFolder(str(location / split))
    if list(folder.classes) != list(CIFAR10_CLASSES):
        raise ValueError(f"{location / split} holds class folders {folder.classes}, expected {list(CIFAR10_CLASSES)}.")
    return FolderImageDataset(folder, info=info, image_size=image_size, hflip=hflip,
                              source=f"{location / split}", synthetic=synthetic)


# --------------------------------------------------------------------------------------------------
# Synthetic stand-ins (FAST mode without real data): see ddpm_lib.data.standins
# --------------------------------------------------------------------------------------------------


def _ensure_standin(name: str, data_dir: Path) -> Path:
    """The folder holding the stand-in for ``name`` (written if missing or stale); falls back to the temp dir if read-only."""
    sizes = _STANDIN_FMNIST if name == "fashion_mnist" else _STANDIN_CIFAR_PER_CLASS
    stamp_text = f"{name} synthetic stand-in v{_STANDIN_VERSION} {sorted(sizes.items())}\n"
    for base in (data_dir / "_synthetic", Path(tempfile.gettempdir()) / "ddpm_course_synthetic"):
        stamp = base / f"{name}.stamp"
        try:
            if stamp.is_file() and stamp.read_text() == stamp_text and _find_real(name, base) is not None:
                return base
            base.mkdir(parents=True, exist_ok=True)
            if name == "fashion_mnist":
                write_fashion_mnist_standin(base, _STANDIN_FMNIST["train"], _STANDIN_FMNIST["test"])
            else:
                write_cifar10_standin(base, _STANDIN_CIFAR_PER_CLASS["train"], _STANDIN_CIFAR_PER_CLASS["test"])
            atomic_write(stamp, stamp_text.encode())
            return base
        except OSError:
            continue
    raise DatasetNotFoundError(f"could not write the synthetic {name} stand-in to {data_dir / '_synthetic'} or the temp folder.")


def _attempt_line(message: str) -> str:
    """The 'A download was attempted and failed (...)' line of a DatasetNotFoundError message."""
    line = next((ln for ln in message.splitlines() if ln.startswith("A download")), "")
    return line.removeprefix("A download was attempted and failed ").strip(" .()") or "see above"


def _announce_standin(name: str, data_dir: Path, syn_dir: Path, why: str) -> None:
    msg = (
        f"FAST mode: a SYNTHETIC STAND-IN for {name} (simple drawn shapes in the real file format, "
        f"from {syn_dir}) is used instead of the real data in {data_dir}, because {why}. "
        f"Results will not look like real {name}. Get the real data with `make data`, or set DDPM_DATA_DIR."
    )
    bar = "#" * 78
    print(f"{bar}\n# SYNTHETIC DATA: {name} stand-in, not the real dataset\n# {msg}\n{bar}", file=sys.stdout)
    warnings.warn(msg, SyntheticDataWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------------
# Command line: python -m ddpm_lib.data.sources download fashion_mnist cifar10 | status
# --------------------------------------------------------------------------------------------------


def build_parser():
    p = argparse.ArgumentParser(prog="python -m ddpm_lib.data.sources", description="Fetch or inspect the course datasets.")
    sub = p.add_subparsers(dest="cmd", required=True)
    dl = sub.add_parser("download", help="download datasets into the data dir (needs internet)",
                        description="Download datasets into the data folder (DDPM_DATA_DIR, else the default "
                        "folder of ddpm_lib.settings); needs the internet.")
    dl.add_argument("names", nargs="+", choices=REAL_DATASETS, help="datasets to download")
    sub.add_parser("status", help="which datasets are present (never downloads)",
                   description="Say which datasets are present in the data folder, and where; never downloads.")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    data_dir = _settings_mod.settings.data_dir
    if args.cmd == "status":
        for st in data_status().values():
            print(st.line())
        return 0
    status = 0
    for name in args.names:
        if _find_real(name, data_dir) is not None:
            print(f"{name}: already present in {data_dir}")
            continue
        try:
            _download(name, data_dir)
            print(f"{name}: downloaded into {data_dir}")
        except DatasetNotFoundError as e:
            print(f"{name}: FAILED\n{e}\n", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())

