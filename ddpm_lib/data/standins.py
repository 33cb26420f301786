"""Synthetic stand-ins for the course datasets, written in the datasets' real on-disk formats.

FAST mode uses them when the real files are missing (no internet, nothing downloaded yet), so every
notebook still runs end to end through the *same* loading code as the real data:

- Fashion-MNIST: the four idx files ``FashionMNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
  that ``torchvision.datasets.FashionMNIST`` reads, holding drawn garment silhouettes (one shape per
  class: T-shirt, trousers, pullover, ...), 28x28 grey on black like the real images.
- CIFAR-10: PNG files in the image-folder layout ``cifar10/{train,test}/<class>/NNNN.png`` with
  simple coloured shapes per class (a red car with wheels, a ship on blue water, ...).

Everything is deterministic: the same seed gives byte-identical files. The images are only meant to
be recognisably different per class, never to be mistaken for the real datasets.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ddpm_lib.files import atomic_write

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a uint8 array in the idx format of (Fashion-)MNIST: magic 0x0000 08 <ndim>, big-endian dims, bytes."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
    atomic_write(Path(path), header + a.tobytes())


def _garment(cls: int, rng: np.random.Generator) -> np.ndarray:
    """A 28x28 uint8 silhouette that looks like Fashion-MNIST class ``cls`` (deterministic given rng)."""

    s = 4  # draw at 4x and downsample, for soft edges like the real images
    im = Image.new("L", (28 * s, 28 * s), 0)
    d = ImageDraw.Draw(im)
    j = lambda v: v + rng.uniform(-1.0, 1.0)  # noqa: E731 - jitter one coordinate by up to a pixel
    shade = int(rng.integers(150, 256))
    dark = max(40, shade - 90)

    def poly(points, fill=shade):
        d.polygon([(j(x) * s, j(y) * s) for x, y in points], fill=fill)

    def box(x0, y0, x1, y1):
        (x0, x1), (y0, y1) = sorted((j(x0), j(x1))), sorted((j(y0), j(y1)))
        return [x0 * s, y0 * s, x1 * s, y1 * s]

    def rect(x0, y0, x1, y1, fill=shade):
        d.rectangle(box(x0, y0, x1, y1), fill=fill)

    def ellipse(x0, y0, x1, y1, fill=shade, width=0):
        box_ = box(x0, y0, x1, y1)
        if width:
            d.ellipse(box_, outline=fill, width=width * s)
        else:
            d.ellipse(box_, fill=fill)

    w = rng.uniform(-1.5, 1.5)  # width variation
    if cls in (0, 2, 4, 6):  # tops: torso + sleeves (short for the T-shirt)
        long_sleeves = cls != 0
        bottom = 26 if cls == 4 else 24
        poly([(8 - w, 4), (20 + w, 4), (20 + w, bottom), (8 - w, bottom)])
        if long_sleeves:
            poly([(8 - w, 4), (3 - w, 22), (6 - w, 23), (9 - w, 10)])
            poly([(20 + w, 4), (25 + w, 22), (22 + w, 23), (19 + w, 10)])
        else:
            poly([(8 - w, 4), (2 - w, 10), (5 - w, 13), (9 - w, 9)])
            poly([(20 + w, 4), (26 + w, 10), (23 + w, 13), (19 + w, 9)])
        if cls == 4:  # coat: a dark zip line
            d.line([(14 * s, 5 * s), (14 * s, bottom * s)], fill=dark, width=s)
        if cls == 6:  # shirt: collar and buttons
            poly([(11, 4), (14, 8), (17, 4)], fill=dark)
            for y in range(10, 23, 4):
                ellipse(13.4, y, 14.6, y + 1.2, fill=dark)
        if cls == 0:
            ellipse(11, 2.5, 17, 6, fill=0)  # neckline
    elif cls == 1:  # trousers: waistband and two legs
        rect(8 - w, 2, 20 + w, 6)
        poly([(8 - w, 5), (13.5, 5), (12.5, 27), (8.5 - w, 27)])
        poly([(14.5, 5), (20 + w, 5), (19.5 + w, 27), (15.5, 27)])
    elif cls == 3:  # dress: narrow top, flared skirt
        poly([(11 - w / 2, 2), (17 + w / 2, 2), (18 + w / 2, 11), (24 + w, 27), (4 - w, 27), (10 - w / 2, 11)])
    elif cls == 5:  # sandal: sole + thin straps
        rect(2, 21, 26, 24)
        for x in (6, 12, 18):
            d.line([(x * s, 21 * s), ((x + 4) * s, 14 * s)], fill=shade, width=s)
        d.line([(4 * s, 17 * s), (24 * s, 15 * s)], fill=shade, width=s)
    elif cls == 7:  # sneaker: low shoe, toe to the right
        poly([(2, 15), (10, 13), (16, 16), (25, 18), (26, 23), (2, 23)])
        rect(2, 22, 26, 24, fill=dark)
    elif cls == 8:  # bag: body and handle
        rect(4 - w, 10, 24 + w, 25)
        ellipse(8, 3, 20, 14, width=2)
    elif cls == 9:  # ankle boot: shaft and foot
        poly([(6, 3), (15, 3), (15, 14), (25, 18), (26, 25), (4, 25), (6, 14)])
        rect(4, 23, 26, 25, fill=dark)
    im = im.resize((28, 28), Image.BILINEAR)
    a = np.asarray(im, dtype=np.float64)
    a = a * rng.uniform(0.85, 1.0) + rng.normal(0.0, 6.0, a.shape) * (a > 0)  # fabric texture
    return np.clip(a, 0, 255).astype(np.uint8)


def _shape_image(cls: int, rng: np.random.Generator):
    """A 32x32 RGB PIL image of simple coloured shapes standing in for CIFAR-10 class ``cls``."""

    sky, grass, water, road = (135, 180, 230), (70, 140, 60), (40, 80, 160), (110, 110, 110)
    bgs = [sky, road, sky, (200, 170, 140), grass, (190, 160, 120), (40, 90, 40), grass, water, road]
    base = np.array(bgs[cls], dtype=np.float64)
    bg = tuple(int(v) for v in np.clip(base + rng.normal(0, 12, 3), 0, 255))
    im = Image.new("RGB", (32, 32), bg)
    d = ImageDraw.Draw(im)
    dx, dy = rng.uniform(-3, 3, 2)

    def P(points):
        return [(x + dx, y + dy) for x, y in points]

    def col(c):
        return tuple(int(v) for v in np.clip(np.array(c) + rng.normal(0, 15, 3), 0, 255))

    if cls == 0:  # airplane: fuselage + wings
        d.polygon(P([(4, 15), (28, 15), (28, 18), (4, 18)]), fill=col((220, 220, 225)))
        d.polygon(P([(13, 16), (19, 16), (14, 5), (11, 5)]), fill=col((200, 200, 205)))
        d.polygon(P([(13, 17), (19, 17), (14, 28), (11, 28)]), fill=col((200, 200, 205)))
    elif cls == 1:  # automobile: body + cabin + wheels
        d.rectangle(P([(4, 14), (28, 22)]), fill=col((200, 30, 30)))
        d.rectangle(P([(9, 9), (22, 14)]), fill=col((170, 200, 230)))
        for x in (9, 23):
            d.ellipse(P([(x - 3, 20), (x + 3, 26)]), fill=(20, 20, 20))
    elif cls == 2:  # bird: body + head + beak
        d.ellipse(P([(8, 12), (22, 21)]), fill=col((150, 90, 50)))
        d.ellipse(P([(19, 9), (25, 15)]), fill=col((150, 90, 50)))
        d.polygon(P([(25, 11), (29, 12), (25, 13)]), fill=(240, 190, 40))
    elif cls == 3:  # cat: head + pointed ears
        c = col((230, 140, 50))
        d.ellipse(P([(8, 10), (24, 26)]), fill=c)
        d.polygon(P([(9, 13), (10, 4), (15, 10)]), fill=c)
        d.polygon(P([(23, 13), (22, 4), (17, 10)]), fill=c)
    elif cls == 4:  # deer: body + legs + antlers
        c = col((150, 100, 60))
        d.rectangle(P([(8, 12), (22, 18)]), fill=c)
        for x in (9, 12, 18, 21):
            d.rectangle(P([(x, 18), (x + 1, 27)]), fill=c)
        d.line(P([(22, 12), (25, 5)]), fill=c, width=2)
        d.line(P([(24, 7), (28, 4)]), fill=c, width=1)
    elif cls == 5:  # dog: head + floppy ears
        c = col((120, 80, 40))
        d.ellipse(P([(9, 9), (23, 25)]), fill=c)
        d.ellipse(P([(5, 10), (11, 22)]), fill=col((80, 50, 25)))
        d.ellipse(P([(21, 10), (27, 22)]), fill=col((80, 50, 25)))
    elif cls == 6:  # frog: wide green body + eyes
        d.ellipse(P([(5, 12), (27, 26)]), fill=col((60, 200, 60)))
        for x in (10, 19):
            d.ellipse(P([(x, 9), (x + 4, 13)]), fill=(250, 250, 250))
    elif cls == 7:  # horse: body + long legs + neck
        c = col((90, 50, 20))
        d.rectangle(P([(6, 11), (22, 18)]), fill=c)
        d.polygon(P([(20, 12), (24, 3), (28, 5), (23, 14)]), fill=c)
        for x in (7, 10, 18, 21):
            d.rectangle(P([(x, 18), (x + 1, 29)]), fill=c)
    elif cls == 8:  # ship: hull on the water + cabin
        d.polygon(P([(3, 18), (29, 18), (25, 24), (7, 24)]), fill=col((90, 90, 95)))
        d.rectangle(P([(11, 12), (20, 18)]), fill=col((235, 235, 235)))
    elif cls == 9:  # truck: cargo box + cab + wheels
        d.rectangle(P([(3, 8), (20, 22)]), fill=col((230, 230, 230)))
        d.rectangle(P([(20, 12), (29, 22)]), fill=col((40, 70, 200)))
        for x in (8, 24):
            d.ellipse(P([(x - 3, 20), (x + 3, 26)]), fill=(20, 20, 20))
    a = np.asarray(im, dtype=np.float64) + rng.normal(0, 5, (32, 32, 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


def write_fashion_mnist_standin(data_dir: str | os.PathLike, n_train: int = 1024, n_test: int = 256, seed: int = 0) -> Path:
    """Write synthetic garment silhouettes as the four Fashion-MNIST idx files under ``data_dir/FashionMNIST/raw``.

    Deterministic: the same seed gives byte-identical files. Classes cycle 0..9 so every class is present.
    """
    raw = Path(data_dir) / "FashionMNIST" / "raw"
    rng = np.random.default_rng(seed)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = (np.arange(n) % 10).astype(np.uint8)
        rng.shuffle(labels)
        images = np.stack([_garment(int(c), rng) for c in labels]) if n else np.zeros((0, 28, 28), np.uint8)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return raw


def write_cifar10_standin(data_dir: str | os.PathLike, per_class_train: int = 64, per_class_test: int = 16, seed: int = 0) -> Path:
    """Write synthetic coloured-shape PNGs in CIFAR-10's image-folder layout ``data_dir/cifar10/{train,test}/<class>/``.

    The class folders carry CIFAR-10's names, so ``torchvision.datasets.ImageFolder`` gives CIFAR-10's label order.
    Files are overwritten in place (atomically), so processes writing the same stand-in at once do not clash.
    """
    top = Path(data_dir) / "cifar10"
    rng = np.random.default_rng(seed)
    for split, per_class in (("train", per_class_train), ("test", per_class_test)):
        for c, cname in enumerate(CIFAR10_CLASSES):
            folder = top / split / cname
            folder.mkdir(parents=True, exist_ok=True)
            for k in range(per_class):
                buf = io.BytesIO()
                _shape_image(c, rng).save(buf, format="PNG")
                atomic_write(folder / f"{k:04d}.png", buf.getvalue())
            keep = {f"{k:04d}.png" for k in range(per_class)}
            for extra in folder.glob("*.png"):  # left by an earlier, larger stand-in
                if extra.name not in keep:
                    extra.unlink(missing_ok=True)
    return top
