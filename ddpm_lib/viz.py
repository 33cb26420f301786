"""Showing and saving images that live in [-1, 1] (the scale DDPM works in).

The one mapping used everywhere: ``pixel = round((x + 1) * 127.5)`` after clamping ``x`` to [-1, 1],
so -1 -> 0 (black), 0 -> 128, 1 -> 255 (white); the inverse of the data scaling in :mod:`ddpm_lib.data.sources`.

- :func:`to_uint8_grid`: a batch -> one uint8 image (H, W, C) with the images tiled ``nrow`` per row.
- :func:`show_images`: draw that grid with matplotlib (works headless); returns the figure.
- :func:`save_grid`: write the grid as a PNG.
- :func:`save_gif`: write an animation (e.g. a reverse-diffusion trajectory) as a GIF with Pillow (no ffmpeg).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ddpm_lib.files import atomic_write


def _as_batch(x) -> torch.Tensor:
    """Tensor/array/list of images -> float tensor (B, C, H, W). A single image (C, H, W) or (H, W) is a batch of one."""
    if isinstance(x, (list, tuple)):
        if len(x) == 0:
            raise ValueError("no images to show: got an empty list.")
        parts = [_as_batch(v) for v in x]
        shapes = {tuple(p.shape[1:]) for p in parts}
        if len(shapes) != 1:
            raise ValueError(f"all images must have the same (C, H, W) shape to be tiled, got {sorted(shapes)}.")
        return torch.cat(parts, 0)
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"expected a tensor, an array or a list of them, got {type(x).__name__}.")
    x = x.detach().to("cpu")
    if x.dtype == torch.uint8:
        raise ValueError("got uint8 images: these helpers expect floats in [-1, 1]; use x.float() / 127.5 - 1.")
    x = x.float()
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), (C, H, W) or (H, W); got {tuple(x.shape)}.")
    if x.shape[1] not in (1, 3):
        raise ValueError(f"images must have 1 or 3 channels (shape (B, C, H, W)); got C={x.shape[1]} in {tuple(x.shape)}.")
    return x


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats -> uint8 0..255 (clamped; -1 -> 0, 1 -> 255)."""
    return ((x.clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def to_uint8_grid(x, nrow: int = 8, padding: int = 2, pad_value: int = 255) -> np.ndarray:
    """Tile a batch of [-1, 1] images into one uint8 array of shape (H, W, C), C = 1 or 3.

    ``nrow`` images per row; ``padding`` pixels of ``pad_value`` (0..255) around and between images, so the
    grid is ``rows * h + (rows + 1) * padding`` high and ``cols * w + (cols + 1) * padding`` wide.
    """
    if not isinstance(nrow, int) or nrow < 1:
        raise ValueError(f"nrow must be a positive int, got {nrow!r}.")
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}.")
    b = to_uint8(_as_batch(x))
    n, c, h, w = b.shape
    cols = min(n, nrow)
    rows = math.ceil(n / cols)
    grid = torch.full((c, rows * h + (rows + 1) * padding, cols * w + (cols + 1) * padding), pad_value, dtype=torch.uint8)
    for k in range(n):
        r, q = divmod(k, cols)
        y0, x0 = padding + r * (h + padding), padding + q * (w + padding)
        grid[:, y0 : y0 + h, x0 : x0 + w] = b[k]
    return grid.permute(1, 2, 0).numpy()


def show_images(x, nrow: int = 8, title: str | None = None, ax=None, *, padding: int = 2, figsize=None, scale: float = 1.0):
    """Show [-1, 1] images (a batch (B, C, H, W), one image, or a list) as a grid with matplotlib.

    Returns the new ``Figure`` (or ``ax`` when one is given). In a notebook write ``fig = show_images(x)``
    or ``_ = show_images(x)``: a figure left as a cell's last value is drawn twice.
    """
    import matplotlib.pyplot as plt  # matplotlib is heavy: only when showing images

    grid = to_uint8_grid(x, nrow=nrow, padding=padding, pad_value=255)
    if ax is None:
        if figsize is None:
            h, w = grid.shape[:2]
            inches = max(1.5, min(12.0, w / 40 * scale))
            figsize = (inches, max(1.0, inches * h / w + (0.4 if title else 0.0)))
        fig, ax_ = plt.subplots(figsize=figsize)
    else:
        fig, ax_ = None, ax
    if grid.shape[2] == 1:
        ax_.imshow(grid[:, :, 0], cmap="gray", vmin=0, vmax=255, interpolation="nearest")
    else:
        ax_.imshow(grid, interpolation="nearest")
    ax_.set_axis_off()
    if title:
        ax_.set_title(title)
    if fig is not None:
        fig.tight_layout()
        return fig
    return ax_


def _pil(grid: np.ndarray, scale: int = 1):
    im = Image.fromarray(grid[:, :, 0], mode="L") if grid.shape[2] == 1 else Image.fromarray(grid, mode="RGB")
    if scale != 1:
        if not isinstance(scale, int) or scale < 1:
            raise ValueError(f"scale must be a positive int, got {scale!r}.")
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    return im


def save_grid(x, path: str | os.PathLike, nrow: int = 8, *, padding: int = 2, scale: int = 1) -> Path:
    """Save [-1, 1] images as one PNG grid, atomically (parent folders created). Returns the path."""

    buf = io.BytesIO()
    _pil(to_uint8_grid(x, nrow=nrow, padding=padding), scale).save(buf, format="PNG")
    return atomic_write(Path(path), buf.getvalue())


def save_gif(frames: Sequence, path: str | os.PathLike, fps: float = 10.0, *, nrow: int = 8, padding: int = 2,
             scale: int = 1, loop: int = 0, hold_last: int = 0) -> Path:
    """Save an animation as a GIF with Pillow (no ffmpeg needed).

    ``frames``: a sequence of batches/images in [-1, 1] (each becomes one grid frame), e.g. the
    ``x_t`` of a reverse-diffusion trajectory. ``hold_last`` keeps the last frame on screen that many
    extra frame durations, so the final samples can be seen. ``loop=0`` loops forever.
    """
    if len(frames) == 0:
        raise ValueError("save_gif needs at least one frame.")
    if fps <= 0:
        raise ValueError(f"fps must be > 0, got {fps}.")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [_pil(to_uint8_grid(f, nrow=nrow, padding=padding), scale) for f in frames]
    ms = int(round(1000 / fps))
    durations = [ms] * len(images)
    durations[-1] = ms * (1 + int(hold_last))
    images[0].save(path, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=loop)
    return path
