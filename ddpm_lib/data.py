"""Datasets for the course: Fashion-MNIST, CIFAR-10, a folder of images, or an array file.

Every dataset yields ``(image, label)`` with ``image`` a float tensor of shape ``(C, S, S)`` scaled to
``[-1, 1]`` (DDPM's data scaling, Ho et al. 2020, section 3.3: "integers in {0, ..., 255} scaled
linearly to [-1, 1]") and ``label`` a Python int::

    from ddpm_lib.data import load_dataset, make_dataloader
    ds = load_dataset("fashion_mnist", max_items=settings.max_train_images)   # 1 x 32 x 32
    loader = make_dataloader(ds, batch_size=settings.batch_size)

Where the data comes from (``settings.data_dir``, i.e. ``DDPM_DATA_DIR``, default ``data/``):

- ``fashion_mnist``: torchvision's raw layout ``FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  (``.gz`` copies are unpacked), read by ``torchvision.datasets.FashionMNIST``; 28x28 images are padded
  to 32x32 with background (the usual choice for a UNet that halves the size three times).
- ``cifar10``: torchvision's ``cifar-10-batches-py/`` (the official pickles), or an image-folder copy
  ``cifar10/{train,test}/<class>/*.png|jpg`` (how the JPEG tarball the course ships unpacks).
- ``folder``: any ``torchvision.datasets.ImageFolder`` layout at ``root`` (class sub-folders), resized
  (shorter side) and centre-cropped to ``image_size``.
- ``npy``: a ``.npy`` array of images, or a ``.npz`` with ``images`` (and optional ``labels``).

Downloads: ``download=None`` tries to download missing files (unless ``DDPM_OFFLINE=1``) in FULL mode.
FAST mode never downloads by itself: if the real files are missing it writes a small synthetic
stand-in *in the dataset's real on-disk format* to ``<data_dir>/_synthetic/`` and loads it through the
same torchvision code path, and says so loudly. Offline with no data, :class:`DatasetNotFoundError`
explains which files are expected where and how to get them.
"""

from __future__ import annotations

import gzip
import os
import shutil
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
from ddpm_lib.standins import (
    CIFAR10_CLASSES,
    atomic_write_bytes,
    write_cifar10_standin,
    write_fashion_mnist_standin,
    write_idx,
)

__all__ = [
    "CIFAR10_CLASSES", "FASHION_MNIST_CLASSES", "FASHION_MNIST_FILES", "NAMES",
    "ArrayImageDataset", "DataStatus", "DatasetInfo", "DatasetNotFoundError", "FolderImageDataset",
    "SyntheticDataWarning", "data_status", "dataset_info", "load_dataset", "make_dataloader",
    "write_cifar10_standin", "write_fashion_mnist_standin", "write_idx",
]  # fmt: skip

NAMES = ("fashion_mnist", "cifar10", "folder", "npy")

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

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")

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


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    channels: int
    num_classes: int
    class_names: tuple[str, ...]
    native_size: int | None = None  # side of the stored images (None: varies)


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
        top = _folder_split_root(Path(root), train=True)
        classes = tuple(sorted(d.name for d in top.iterdir() if d.is_dir()))
        return DatasetInfo(name, 3, len(classes), classes, None)
    images, labels = _read_array_file(Path(root))
    layout = _array_layout(images.shape)
    channels = images.shape[1] if layout == "NCHW" else (1 if layout == "NHW" else images.shape[-1])
    n_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 1
    return DatasetInfo(name, min(int(channels), 3), n_classes, tuple(str(i) for i in range(n_classes)), None)


# --------------------------------------------------------------------------------------------------
# The dataset classes
# --------------------------------------------------------------------------------------------------


def _to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 in 0..255 -> float in [-1, 1]: x / 127.5 - 1 (0 -> -1, 255 -> 1)."""
    return x.to(torch.float32) / 127.5 - 1.0


def _resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float (C, H, W) -> (C, size, size): resize the shorter side to ``size`` then centre-crop."""
    from torchvision.transforms import functional as TF

    if x.shape[-2:] != (size, size):
        x = TF.resize(x, size, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x


class _ImageDatasetBase(Dataset):
    """Shared bits: subset indices, horizontal flip, metadata."""

    def __init__(self, *, info: DatasetInfo, image_size: int, hflip: bool, indices: np.ndarray | None,
                 source: str, synthetic: bool = False):
        self.info = info
        self.classes = list(info.class_names)
        self.channels = info.channels
        self.image_size = image_size
        self.hflip = hflip
        self.indices = indices
        self.source = source
        self.synthetic = synthetic

    def _num_stored(self) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.indices) if self.indices is not None else self._num_stored()

    def _index(self, i: int) -> int:
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for a dataset of {len(self)} images")
        return int(self.indices[i]) if self.indices is not None else i

    def _finish(self, x: torch.Tensor) -> torch.Tensor:
        if self.hflip and torch.rand(()) < 0.5:
            x = x.flip(-1)
        return x.contiguous()

    @property
    def targets(self) -> list[int]:
        """Labels of every item, in order (without decoding images)."""
        return [self._label(self._index(i)) for i in range(len(self))]

    def _label(self, j: int) -> int:  # pragma: no cover - overridden
        raise NotImplementedError

    def __repr__(self) -> str:
        tag = " SYNTHETIC STAND-IN" if self.synthetic else ""
        return (
            f"{type(self).__name__}({self.info.name}{tag}: {len(self)} images, {self.channels}x{self.image_size}x"
            f"{self.image_size} in [-1, 1], {len(self.classes)} classes, hflip={self.hflip}, from {self.source})"
        )


class ArrayImageDataset(_ImageDatasetBase):
    """Images held in an array (uint8 0..255 or float in [0, 1] / [-1, 1]), layout NCHW, NHWC or NHW.

    ``pad_to``: pad each side with background (-1) up to this size instead of resizing (Fashion-MNIST's
    28 -> 32).
    """

    def __init__(self, images, labels, *, info: DatasetInfo, image_size: int, hflip: bool = False,
                 indices: np.ndarray | None = None, source: str = "array", synthetic: bool = False):
        super().__init__(info=info, image_size=image_size, hflip=hflip, indices=indices, source=source, synthetic=synthetic)
        self.images = images
        self.layout = _array_layout(tuple(images.shape))
        self.labels = labels
        self.float_range = None
        if _is_float(images):
            self.float_range = _float_range(images, source)

    def _num_stored(self) -> int:
        return int(self.images.shape[0])

    def _label(self, j: int) -> int:
        return int(self.labels[j]) if self.labels is not None else 0

    def _raw(self, j: int) -> torch.Tensor:
        a = self.images[j]
        a = torch.from_numpy(np.array(a, copy=True)) if isinstance(a, np.ndarray) else a
        if self.layout == "NHW":
            a = a[None]
        elif self.layout == "NHWC":
            a = a.permute(2, 0, 1)
        if a.shape[0] == 4:  # RGBA: drop alpha
            a = a[:3]
        if a.shape[0] == 2:  # grey + alpha
            a = a[:1]
        return a

    def __getitem__(self, i: int):
        j = self._index(i)
        a = self._raw(j)
        if self.float_range is None:
            x = _to_unit_range(a)
        elif self.float_range == "[0,1]":
            x = a.to(torch.float32) * 2.0 - 1.0
        else:
            x = a.to(torch.float32)
        h, w = x.shape[-2:]
        s = self.image_size
        if (h, w) != (s, s):
            if h == w and h < s and (s - h) % 2 == 0 and self.info.name == "fashion_mnist":
                p = (s - h) // 2
                x = torch.nn.functional.pad(x, (p, p, p, p), value=-1.0)
            else:
                x = _resize_square(x, s).clamp(-1.0, 1.0)
        return self._finish(x), self._label(j)


class FolderImageDataset(_ImageDatasetBase):
    """A ``torchvision.datasets.ImageFolder`` decoded on the fly, resized and centre-cropped."""

    def __init__(self, folder, *, info: DatasetInfo, image_size: int, hflip: bool = False,
                 indices: np.ndarray | None = None, source: str = "folder", synthetic: bool = False,
                 grayscale: bool = False):
        super().__init__(info=info, image_size=image_size, hflip=hflip, indices=indices, source=source, synthetic=synthetic)
        self.folder = folder
        self.grayscale = grayscale

    def _num_stored(self) -> int:
        return len(self.folder.samples)

    def _label(self, j: int) -> int:
        return int(self.folder.samples[j][1])

    def __getitem__(self, i: int):
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        j = self._index(i)
        path, label = self.folder.samples[j]
        with Image.open(path) as im:
            im = im.convert("L" if self.grayscale else "RGB")
            a = pil_to_tensor(im)
        x = _to_unit_range(a)
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = _resize_square(x, self.image_size).clamp(-1.0, 1.0)
        return self._finish(x), int(label)


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
) -> _ImageDatasetBase:
    """Load a dataset as (image in [-1, 1], int label) pairs; see the module docstring for the layouts.

    Args:
        name: ``"fashion_mnist"``, ``"cifar10"``, ``"folder"`` or ``"npy"``.
        train: the training split (else the test split).
        image_size: side of the square images returned (Fashion-MNIST's 28 is padded to 32; other sizes
            are resized).
        root: for ``fashion_mnist``/``cifar10`` the data folder (default ``settings.data_dir``); for
            ``folder`` the image folder; for ``npy`` the ``.npy``/``.npz`` file.
        download: ``True``: download missing files; ``False``: never; ``None``: download in FULL mode
            unless ``DDPM_OFFLINE=1``, never in FAST mode.
        hflip: random horizontal flip with probability 1/2 (data augmentation, as in DDPM's CIFAR-10 runs).
        max_items: keep a fixed, class-mixed random subset (seeded by ``subset_seed``) of this many images.
        synthetic: ``None``: use the synthetic stand-in only in FAST mode when real data is missing;
            ``True``: always use it; ``False``: never (raise instead).
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
            ds = _load_folder_dataset(root, train=train, image_size=image_size, hflip=hflip, grayscale=grayscale)
        else:
            ds = _load_npy_dataset(root, image_size=image_size, hflip=hflip)
        return _apply_subset(ds, max_items, subset_seed)

    data_dir = Path(root).expanduser().resolve() if root is not None else _settings_mod.settings.data_dir
    fast = _settings_mod.settings.fast
    use_synthetic = synthetic is True
    if not use_synthetic and _find_real(name, data_dir) is None:
        if download is None:
            download = (not fast) and not _offline()
        if download:
            try:
                _download(name, data_dir)
            except DatasetNotFoundError:
                if not (synthetic is None and fast):
                    raise
                use_synthetic = True
        elif synthetic is None and fast:
            use_synthetic = True
        else:
            raise _not_found_error(name, data_dir, tried_download=False) from None

    if use_synthetic:
        syn_dir = _ensure_standin(name, data_dir)
        _announce_standin(name, data_dir, syn_dir)
        ds = _load_real(name, syn_dir, split, image_size, hflip, synthetic=True)
    else:
        ds = _load_real(name, data_dir, split, image_size, hflip, synthetic=False)
    return _apply_subset(ds, max_items, subset_seed)


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
    for name in ("fashion_mnist", "cifar10"):
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


def _cifar_folder_ok(top: Path) -> bool:
    for split in ("train", "test"):
        d = top / split
        if not d.is_dir():
            return False
        classes = sorted(c.name for c in d.iterdir() if c.is_dir())
        if classes != list(CIFAR10_CLASSES):
            return False
    return True


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
                        atomic_write_bytes(raw / f, gzip.decompress((raw / f"{f}.gz").read_bytes()))
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
    attempt = "A download was attempted and failed" if tried_download else "No download was attempted"
    attempt += f" ({reason})." if reason else (" (offline: download=False or DDPM_OFFLINE=1)." if not tried_download else ".")
    return DatasetNotFoundError(
        f"{label} ({name!r}) was not found in the data folder {data_dir}.\n"
        f"{attempt}\n"
        f"Expected files:\n{files}\n"
        f"How to get them:\n"
        f"  - online: `make data` (or python -m ddpm_lib.data download {name}), or load_dataset({name!r}, download=True);\n"
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
        from torchvision import datasets

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


def _load_real(name: str, data_dir: Path, split: str, image_size: int, hflip: bool, synthetic: bool) -> _ImageDatasetBase:
    from torchvision import datasets

    info = dataset_info(name)
    train = split == "train"
    found = _find_real(name, data_dir)
    if found is None:  # pragma: no cover - callers check first
        raise _not_found_error(name, data_dir, tried_download=False) from None
    location, layout = found
    if name == "fashion_mnist":
        tv = datasets.FashionMNIST(str(data_dir), train=train, download=False)
        images = tv.data.numpy()  # (N, 28, 28) uint8, read by torchvision's idx parser
        labels = tv.targets.numpy()
        return ArrayImageDataset(images, labels, info=info, image_size=image_size, hflip=hflip,
                                 source=f"{location} ({split})", synthetic=synthetic)
    if layout == "pickles":
        tv = datasets.CIFAR10(str(data_dir), train=train, download=False)
        return ArrayImageDataset(tv.data, np.asarray(tv.targets), info=info, image_size=image_size, hflip=hflip,
                                 source=f"{location} ({split})", synthetic=synthetic)
    folder = datasets.ImageFolder(str(location / split))
    if list(folder.classes) != list(CIFAR10_CLASSES):
        raise ValueError(f"{location / split} holds class folders {folder.classes}, expected {list(CIFAR10_CLASSES)}.")
    return FolderImageDataset(folder, info=info, image_size=image_size, hflip=hflip,
                              source=f"{location / split}", synthetic=synthetic)


def _folder_split_root(root: Path, train: bool) -> Path:
    if not root.is_dir():
        raise ValueError(f"load_dataset('folder'): root={str(root)!r} is not a folder.")
    split = "train" if train else "test"
    if (root / split).is_dir():
        return root / split
    if not train:
        raise ValueError(
            f"load_dataset('folder', train=False): {root} has no 'test' sub-folder. Put the test images in "
            f"{root / 'test'}/<class>/ (and the training ones in {root / 'train'}/<class>/), or use train=True."
        )
    return root


def _load_folder_dataset(root: Path, train: bool, image_size: int, hflip: bool, grayscale: bool) -> FolderImageDataset:
    from torchvision import datasets

    top = _folder_split_root(root, train)
    try:
        folder = datasets.ImageFolder(str(top), is_valid_file=lambda p: p.lower().endswith(IMAGE_EXTENSIONS))
    except (FileNotFoundError, RuntimeError) as e:
        raise ValueError(
            f"load_dataset('folder'): no images found under {top} ({e}). Put images in class sub-folders, "
            f"e.g. {top}/cats/001.png; a single sub-folder is fine for unlabelled images."
        ) from None
    classes = tuple(folder.classes)
    info = DatasetInfo("folder", 1 if grayscale else 3, len(classes), classes, None)
    return FolderImageDataset(folder, info=info, image_size=image_size, hflip=hflip, source=str(top), grayscale=grayscale)


def _read_array_file(path: Path):
    if not path.is_file():
        raise ValueError(f"load_dataset('npy'): root={str(path)!r} is not a file (expected a .npy or .npz file).")
    if path.suffix == ".npz":
        with np.load(path) as z:
            keys = list(z.keys())
            img_key = next((k for k in ("images", "x", "X", "data") if k in keys), None)
            if img_key is None:
                raise ValueError(f"{path}: a .npz needs an 'images' array (found keys {keys}); 'labels' is optional.")
            images = z[img_key]
            lab_key = next((k for k in ("labels", "y", "Y", "targets") if k in keys), None)
            labels = z[lab_key] if lab_key else None
    else:
        images = np.load(path, mmap_mode="r", allow_pickle=False)
        labels = None
    if labels is not None:
        labels = np.asarray(labels).reshape(-1).astype(np.int64)
        if len(labels) != images.shape[0]:
            raise ValueError(f"{path}: {images.shape[0]} images but {len(labels)} labels.")
        if len(labels) and labels.min() < 0:
            raise ValueError(f"{path}: labels must be non-negative ints, found {labels.min()}.")
    return images, labels


def _array_layout(shape: tuple[int, ...]) -> str:
    if len(shape) == 3:
        return "NHW"
    if len(shape) != 4:
        raise ValueError(f"image array must have shape (N, H, W), (N, C, H, W) or (N, H, W, C); got {tuple(shape)}.")
    c_first, c_last = shape[1] in (1, 2, 3, 4), shape[3] in (1, 2, 3, 4)
    if c_first and not c_last:
        return "NCHW"
    if c_last and not c_first:
        return "NHWC"
    if c_first and c_last and shape[2] > 4:
        raise ValueError(f"image array of shape {tuple(shape)} is ambiguous (NCHW or NHWC?): transpose it to (N, C, H, W) with H, W > 4.")
    raise ValueError(f"image array of shape {tuple(shape)}: no channel axis of size 1, 3 or 4 first or last.")


def _is_float(a) -> bool:
    return np.issubdtype(np.asarray(a[:1]).dtype, np.floating)


def _float_range(images, source: str) -> str:
    sample = np.asarray(images[: min(len(images), 4096)], dtype=np.float64)
    lo, hi = float(sample.min()), float(sample.max())
    tol = 1e-3
    if lo >= -tol and hi <= 1 + tol:
        return "[0,1]"
    if lo >= -1 - tol and hi <= 1 + tol:
        return "[-1,1]"
    raise ValueError(
        f"{source}: float images must lie in [0, 1] or [-1, 1], found values in [{lo:.3g}, {hi:.3g}]. "
        "Store uint8 (0..255) or rescale."
    )


def _load_npy_dataset(path: Path, image_size: int, hflip: bool) -> ArrayImageDataset:
    images, labels = _read_array_file(path)
    if not (_is_float(images) or images.dtype == np.uint8):
        raise ValueError(f"{path}: images must be uint8 (0..255) or float, got dtype {images.dtype}.")
    layout = _array_layout(tuple(images.shape))
    c = 1 if layout == "NHW" else (images.shape[1] if layout == "NCHW" else images.shape[3])
    channels = 1 if c in (1, 2) else 3
    n_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 1
    info = DatasetInfo("npy", channels, n_classes, tuple(str(i) for i in range(n_classes)), None)
    return ArrayImageDataset(images, labels, info=info, image_size=image_size, hflip=hflip, source=str(path))


def _apply_subset(ds: _ImageDatasetBase, max_items: int | None, seed: int) -> _ImageDatasetBase:
    n = len(ds)
    if max_items is None or max_items >= n:
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:max_items].sort().values.numpy()
    ds.indices = idx
    return ds


# --------------------------------------------------------------------------------------------------
# Synthetic stand-ins (FAST mode without real data): see ddpm_lib.standins
# --------------------------------------------------------------------------------------------------


def _ensure_standin(name: str, data_dir: Path) -> Path:
    """The folder holding the stand-in for ``name`` (written if missing or stale); falls back to the temp dir if read-only."""
    stamp_text = f"{name} synthetic stand-in v{_STANDIN_VERSION}\n"
    for base in (data_dir / "_synthetic", Path(tempfile.gettempdir()) / "ddpm_course_synthetic"):
        stamp = base / f"{name}.stamp"
        try:
            if stamp.is_file() and stamp.read_text() == stamp_text and _find_real(name, base) is not None:
                return base
            base.mkdir(parents=True, exist_ok=True)
            if name == "fashion_mnist":
                write_fashion_mnist_standin(base, _STANDIN_FMNIST["train"], _STANDIN_FMNIST["test"])
            else:
                if (base / "cifar10").exists():
                    shutil.rmtree(base / "cifar10")
                write_cifar10_standin(base, _STANDIN_CIFAR_PER_CLASS["train"], _STANDIN_CIFAR_PER_CLASS["test"])
            atomic_write_bytes(stamp, stamp_text.encode())
            return base
        except OSError:
            continue
    raise DatasetNotFoundError(f"could not write the synthetic {name} stand-in to {data_dir / '_synthetic'} or the temp folder.")


def _announce_standin(name: str, data_dir: Path, syn_dir: Path) -> None:
    msg = (
        f"FAST mode: the real {name} files are not in {data_dir}, so a SYNTHETIC STAND-IN "
        f"(simple drawn shapes in the real file format, from {syn_dir}) is used instead. "
        f"Results will not look like real {name}. Get the real data with `make data`, or set DDPM_DATA_DIR."
    )
    bar = "#" * 78
    print(f"{bar}\n# SYNTHETIC DATA: {name} stand-in (real files not found)\n# {msg}\n{bar}", file=sys.stdout)
    warnings.warn(msg, SyntheticDataWarning, stacklevel=3)


# --------------------------------------------------------------------------------------------------
# Command line: python -m ddpm_lib.data download fashion_mnist cifar10 | status
# --------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m ddpm_lib.data", description="Fetch or inspect the course datasets.")
    sub = p.add_subparsers(dest="cmd", required=True)
    dl = sub.add_parser("download", help="download datasets into the data dir (needs internet)")
    dl.add_argument("names", nargs="+", choices=["fashion_mnist", "cifar10"])
    sub.add_parser("status", help="which datasets are present (never downloads)")
    args = p.parse_args(argv)
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

