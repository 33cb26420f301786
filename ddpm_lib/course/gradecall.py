"""Call a student's function in their kernel from the grader, with answers coming back in a safe format.

The grader (:mod:`ddpm_lib.course.grade`) runs every checker in its own process. The function a checker tests is
a :func:`proxy`: each call

1. pickles ``(exercise, args, kwargs, gradients)`` into ``CALLS/<n>/in.pkl`` (the grader -> kernel
   direction may use pickle: only the kernel, which is untrusted anyway, unpickles it);
2. runs one line in the kernel, ``ddpm_lib.course.gradecall.run_call(CALLS/<n>)``, which calls the function
   captured for that exercise (:data:`ddpm_lib.course.exercises.CAPTURED`) and ``torch.save``s the answer, and
   the state of every argument after the call (tensors changed in place, a model's weights and gradients,
   a generator's state, list items replaced), into ``out.pt``;
3. reads ``out.pt`` back with ``torch.load(weights_only=True)`` (no code can run while loading) and rebuilds
   only plain values from a strict tagged format: ``None``, bool, int, float, str, tensors (as plain
   ``torch.Tensor``), NumPy arrays and scalars of numeric dtypes, tuples, lists and dicts. Anything else
   (an object with its own ``__eq__``, a tensor subclass) becomes an :class:`Unreadable` stand-in named
   after its type, which no checker accepts as an answer.

So the kernel can never make the grader run code, and the verdict depends only on the values the
student's function returned. An answer file over :data:`MAX_ANSWER_BYTES`, one that does not follow the
format, or a call past its time limit is the student's answer (the checker sees an exception: ``wrong``);
after a call that hung, and when the kernel is gone, the exercises left are not graded
(:class:`ddpm_lib.course.exercises.GraderFault`: ``error``, with the reason).

The grader writes only inside the kernel's copy, through a directory descriptor opened before the kernel
ran (never through a path the kernel could have replaced by a symlink), and reads ``out.pt`` with
``O_NOFOLLOW | O_NONBLOCK`` as a regular file only.
"""

from __future__ import annotations

import os
import pickle
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ddpm_lib.course.exercises import CAPTURED, GraderFault

MAX_ANSWER_BYTES = 64 * 2**20
_MAX_DEPTH = 12
_NUMPY_DTYPES = {"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                 "float16", "float32", "float64", "complex64", "complex128"}


# --- kernel side -----------------------------------------------------------------------------------


def _plain(t: torch.Tensor) -> torch.Tensor:
    t = t.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    return t.to("cpu").as_subclass(torch.Tensor).clone()


def _enc(x: Any, depth: int = 0):
    """The kernel's encoding of a value (see the module docstring); the grader re-checks every node."""
    if depth > _MAX_DEPTH:
        return ("X", "a structure nested too deeply")
    if x is None or type(x) in (bool, int, float, str):
        return ("P", x[:20000] if type(x) is str else x)
    if isinstance(x, torch.Tensor):
        return ("T", _plain(x), bool(x.requires_grad))
    if isinstance(x, np.ndarray):
        if str(x.dtype) in _NUMPY_DTYPES:
            return ("A", torch.from_numpy(np.ascontiguousarray(x).copy()), str(x.dtype))
        return ("X", f"ndarray of dtype {x.dtype}")
    if isinstance(x, np.generic) and str(x.dtype) in _NUMPY_DTYPES:
        return ("S", x.item(), str(x.dtype))
    if isinstance(x, tuple):
        return ("U", [_enc(v, depth + 1) for v in x])
    if isinstance(x, list):
        return ("L", [_enc(v, depth + 1) for v in x])
    if isinstance(x, dict):
        return ("D", [(_enc(k, depth + 1), _enc(v, depth + 1)) for k, v in x.items()])
    return ("X", type(x).__name__)


def _state(x: Any, before: Any):
    """What an argument looks like after the call, for the grader to mirror onto its own copy."""
    if isinstance(x, torch.Tensor):
        return ("T", _plain(x), bool(x.requires_grad), None if x.grad is None else _plain(x.grad))
    if isinstance(x, torch.nn.Module):
        return ("M", [(n, _plain(p), None if p.grad is None else _plain(p.grad)) for n, p in x.named_parameters()],
                [(n, _plain(b)) for n, b in x.named_buffers()])
    if isinstance(x, torch.Generator):
        return ("G", x.get_state())
    if isinstance(x, torch.optim.Optimizer):
        return ("O", _enc(x.state_dict()))
    if isinstance(x, list) and isinstance(before, list):
        items = []
        for i, v in enumerate(x):
            same = i < len(before) and v is before[i]
            items.append((same, _state(v, None) if same else _enc(v)))
        return ("L", items)
    return ("-",)


def run_call(call_dir: str) -> None:
    """Kernel side of one call: run the captured function on the grader's arguments, save the answer."""
    folder = Path(call_dir)
    with open(folder / "in.pkl", "rb") as fh:
        exercise, args, kwargs, grads = pickle.load(fh)
    for tensor, grad in grads:
        tensor.grad = grad
    fn = CAPTURED.get(exercise)
    if fn is None:
        out: tuple = ("missing",)
    else:
        before = [list(a) if isinstance(a, list) else None for a in args]
        before_kw = {k: list(v) if isinstance(v, list) else None for k, v in kwargs.items()}
        try:
            result = fn(*args, **kwargs)
        except NotImplementedError as e:
            out = ("notimpl", str(e)[:2000])
        except Exception as e:  # noqa: BLE001 - the student's exception goes back to the checker
            out = ("raised", type(e).__name__, str(e)[:4000])
        else:
            out = ("ok", _enc(result), [_state(a, b) for a, b in zip(args, before)],
                   [(k, _state(v, before_kw[k])) for k, v in kwargs.items()])
    tmp = folder / "out.tmp"
    torch.save(out, tmp)
    os.replace(tmp, folder / "out.pt")


# --- grader side -----------------------------------------------------------------------------------


class Unreadable:
    """Stands for an answer the grader does not rebuild (an arbitrary object); its type name is the student's."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: not a value the grader reads back>"


class Malformed(ValueError):
    """out.pt does not follow the format (it was written by something other than run_call)."""


def _unreadable(name: Any) -> Unreadable:
    text = re.sub(r"\W", "_", str(name))[:40] or "object"
    if not text[0].isalpha():
        text = "T" + text
    return type(text, (Unreadable,), {})()


def _node(n: Any, size: int) -> tuple:
    if type(n) is not tuple or len(n) != size or type(n[0]) is not str:
        raise Malformed(f"bad node {type(n).__name__}")
    return n


def decode(n: Any, depth: int = 0) -> Any:
    """Rebuild a value from :func:`_enc`'s format, accepting nothing else."""
    if depth > _MAX_DEPTH + 1 or type(n) is not tuple or not n or type(n[0]) is not str:
        raise Malformed("bad node")
    tag = n[0]
    if tag == "P":
        _node(n, 2)
        if n[1] is not None and type(n[1]) not in (bool, int, float, str):
            raise Malformed("bad primitive")
        return n[1]
    if tag == "T":
        _node(n, 3)
        if type(n[1]) is not torch.Tensor or type(n[2]) is not bool:
            raise Malformed("bad tensor")
        t = n[1]
        if n[2] and (t.is_floating_point() or t.is_complex()):
            t.requires_grad_(True)
        return t
    if tag == "A":
        _node(n, 3)
        if type(n[1]) is not torch.Tensor or n[2] not in _NUMPY_DTYPES:
            raise Malformed("bad array")
        return n[1].numpy().astype(np.dtype(n[2]), copy=False)
    if tag == "S":
        _node(n, 3)
        if n[2] not in _NUMPY_DTYPES or type(n[1]) not in (bool, int, float, complex):
            raise Malformed("bad scalar")
        return np.dtype(n[2]).type(n[1])
    if tag in ("U", "L"):
        _node(n, 2)
        if type(n[1]) is not list:
            raise Malformed("bad sequence")
        items = [decode(v, depth + 1) for v in n[1]]
        return tuple(items) if tag == "U" else items
    if tag == "D":
        _node(n, 2)
        if type(n[1]) is not list:
            raise Malformed("bad dict")
        out = {}
        for pair in n[1]:
            if type(pair) is not tuple or len(pair) != 2:
                raise Malformed("bad dict item")
            key = decode(pair[0], depth + 1)
            if key is not None and type(key) not in (bool, int, float, str):
                raise Malformed("bad dict key")
            out[key] = decode(pair[1], depth + 1)
        return out
    if tag == "X":
        _node(n, 2)
        return _unreadable(n[1])
    raise Malformed(f"unknown tag {tag[:20]!r}")


def _tensor(v: Any) -> torch.Tensor:
    if type(v) is not torch.Tensor:
        raise Malformed("expected a tensor")
    return v


def _copy_into(target: torch.Tensor, value: torch.Tensor) -> None:
    with torch.no_grad():
        if target.shape == value.shape and target.dtype == value.dtype:
            target.copy_(value)
        else:
            target.data = value


def apply_state(x: Any, st: Any) -> Any:
    """Mirror the kernel's argument state ``st`` onto the grader's argument ``x``; returns ``x`` (or its replacement)."""
    if type(st) is not tuple or not st or type(st[0]) is not str:
        raise Malformed("bad state")
    tag = st[0]
    if tag == "-":
        return x
    if tag == "T" and isinstance(x, torch.Tensor) and len(st) == 4:
        _copy_into(x, _tensor(st[1]))
        return x
    if tag == "M" and isinstance(x, torch.nn.Module) and len(st) == 3:
        params = dict(x.named_parameters())
        buffers = dict(x.named_buffers())
        for name, value, grad in st[1]:
            if name in params:
                _copy_into(params[name], _tensor(value))
                params[name].grad = None if grad is None else _tensor(grad)
        for name, value in st[2]:
            if name in buffers:
                _copy_into(buffers[name], _tensor(value))
        return x
    if tag == "G" and isinstance(x, torch.Generator) and len(st) == 2:
        x.set_state(_tensor(st[1]))
        return x
    if tag == "O" and isinstance(x, torch.optim.Optimizer) and len(st) == 2:
        x.load_state_dict(decode(st[1]))
        return x
    if tag == "L" and isinstance(x, list) and len(st) == 2 and type(st[1]) is list:
        new = []
        for i, item in enumerate(st[1]):
            if type(item) is not tuple or len(item) != 2 or type(item[0]) is not bool:
                raise Malformed("bad list state")
            same, sub = item
            new.append(apply_state(x[i], sub) if same and i < len(x) else decode(sub))
        x[:] = new
        return x
    raise Malformed(f"state {tag[:10]!r} does not fit a {type(x).__name__}")


def _grads(args: tuple, kwargs: dict) -> list:
    """(tensor, its .grad) for every tensor argument and module parameter holding a gradient (pickle drops .grad)."""
    out = []

    def visit(v, depth=0):
        if depth > 4:
            return
        if isinstance(v, torch.nn.Module):
            out.extend((p, p.grad) for p in v.parameters() if p.grad is not None)
        elif isinstance(v, torch.Tensor) and v.grad is not None:
            out.append((v, v.grad))
        elif isinstance(v, (list, tuple)):
            for item in v:
                visit(item, depth + 1)

    for v in (*args, *kwargs.values()):
        visit(v)
    return out


def read_answer(name: str, dir_fd: int, limit: int = MAX_ANSWER_BYTES) -> Any:
    """torch.load(weights_only=True) of the regular file ``name`` in ``dir_fd``, no bigger than ``limit``.

    Never follows a symlink and never blocks on a FIFO; too big raises :class:`AnswerTooLarge`."""
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise Malformed("the answer file is not a regular file")
        if info.st_size > limit:
            raise AnswerTooLarge(f"the answer was {info.st_size / 2**20:.0f} MiB, over the grader's "
                                 f"{limit / 2**20:.0f} MiB limit")
        with os.fdopen(os.dup(fd), "rb") as fh:
            return torch.load(fh, weights_only=True, map_location="cpu")
    finally:
        os.close(fd)


class AnswerTooLarge(ValueError):
    """The student's function returned more than the grader reads back."""


class StudentRaised(Exception):
    """Base of the exceptions the grader raises for an exception the student's code raised in the kernel."""


def _raised(name: Any, message: Any) -> Exception:
    text = re.sub(r"\W", "_", str(name))[:60] or "Exception"
    if not text[0].isalpha():
        text = "E" + text
    return type(text, (StudentRaised,), {})(str(message)[:4000])


class KernelCalls:
    """The grader's side of the calls into one kernel.

    ``execute(source, timeout)`` runs one line in the kernel and returns when it finished; it raises
    ``TimeoutError`` when the line ran past ``timeout`` seconds and :class:`GraderFault` when the kernel is gone.
    ``folder`` is the kernel's working copy (the only place both can read and write).
    """

    def __init__(self, execute: Callable[[str, float], None], folder: Path, call_timeout: float,
                 remaining: Callable[[], float]):
        self.execute = execute
        self.root = folder / ".ddpm-grade-calls"
        self.root.mkdir()
        # every later access goes through this descriptor, never through a path the kernel could replace
        # by a symlink: the grader runs outside the sandbox and must write only inside the copy
        self.root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        self.call_timeout = call_timeout
        self.remaining = remaining
        self.count = 0
        self.lost = ""

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def call(self, exercise: str, args: tuple, kwargs: dict) -> Any:
        if self.lost:
            raise GraderFault(self.lost)
        self.count += 1
        name = f"{self.count}-{os.urandom(6).hex()}"
        os.mkdir(name, 0o755, dir_fd=self.root_fd)
        call_fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=self.root_fd)
        try:
            return self._call(exercise, args, kwargs, name, call_fd)
        finally:
            os.close(call_fd)

    def _call(self, exercise: str, args: tuple, kwargs: dict, name: str, call_fd: int) -> Any:
        fd = os.open("in.pkl", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600, dir_fd=call_fd)
        with os.fdopen(fd, "wb") as fh:
            pickle.dump((exercise, args, kwargs, _grads(args, kwargs)), fh, protocol=4)
        limit = min(self.call_timeout, self.remaining())
        if limit <= 0:
            self.lost = "the notebook's time limit ran out before this exercise was graded"
            raise GraderFault(self.lost)
        try:
            self.execute(f"__import__('ddpm_lib.course.gradecall', fromlist=['run_call']).run_call({str(self.root / name)!r})",
                         limit)
        except TimeoutError:
            self.lost = f"an earlier call to the student's function did not return within {limit:.0f} s"
            raise TimeoutError(f"your function did not return within {limit:.0f} s on the grader's input") from None
        except GraderFault as e:
            self.lost = str(e)
            raise
        try:
            out = read_answer("out.pt", call_fd)
        except FileNotFoundError:
            raise _raised("NoAnswer", "the call ended without an answer (did your code exit or raise "
                          "BaseException?)") from None
        except AnswerTooLarge as e:
            raise _raised("AnswerTooLarge", str(e)) from None
        except Exception as e:  # noqa: BLE001 - anything unreadable is the kernel's doing
            raise _raised("UnreadableAnswer", f"the grader could not read the answer back ({type(e).__name__})") from None
        return self._unpack(out, args, kwargs)

    def _unpack(self, out: Any, args: tuple, kwargs: dict) -> Any:
        try:
            if type(out) is not tuple or not out:
                raise Malformed("bad answer")
            if out[0] == "missing":
                raise GraderFault("the checker cell never ran in the student's notebook (nothing was handed in)")
            if out[0] == "notimpl":
                raise NotImplementedError(str(out[1]) if len(out) > 1 else "")
            if out[0] == "raised" and len(out) == 3:
                raise _raised(out[1], out[2])
            if out[0] != "ok" or len(out) != 4 or type(out[2]) is not list or type(out[3]) is not list:
                raise Malformed("bad answer")
            value = decode(out[1])
            for arg, st in zip(args, out[2]):
                apply_state(arg, st)
            for item in out[3]:
                if type(item) is tuple and len(item) == 2 and item[0] in kwargs:
                    apply_state(kwargs[item[0]], item[1])
            return value
        except Malformed as e:
            raise _raised("UnreadableAnswer", f"the grader could not read the answer back ({e})") from None


def proxy(calls: KernelCalls, exercise: str) -> Callable:
    """A function that forwards every call to the student's function for ``exercise`` in the kernel."""

    def student_function(*args, **kwargs):
        return calls.call(exercise, args, kwargs)

    student_function.__name__ = exercise
    return student_function
