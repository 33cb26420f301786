"""Checker for notebook 00's warm-up exercise: scale uint8 pixels to DDPM's [-1, 1].

``check_to_model_range(fn)`` tests a student's ``fn(images) -> x`` that maps a uint8 tensor of pixels
0..255 to floats with 0 -> -1 and 255 -> 1, linearly (Ho et al. 2020, section 3.3: "We assume that image
data consists of integers in {0, 1, ..., 255} scaled linearly to [-1, 1]"), i.e. x = p / 127.5 - 1.

The reference is computed pixel by pixel in float64 from that definition (the line through
(0, -1) and (255, 1)), independently of :mod:`ddpm_lib.data`. A wrong answer is compared with the
usual mistakes, and the matching one is named.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from ddpm_lib.exercises import ExerciseError, call_student, check_tensor, passed

__all__ = ["check_to_model_range", "reference_to_model_range"]

NAME = "to_model_range"


def reference_to_model_range(images: torch.Tensor) -> torch.Tensor:
    """The line through (0, -1) and (255, 1), evaluated per pixel in float64: -1 + 2 * p / 255."""
    flat = [(-1.0 + 2.0 * float(p) / 255.0) for p in images.flatten().tolist()]
    return torch.tensor(flat, dtype=torch.float64).view(images.shape).to(torch.float32)


def _mistakes(images: torch.Tensor):
    p = images.double()
    yield "your values are in [0, 1]: that is x / 255. DDPM wants [-1, 1]: stretch by 2 and shift by -1.", p / 255
    yield "your values are in [-0.5, 0.5]: subtract 1 from 2 * p / 255 instead of 0.5 from p / 255.", p / 255 - 0.5
    yield "close, but 255 should map to exactly 1: divide by 127.5 (= 255 / 2), not 128.", p / 128 - 1
    yield "your values are in [-255, 255]: divide by 127.5 after (or before) shifting.", 2 * p - 255


def check_to_model_range(fn: Callable[[torch.Tensor], torch.Tensor]) -> None:
    """Check ``fn(uint8 images (B, C, H, W)) -> float images in [-1, 1]``."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 1, 4, 5), dtype=torch.uint8, generator=g)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 0, 255
    expected = reference_to_model_range(images)
    got = call_student(NAME, fn, images.clone())
    if isinstance(got, torch.Tensor) and not got.is_floating_point():
        raise ExerciseError(
            f"{NAME}: the result has dtype {got.dtype}; convert to float first (images.float()), "
            "or integer arithmetic will round every value."
        )
    if isinstance(got, torch.Tensor) and got.shape == expected.shape and not torch.allclose(got.float(), expected, atol=1e-5):
        for hint, wrong in _mistakes(images):
            if torch.allclose(got.double(), wrong, atol=1e-4):
                raise ExerciseError(f"{NAME}: {hint}")
    check_tensor(NAME, got, expected, atol=1e-5, hint="0 must become -1 and 255 must become 1, on a straight line.")
    passed(NAME, "0 -> -1, 255 -> 1, linear in between.")
