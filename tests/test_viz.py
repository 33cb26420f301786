"""ddpm_lib.viz: the [-1, 1] -> 0..255 mapping, grid layout, PNG and GIF files (checked by reading them back)."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # headless, as on CI

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lib import viz


def test_range_mapping_is_exact():
    x = torch.tensor([-1.0, -2.0, 1.0, 3.0, 0.0, 0.5]).view(1, 1, 1, 6)
    got = viz.to_uint8_grid(x, padding=0)[0, :, 0].tolist()
    # clamp, then (x + 1) * 127.5 rounded: -1 -> 0, 1 -> 255, 0 -> 127.5 -> 128 (round half to even), 0.5 -> 191.25 -> 191
    assert got == [0, 0, 255, 255, 128, 191]


def test_grid_shape_and_placement():
    b, c, h, w, nrow, pad = 10, 3, 5, 7, 4, 2
    x = torch.full((b, c, h, w), -1.0)
    x[7] = 1.0  # the 8th image (row 1, column 3) is white
    grid = viz.to_uint8_grid(x, nrow=nrow, padding=pad, pad_value=100)
    rows, cols = 3, 4  # ceil(10 / 4) rows
    assert grid.shape == (rows * h + (rows + 1) * pad, cols * w + (cols + 1) * pad, c)
    assert grid.dtype == np.uint8
    y0, x0 = pad + 1 * (h + pad), pad + 3 * (w + pad)
    assert (grid[y0 : y0 + h, x0 : x0 + w] == 255).all()
    assert (grid[pad : pad + h, pad : pad + w] == 0).all()  # image 0 is black
    assert (grid[0, :, :] == 100).all()  # padding row
    # fewer images than nrow: one row exactly as wide as the images
    assert viz.to_uint8_grid(torch.zeros(2, 1, 4, 4), nrow=8, padding=0).shape == (4, 8, 1)


def test_inputs_single_image_list_and_errors():
    one = torch.zeros(1, 6, 6)
    assert viz.to_uint8_grid(one, padding=0).shape == (6, 6, 1)
    assert viz.to_uint8_grid([one, one, one], nrow=3, padding=0).shape == (6, 18, 1)
    assert viz.to_uint8_grid(np.zeros((2, 3, 4, 4), np.float32), padding=0).shape == (4, 8, 3)
    with pytest.raises(ValueError, match="channels"):
        viz.to_uint8_grid(torch.zeros(2, 5, 4, 4))
    with pytest.raises(ValueError, match="uint8"):
        viz.to_uint8_grid(torch.zeros(2, 1, 4, 4, dtype=torch.uint8))
    with pytest.raises(ValueError, match="same"):
        viz.to_uint8_grid([torch.zeros(1, 4, 4), torch.zeros(1, 5, 5)])


def test_save_grid_png_reads_back(tmp_path):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=g) * 2 - 1
    path = viz.save_grid(x, tmp_path / "sub" / "grid.png", nrow=3)
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB"
        back = np.asarray(im)
    assert np.array_equal(back, viz.to_uint8_grid(x, nrow=3))
    # image 4 (row 1, column 1) at its place, pixel for pixel
    expected = ((x[4].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal(back[2 + 10 : 2 + 10 + 8, 2 + 10 : 2 + 10 + 8], expected)
    gray = viz.save_grid(torch.zeros(2, 1, 4, 4), tmp_path / "g.png", scale=2)
    with Image.open(gray) as im:
        assert im.mode == "L" and im.size == (2 * (2 * 4 + 3 * 2), 2 * (4 + 2 * 2))


def test_save_gif_frames(tmp_path):
    frames = [torch.full((4, 1, 8, 8), v) for v in (-1.0, 0.0, 1.0)]
    path = viz.save_gif(frames, tmp_path / "traj.gif", fps=5, nrow=2, hold_last=2)
    with Image.open(path) as im:
        assert im.format == "GIF" and im.n_frames == 3
        im.seek(0)
        first = np.asarray(im.convert("L"))
        assert im.info["duration"] == 200
        im.seek(2)
        last = np.asarray(im.convert("L"))
        assert im.info["duration"] == 600  # held for 2 extra frames
    assert first[3, 3] == 0 and last[3, 3] == 255
    with pytest.raises(ValueError, match="frame"):
        viz.save_gif([], tmp_path / "x.gif")


def test_show_images_headless_returns_figure_or_axes():
    import matplotlib.pyplot as plt

    x = torch.rand(5, 1, 8, 8) * 2 - 1
    fig = viz.show_images(x, nrow=4, title="five")
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    assert ax.get_title() == "five"
    assert np.array_equal(np.asarray(ax.images[0].get_array()), viz.to_uint8_grid(x, nrow=4)[:, :, 0])
    plt.close(fig)
    fig2, axes = plt.subplots(1, 2)
    assert viz.show_images(x[0], ax=axes[1]) is axes[1]
    plt.close(fig2)
