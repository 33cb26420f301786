"""Checkers for the notebooks' exercises.

Each notebook's exercises live in a submodule (``ddpm_lib.exercises.forward`` for notebook 01, ...).
A checker takes the student's function or value, compares it with an independent reference, prints a
short success line, and raises :class:`ExerciseError` with a specific, friendly hint otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class ExerciseError(AssertionError):
    """A wrong answer. The message says what was wrong and gives a hint."""


def passed(name: str, detail: str = "") -> None:
    print(f"Correct: {name}." + (f" {detail}" if detail else ""))


def call_student(name: str, fn: Callable, *args, **kwargs) -> Any:
    """Call the student's function, turning the usual first-attempt failures into friendly messages."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise ExerciseError(f"{name}: not written yet. Replace `raise NotImplementedError` with your code.") from None
    except Exception as e:  # noqa: BLE001 - we re-raise with context for the student
        raise ExerciseError(f"{name}: your code raised {type(e).__name__}: {e}") from e


def check_tensor(name: str, got: Any, expected: torch.Tensor, *, atol: float = 1e-5, rtol: float = 1e-4, hint: str = "") -> None:
    """Raise ExerciseError unless ``got`` is a tensor of ``expected``'s shape with close values."""
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{name}: expected a torch.Tensor, got {type(got).__name__}.")
    if tuple(got.shape) != tuple(expected.shape):
        raise ExerciseError(
            f"{name}: expected shape {tuple(expected.shape)}, got {tuple(got.shape)}. "
            "Check how you index per-sample values and reshape them to broadcast (e.g. [:, None, None, None])."
        )
    if not torch.isfinite(got).all():
        raise ExerciseError(f"{name}: the result holds NaN or inf values.")
    got_c = got.detach().to(expected.device, expected.dtype)
    if not torch.allclose(got_c, expected, atol=atol, rtol=rtol):
        err = (got_c - expected).abs().max().item()
        msg = f"{name}: values differ from the reference (largest difference {err:.3g})."
        if hint:
            msg += f" Hint: {hint}"
        raise ExerciseError(msg)
