"""Checkers for the notebooks' exercises, and the contract they all follow.

Each notebook's exercises live in a submodule (``ddpm_lib.course.exercises.forward`` for notebook 01, ...).
Every checker is a function ``check_X(fn)`` made with the :func:`exercise` decorator, and a notebook uses
it like this::

    cosine_betas_mine = check_cosine_schedule(cosine_betas_mine)

The checker compares the student's function with an independent reference written in the checker (or
a closed form), and **returns the function the rest of the notebook should use**:

- correct: it prints one "Correct: ..." line and returns the student's own function;
- not done yet (the student's function raises ``NotImplementedError``, as in the ``make student``
  copies): it prints exactly one line, ``X: not done yet: the rest of the notebook uses the reference
  solution``, and returns the checker's reference implementation, so "Run All" carries on;
- wrong: it raises :class:`ExerciseError` with a specific hint (shown without a traceback through the
  checker's frames). When grading (``DDPM_GRADE_CONTINUE=1``, set by :mod:`ddpm_lib.course.grade`) it prints
  the hint instead and returns the reference, so that each exercise is graded on its own;
- a crash inside the checker itself is recorded as ``error`` and re-raised.

Each outcome is also recorded by :func:`record`: when the environment variable ``DDPM_GRADE_LOG`` names
a file, one JSON line ``{"exercise", "status", "message", "checker"}`` is appended to it
(``status`` in ``correct``, ``wrong``, ``not done``, ``error``). :mod:`ddpm_lib.course.grade` reads these lines.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import pkgutil
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

GRADE_LOG_ENV = "DDPM_GRADE_LOG"
GRADE_CONTINUE_ENV = "DDPM_GRADE_CONTINUE"
STATUSES = ("correct", "wrong", "not done", "error")
NOT_DONE_LINE = "not done yet: the rest of the notebook uses the reference solution"

#: every checker made with :func:`exercise`, by exercise name ("cosine_schedule" for check_cosine_schedule)
CHECKERS: dict[str, Callable] = {}


class ExerciseError(AssertionError):
    """A wrong answer. The message says what was wrong and gives a hint.

    In Jupyter it is shown as its message alone (no traceback through the checker's frames); when the
    student's own code raised, the frames of the student's code are shown above the message.
    """

    def _render_traceback_(self) -> list[str]:  # IPython calls this instead of printing a traceback
        lines: list[str] = []
        cause = self.__cause__
        if cause is not None and cause.__traceback__ is not None:
            here = str(Path(__file__).resolve().parent)
            frames = [f for f in traceback.extract_tb(cause.__traceback__) if not f.filename.startswith(here)]
            if frames:
                lines.append("Your code raised this (only your code's lines are shown):")
                lines += "".join(traceback.format_list(frames)).rstrip("\n").splitlines()
                lines += traceback.format_exception_only(type(cause), cause)[-1].rstrip("\n").splitlines()
                lines.append("")
        lines.append(f"ExerciseError: {self}")
        return lines


class NotDone(Exception):
    """The student's function raised NotImplementedError: the exercise has not been attempted yet."""


def record(exercise: str, status: str, message: str = "", checker: str = "") -> None:
    """Record one checker outcome: append a JSON line to the file named by ``$DDPM_GRADE_LOG`` (if set).

    This is the only place outcomes are written; :func:`exercise` calls it for every checker.
    """
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
    path = os.environ.get(GRADE_LOG_ENV)
    if not path:
        return
    line = json.dumps({"exercise": exercise, "status": status, "message": message, "checker": checker})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")


def _shown_name(fn: Any, exercise_name: str) -> str:
    name = getattr(fn, "__name__", "")
    return name if name and name.isidentifier() else exercise_name


def exercise(reference: Callable, name: str | None = None) -> Callable[[Callable], Callable]:
    """Decorator: turn ``check(fn)``, which raises ExerciseError on a wrong answer, into a checker that
    follows the contract in this module's docstring and returns the function to use from then on.

    ``reference`` is the checker's own implementation, with the same signature as the student's function;
    ``name`` is the exercise's name in the grade log (default: the checker's name without ``check_``).
    """

    def decorate(check: Callable) -> Callable:
        key = name or check.__name__.removeprefix("check_")
        qualified = f"{check.__module__}.{check.__name__}"

        @functools.wraps(check)
        def checker(fn: Callable, *args, **kwargs) -> Callable:
            try:
                check(fn, *args, **kwargs)
            except NotDone:
                print(f"{_shown_name(fn, key)}: {NOT_DONE_LINE}")
                record(key, "not done", NOT_DONE_LINE, qualified)
                return reference
            except ExerciseError as e:
                record(key, "wrong", str(e), qualified)
                if os.environ.get(GRADE_CONTINUE_ENV) == "1":
                    print(f"Wrong: {e} (grading: the rest of the notebook uses the reference solution)")
                    return reference
                raise
            except Exception as e:
                record(key, "error", f"the checker itself failed: {type(e).__name__}: {e}", qualified)
                raise
            record(key, "correct", "", qualified)
            return fn

        checker.exercise = key
        checker.reference = reference
        CHECKERS[key] = checker
        return checker

    return decorate


def passed(name: str, detail: str = "") -> None:
    print(f"Correct: {name}." + (f" {detail}" if detail else ""))


def call_student(name: str, fn: Callable, *args, **kwargs) -> Any:
    """Call the student's function: NotImplementedError becomes :class:`NotDone`, any other exception
    an :class:`ExerciseError` naming it (the student's traceback is kept as the cause)."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise NotDone(name) from None
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


def load_all() -> dict[str, Callable]:
    """Import every checker module and return :data:`CHECKERS` (exercise name -> checker)."""

    for info in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{info.name}")
    return dict(CHECKERS)
