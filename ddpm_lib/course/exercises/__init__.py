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
  checker's frames);
- a crash inside the checker itself is re-raised.

**Grading** (:mod:`ddpm_lib.course.grade`) never trusts what runs in the student's kernel. There the checkers run
in *capture* mode (``DDPM_GRADE_CAPTURE`` holds ``{exercise: name}``, the name the INSTRUCTOR notebook
binds, ``name = check_X(name)``): ``check_X(fn)`` only stores the function bound to that name in the
caller's globals (or ``fn`` when there is none) in :data:`CAPTURED` and returns the reference, so "Run All"
carries on. The grader then runs each checker in its own process with :func:`outcome` on a proxy that
forwards every call to the kernel (:mod:`ddpm_lib.course.gradecall`); the verdict is computed by the grader's
code from the answers the student's function returns for the grader's inputs.

Each checker also declares ``library``: the dotted names of the ddpm_lib functions that implement its
exercise; with the checker's ``reference`` they are what "uses library" detection looks for
(:mod:`ddpm_lib.course.libcalls`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import io
import json
import os
import pkgutil
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

GRADE_CAPTURE_ENV = "DDPM_GRADE_CAPTURE"
STATUSES = ("correct", "wrong", "not done", "uses library", "error")
CAPTURED_LINE = "handed in for grading: the rest of the notebook uses the reference solution"
NOT_DONE_LINE = "not done yet: the rest of the notebook uses the reference solution"

#: every checker made with :func:`exercise`, by exercise name ("cosine_schedule" for check_cosine_schedule)
CHECKERS: dict[str, Callable] = {}
#: capture mode (grading): exercise name -> the student's function, filled by the checkers in the kernel
CAPTURED: dict[str, Callable] = {}


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


def _shown_name(fn: Any, exercise_name: str) -> str:
    name = getattr(fn, "__name__", "")
    return name if name and name.isidentifier() else exercise_name


def _capture_names() -> dict[str, str] | None:
    raw = os.environ.get(GRADE_CAPTURE_ENV)
    if not raw:
        return None
    try:
        names = json.loads(raw)
    except ValueError:
        return {}
    return names if isinstance(names, dict) else {}


def exercise(reference: Callable, name: str | None = None, library: tuple[str, ...] = ()) -> Callable[[Callable], Callable]:
    """Decorator: turn ``check(fn)``, which raises ExerciseError on a wrong answer, into a checker that
    follows the contract in this module's docstring and returns the function to use from then on.

    ``reference`` is the checker's own implementation, with the same signature as the student's function;
    ``name`` is the exercise's name in grades.csv (default: the checker's name without ``check_``);
    ``library`` lists the dotted names of the ddpm_lib functions that implement the exercise (an answer that
    calls one of them, or the reference, is graded "uses library").
    """

    def decorate(check: Callable) -> Callable:
        key = name or check.__name__.removeprefix("check_")

        @functools.wraps(check)
        def checker(fn: Callable, *args, **kwargs) -> Callable:
            capture = _capture_names()
            if capture is not None:
                binding = capture.get(key)
                caller = sys._getframe(1).f_globals
                CAPTURED[key] = caller[binding] if isinstance(binding, str) and binding in caller else fn
                print(f"{_shown_name(fn, key)}: {CAPTURED_LINE}")
                return reference
            try:
                check(fn, *args, **kwargs)
            except NotDone:
                print(f"{_shown_name(fn, key)}: {NOT_DONE_LINE}")
                return reference
            return fn

        checker.exercise = key
        checker.reference = reference
        checker.library = tuple(library)
        checker.check = check
        CHECKERS[key] = checker
        return checker

    return decorate


class GraderFault(BaseException):
    """The grader could not ask the student's code at all (the kernel died or hung): not the student's answer.

    A BaseException, so that neither :func:`call_student` nor a checker turns it into a wrong answer."""


def outcome(key: str, fn: Callable) -> tuple[str, str]:
    """Run exercise ``key``'s checker on ``fn`` and return ``(status, message)``, printing nothing.

    status: correct, wrong (message: the hint), not done, or error (the checker itself failed). A
    :class:`GraderFault` raised by ``fn`` propagates."""
    checker = CHECKERS[key]
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            checker.check(fn)
        except NotDone:
            return "not done", NOT_DONE_LINE
        except ExerciseError as e:
            return "wrong", str(e)
        except Exception as e:  # noqa: BLE001 - a bug in a checker is recorded, never fatal
            return "error", f"the checker itself failed: {type(e).__name__}: {e}"
    return "correct", ""


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


def _first_tensor(value: Any) -> Any:
    """The tensor a result stands for: itself, or the first item of a (mean, variance) pair."""
    if isinstance(value, (tuple, list)) and value:
        value = value[0]
    try:
        return torch.as_tensor(value).detach().double()  # a tensor, a NumPy array or a number
    except (TypeError, ValueError, RuntimeError):
        return None


def call_t_last(name: str, fn: Callable, args: tuple, *, old_order: tuple[int, ...], expected: Any,
                signature: str) -> Any:
    """Call the student's function with ``args``, whose LAST item is the timestep ``t`` (the library's order,
    e.g. ``add_noise(schedule, x0, noise, t)``), and name one slip: a def line that still takes ``t`` before
    the schedule. When the call raises, or its answer is not ``expected``, the function is called once more
    with the arguments in that old order (``args[i] for i in old_order``); if that gives ``expected``, the
    error says to move ``t`` last (``signature`` is the def line to write). Otherwise the result (or the
    error) of the first call is what the checker sees."""
    first_error: ExerciseError | None = None
    try:
        got = call_student(name, fn, *args)
    except ExerciseError as e:
        first_error, got = e, None
    want = _first_tensor(expected)
    have = None if first_error else _first_tensor(got)
    if have is not None and have.shape == want.shape and torch.allclose(have, want, atol=1e-5, rtol=1e-4):
        return got
    try:
        again = fn(*(args[i].clone() if isinstance(args[i], torch.Tensor) else args[i] for i in old_order))
    except Exception:  # noqa: BLE001 - the old order fails too: not this slip
        again = None
    swapped = None if again is None else _first_tensor(again)
    if swapped is not None and swapped.shape == want.shape and torch.allclose(swapped, want, atol=1e-5, rtol=1e-4):
        raise ExerciseError(
            f"{name}: your function takes the timestep t before the schedule. The course follows ddpm_lib, where "
            f"t comes LAST: write the def line as {signature}."
        ) from None
    if first_error is not None:
        raise first_error
    return got


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
