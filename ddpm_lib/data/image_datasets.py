"""Stored images as a torch Dataset of (image in [-1, 1], int label): arrays and image folders.

:mod:`ddpm_lib.data.sources` finds the files; this module turns them into tensors. Pixels ``p`` in 0..255 become
``x = p / 127.5 - 1`` (Ho et al. 2020, section 3.3: "integers in {0, ..., 255} scaled linearly to
[-1, 1]"), so 0 -> -1 and 255 -> 1.

- :class:`ArrayImageDataset`: an in-memory (or memory-mapped) array, layout NCHW, NHWC or NHW, uint8 or
  float in [0, 1] / [-1, 1]. Used for Fashion-MNIST's idx files, CIFAR-10's pickles and ``.npy`` files.
- :class:`FolderImageDataset`: a ``torchvision.datasets.ImageFolder`` decoded on the fly (CIFAR-10 as
  image files, your own images).

Both resize (shorter side, then centre crop) to ``image_size``, or pad Fashion-MNIST's 28x28 to 32x32
with background; both can flip horizontally at random; ``indices`` selects a fixed subset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset."""

    name: str
    channels: int
    num_classes: int
    class_names: tuple[str, ...]
    native_size: int | None = None  # side of the stored images (None: varies)


def to_unit_range(x: torch.Tensor) -> torch.Tensor:
    """uint8 in 0..255 -> float in [-1, 1]: x / 127.5 - 1 (0 -> -1, 255 -> 1)."""
    return x.to(torch.float32) / 127.5 - 1.0


def _resize_square(x: torch.Tensor, size: int) -> torch.Tensor:
    """Float (C, H, W) -> (C, size, size): resize the shorter side to ``size`` then centre-crop."""
    from torchvision.transforms import functional as TF  # slow import (~1 s)

    if x.shape[-2:] != (size, size):
        x = TF.resize(x, size, antialias=True)
        x = TF.center_crop(x, [size, size])
    return x


class ImageDataset(Dataset):
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


class ArrayImageDataset(ImageDataset):
    """Images held in an array (uint8 0..255 or float in [0, 1] / [-1, 1]), layout NCHW, NHWC or NHW.

    ``pad=True``: images smaller than ``image_size`` are padded on every side with background (-1)
    instead of resized (Fashion-MNIST's 28 -> 32).
    """

    def __init__(self, images, labels, *, info: DatasetInfo, image_size: int, hflip: bool = False,
                 indices: np.ndarray | None = None, source: str = "array", synthetic: bool = False,
                 pad: bool = False):
        super().__init__(info=info, image_size=image_size, hflip=hflip, indices=indices, source=source, synthetic=synthetic)
        self.images = images
        self.layout = array_layout(tuple(images.shape))
        self.labels = labels
        self.pad = pad
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
            x = to_unit_range(a)
        elif self.float_range == "[0,1]":
            x = a.to(torch.float32) * 2.0 - 1.0
        else:
            x = a.to(torch.float32)
        h, w = x.shape[-2:]
        s = self.image_size
        if (h, w) != (s, s):
            if self.pad and h == w and h < s and (s - h) % 2 == 0:
                p = (s - h) // 2
                x = torch.nn.functional.pad(x, (p, p, p, p), value=-1.0)
            else:
                x = _resize_square(x, s).clamp(-1.0, 1.0)
        return self._finish(x), self._label(j)


class DatasetError(ValueError):
    """A stored image or label is unusable: one line naming the file and the fix."""


#: Folders of at most this many images are decoded completely when loaded; bigger ones image by image,
#: each checked when first read (the error names the file either way).
FULL_CHECK_LIMIT = 10_000


class FolderImageDataset(ImageDataset):
    """A ``torchvision.datasets.ImageFolder`` decoded on the fly, resized and centre-cropped.

    Every image is decoded once when the dataset is built if there are at most :data:`FULL_CHECK_LIMIT`,
    so a broken file stops the run before training; in bigger folders a broken file raises
    :class:`DatasetError` naming it when it is first read.
    """

    def __init__(self, folder, *, info: DatasetInfo, image_size: int, hflip: bool = False,
                 indices: np.ndarray | None = None, source: str = "folder", synthetic: bool = False,
                 grayscale: bool = False):
        super().__init__(info=info, image_size=image_size, hflip=hflip, indices=indices, source=source, synthetic=synthetic)
        self.folder = folder
        self.grayscale = grayscale
        if len(folder.samples) <= FULL_CHECK_LIMIT:
            for path, _ in folder.samples:
                self._decode(path)

    def _decode(self, path) -> torch.Tensor:
        from torchvision.transforms.functional import pil_to_tensor  # slow import (~1 s)

        try:
            with Image.open(path) as im:
                return pil_to_tensor(to_8bit(im).convert("L" if self.grayscale else "RGB"))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
            raise DatasetError(f"{path}: cannot decode this image ({' '.join(str(e).split())}): replace or "
                               "remove the file.") from None

    def _num_stored(self) -> int:
        return len(self.folder.samples)

    def _label(self, j: int) -> int:
        return int(self.folder.samples[j][1])

    def __getitem__(self, i: int):
        j = self._index(i)
        path, label = self.folder.samples[j]
        x = to_unit_range(self._decode(path))
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = _resize_square(x, self.image_size).clamp(-1.0, 1.0)
        return self._finish(x), int(label)


def folder_split_root(root: Path, train: bool) -> Path:
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


def load_folder_dataset(root: Path, train: bool, image_size: int, hflip: bool, grayscale: bool) -> FolderImageDataset:
    from torchvision import datasets  # slow import (~1 s)

    top = folder_split_root(root, train)
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


def to_8bit(im: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (TIFF/PNG: Pillow modes ``I;16*``, or ``I`` holding 0..65535) as 8-bit ``L``:
    value / 257 rounded, so 65535 -> 255. Pillow's own ``convert("L")`` clips at 255 instead, which turns
    most of a 16-bit image white. Other images are returned unchanged."""
    if not (im.mode.startswith("I;16") or im.mode == "I"):
        return im
    a = np.asarray(im, dtype=np.float64)
    return Image.fromarray(np.rint(np.clip(a, 0, 65535) / 257).astype(np.uint8), mode="L")


#: at most this many classes (a label is a class index 0..K-1; one of 1e9 would build a billion class names)
MAX_CLASSES = 100_000


def read_array_file(path: Path):
    if not path.is_file():
        raise ValueError(f"load_dataset('npy'): root={str(path)!r} is not a file (expected a .npy or .npz file).")
    if path.suffix == ".npz":
        try:
            z = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{path}: not a readable .npz file ({' '.join(str(e).split())}): save it with "
                               "numpy.savez(path, images=..., labels=...).") from None
        if not isinstance(z, np.lib.npyio.NpzFile):  # np.load reads by content: a .npy array under a .npz name
            raise DatasetError(f"{path}: not a .npz archive but a single .npy array: rename it to .npy (images "
                               "only), or save images and labels with numpy.savez(path, images=..., labels=...).")
        with z:
            keys = list(z.keys())
            img_key = next((k for k in ("images", "x", "X", "data") if k in keys), None)
            if img_key is None:
                raise ValueError(f"{path}: a .npz needs an 'images' array (found keys {keys}); 'labels' is optional.")
            images = z[img_key]
            lab_key = next((k for k in ("labels", "y", "Y", "targets") if k in keys), None)
            labels = z[lab_key] if lab_key else None
    else:
        try:
            images = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as e:
            raise DatasetError(f"{path}: not a readable .npy file ({' '.join(str(e).split())}): save the images "
                               "with numpy.save(path, array).") from None
        labels = None
    if images.ndim == 0 or images.shape[0] == 0:
        raise DatasetError(f"{path}: holds no images (shape {tuple(images.shape)}): save an array of shape (N, H, W), "
                           "(N, C, H, W) or (N, H, W, C) with N >= 1.")
    if labels is not None:
        labels = np.asarray(labels).reshape(-1)
        if labels.dtype.kind not in "iu" and not (labels.dtype.kind == "f" and np.all(np.isfinite(labels))
                                                   and np.all(labels == np.round(labels))):
            raise DatasetError(f"{path}: labels must be integers (class indices), got dtype {labels.dtype}.")
        labels = labels.astype(np.int64)
        if len(labels) != images.shape[0]:
            raise DatasetError(f"{path}: {images.shape[0]} images but {len(labels)} labels: give one label per image.")
        if len(labels) and labels.min() < 0:
            raise DatasetError(f"{path}: labels must be non-negative ints (class indices), found {labels.min()}.")
        if len(labels) and labels.max() >= MAX_CLASSES:
            raise DatasetError(f"{path}: label {labels.max()} would make {labels.max() + 1} classes (at most "
                               f"{MAX_CLASSES}): labels are class indices 0..K-1; renumber them, e.g. with "
                               "numpy.unique(labels, return_inverse=True).")
    return images, labels


def array_layout(shape: tuple[int, ...]) -> str:
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


def load_npy_dataset(path: Path, image_size: int, hflip: bool) -> ArrayImageDataset:
    images, labels = read_array_file(path)
    if not (_is_float(images) or images.dtype == np.uint8):
        raise ValueError(f"{path}: images must be uint8 (0..255) or float, got dtype {images.dtype}.")
    layout = array_layout(tuple(images.shape))
    c = 1 if layout == "NHW" else (images.shape[1] if layout == "NCHW" else images.shape[3])
    channels = 1 if c in (1, 2) else 3
    n_classes = int(labels.max()) + 1 if labels is not None and len(labels) else 1
    info = DatasetInfo("npy", channels, n_classes, tuple(str(i) for i in range(n_classes)), None)
    return ArrayImageDataset(images, labels, info=info, image_size=image_size, hflip=hflip, source=str(path))


def apply_subset(ds: ImageDataset, max_items: int | None, seed: int) -> ImageDataset:
    n = len(ds)
    if max_items is None or max_items >= n:
        return ds
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n, generator=g)[:max_items].sort().values.numpy()
    ds.indices = idx
    return ds
