"""Checkers for notebook 00: scale uint8 pixels to DDPM's [-1, 1], and back.

Ho et al. 2020, section 3.3: "We assume that image data consists of integers in {0, 1, ..., 255} scaled
linearly to [-1, 1]".

- ``check_to_model_range(fn)``: ``fn(images uint8) -> float x`` with 0 -> -1 and 255 -> 1 linearly,
  i.e. x = p / 127.5 - 1.
- ``check_to_pixels(fn)``: ``fn(x float) -> uint8 pixels``, the inverse: p = round((x + 1) * 127.5),
  clamped to 0..255 first (a model's samples stray outside [-1, 1]).

The references are computed here from those definitions in float64, independently of :mod:`ddpm_lib.data.sources`
and :mod:`ddpm_lib.viz`. A wrong answer is compared with the usual mistakes (among them uint8 arithmetic,
which wraps around modulo 256), and the matching one is named.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ddpm_lib.course.exercises import ExerciseError, call_student, check_tensor, exercise, passed

__all__ = ["check_to_model_range", "check_to_pixels", "reference_to_model_range", "reference_to_pixels"]

_OVERFLOW = (
    "uint8 arithmetic overflowed: a uint8 tensor holds only 0..255 and wraps around (2 * 200 = 400 becomes "
    "400 - 256 = 144, and 100 - 128 becomes 228), so pixels from 128 up came out wrong. Convert to float first "
    "(images.float() or images.double()), then scale."
)


def reference_to_model_range(images: torch.Tensor) -> torch.Tensor:
    """The line through (0, -1) and (255, 1), evaluated per pixel in float64: -1 + 2 * p / 255 (float32 out)."""
    flat = [(-1.0 + 2.0 * float(p) / 255.0) for p in images.flatten().tolist()]
    return torch.tensor(flat, dtype=torch.float64).view(images.shape).to(torch.float32)


def _to_model_range(images: torch.Tensor) -> torch.Tensor:
    """The same line, vectorised, in float32 (what the notebook uses when the exercise is not done): p / 127.5 - 1."""
    return images.to(torch.float32) / 127.5 - 1.0


def reference_to_pixels(x: torch.Tensor) -> torch.Tensor:
    """p = round((x + 1) * 255 / 2), clamped to [0, 255], as uint8 (computed in float64)."""
    return ((x.detach().double() + 1.0) * (255.0 / 2.0)).round().clamp(0, 255).to(torch.uint8)


def _as_tensor(name: str, got):
    """Accept a NumPy array as well as a tensor (NumPy answers are correct answers too)."""
    if isinstance(got, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(got))
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{name}: return a torch.Tensor (or a NumPy array), got {type(got).__name__}.")
    return got.detach().cpu()


# --- pixels -> [-1, 1] --------------------------------------------------------------------------


def _model_range_mistakes(images: torch.Tensor):
    p = images.double()
    w = images.long()
    yield _OVERFLOW, ((2 * w) % 256).double() / 255 - 1  # images * 2 / 255 - 1 in uint8
    yield _OVERFLOW, ((2 * w - 255) % 256).double() / 255  # (2 * images - 255) / 255 in uint8
    yield _OVERFLOW, ((w - 128) % 256).double() / 128  # (images - 128) / 128 in uint8
    yield _OVERFLOW, ((w - 128) % 256).double() / 127.5  # (images - 128) / 127.5 in uint8
    yield "your values are in [0, 1]: that is x / 255. DDPM wants [-1, 1]: stretch by 2 and shift by -1.", p / 255
    yield "your values are in [-0.5, 0.5]: subtract 1 from 2 * p / 255 instead of 0.5 from p / 255.", p / 255 - 0.5
    yield "close, but 255 should map to exactly 1: divide by 127.5 (= 255 / 2), not 128.", p / 128 - 1
    yield "your values are in [-255, 255]: divide by 127.5 after (or before) shifting.", 2 * p - 255


@exercise(reference=_to_model_range, library=('ddpm_lib.data.image_datasets.to_unit_range',))
def check_to_model_range(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(uint8 images (B, C, H, W)) -> float images in [-1, 1]`` on every value 0..255."""
    name = "to_model_range"
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 1, 4, 5), dtype=torch.uint8, generator=g)
    images[0, 0, 0, :] = torch.tensor([0, 255, 127, 128, 200], dtype=torch.uint8)
    every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    for batch in (images, every):
        expected = reference_to_model_range(batch)
        got = _as_tensor(name, call_student(name, fn, batch.clone()))
        if not got.is_floating_point():
            raise ExerciseError(
                f"{name}: the result has dtype {got.dtype}; convert to float first (images.float()), "
                "or integer arithmetic will round (and overflow) every value."
            )
        if got.shape == expected.shape and not torch.allclose(got.double(), expected.double(), atol=1e-5):
            for hint, wrong in _model_range_mistakes(batch):
                if torch.allclose(got.double(), wrong, atol=1e-4):
                    raise ExerciseError(f"{name}: {hint}")
            right = (got.double() - expected.double()).abs() < 1e-4
            if right[batch < 128].all() and not right[batch >= 128].all():
                raise ExerciseError(f"{name}: {_OVERFLOW}")
        check_tensor(name, got, expected, atol=1e-5, hint="0 must become -1 and 255 must become 1, on a straight line.")
    passed(name, "0 -> -1, 255 -> 1, linear in between.")


# --- [-1, 1] -> pixels --------------------------------------------------------------------------


def _pixel_inputs() -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    levels = (torch.arange(256, dtype=torch.float32) / 127.5 - 1).view(1, 1, 16, 16)  # every level, in float32
    stray = torch.rand(2, 3, 4, 4, generator=g) * 2.6 - 1.3  # samples stray outside [-1, 1]
    stray[0, 0, 0, :4] = torch.tensor([-1.0, 1.0, -1.25, 1.25])
    return [("every level k / 127.5 - 1", levels), ("values in [-1.3, 1.3]", stray)]


def _pixel_mistakes(x: torch.Tensor):
    """(hint, what the mistaken code returns), computed the way a student would write it (uint8 conversions included)."""
    u8 = torch.uint8
    y = (x + 1) * 127.5
    yield ("clamp to [0, 255] (or x to [-1, 1]) BEFORE converting to uint8: a model's samples stray outside "
           "[-1, 1], and uint8 wraps around, so 1.25 (-> 287) became a dark 31 instead of a white 255 "
           "(clamping after the conversion is too late: it has already wrapped)."), y.round().to(u8)
    yield ("round to the nearest integer before converting: .to(torch.uint8) truncates, so a level that float "
           "rounding left at 126.99999 became 126 instead of 127. Use torch.round(...) first."), y.clamp(0, 255).to(u8)
    yield ("round before converting, and clamp first: .to(torch.uint8) truncates (126.99999 -> 126) and wraps "
           "around outside 0..255 (287 -> 31)."), y.to(u8)
    yield ("scale by 127.5 = 255 / 2: with 128, x = 1 gives 256, which does not fit in uint8."), \
        ((x + 1) * 128).round().clamp(0, 255).to(u8)
    yield ("(x + 1) * 127.5 maps [-1, 1] to [0, 255]; you shifted after scaling (x * 127.5 + 1)."), \
        (x * 127.5 + 1).round().clamp(0, 255).to(u8)


@exercise(reference=reference_to_pixels, library=('ddpm_lib.viz.to_uint8',))
def check_to_pixels(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(float images (B, C, H, W), about [-1, 1]) -> uint8 pixels`` (the inverse of to_model_range)."""
    name = "to_pixels"
    for desc, x in _pixel_inputs():
        expected = reference_to_pixels(x)
        got = _as_tensor(name, call_student(name, fn, x.clone()))
        if tuple(got.shape) != tuple(expected.shape):
            raise ExerciseError(f"{name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)} (input: {desc}). "
                                "Work elementwise; keep the batch, channel and pixel dimensions.")
        if got.dtype != torch.uint8:
            close = torch.allclose(got.double(), expected.double(), atol=1e-6)
            raise ExerciseError(f"{name}: return dtype torch.uint8 (images are stored as bytes), got {got.dtype}"
                                + (" (the values are right: finish with .to(torch.uint8))." if close else "."))
        if torch.equal(got, expected):
            continue
        for hint, wrong in _pixel_mistakes(x):
            if torch.equal(got, wrong):
                raise ExerciseError(f"{name}: {hint}")
        diff = (got.int() - expected.int()).abs()
        worst = int(diff.flatten().argmax())
        raise ExerciseError(
            f"{name}: {int((diff > 0).sum())} of {diff.numel()} pixels differ (input: {desc}); e.g. x = "
            f"{x.flatten()[worst].item():.5f} should give {expected.flatten()[worst].item()}, yours "
            f"{got.flatten()[worst].item()}. Hint: p = round((x + 1) * 127.5), clamped to [0, 255], as uint8."
        )
    passed(name, "-1 -> 0, 1 -> 255, rounded, and values outside [-1, 1] clamped.")
