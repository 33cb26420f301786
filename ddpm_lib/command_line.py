"""The command-line plumbing every ``python -m ddpm_lib...`` entry point shares: one-line errors (exit 2,
no traceback), number and device checks, and the options ``sample`` and ``evaluate`` both take.

A bottom-layer utility: it imports only :mod:`ddpm_lib.files` (for its refusal, :class:`~ddpm_lib.files.ClobberError`;
the sampler names are passed in).
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import signal
import sys
import threading
from collections.abc import Sequence

import torch

from ddpm_lib.files import ClobberError


class CLIError(ValueError):
    """A user error: printed as one line, exit status 2."""


class SettingsError(ValueError):
    """An environment variable of :mod:`ddpm_lib.settings` (``DDPM_MODE``, ``DDPM_DEVICE``, ``DDPM_DATA_DIR``...)
    that cannot be used. Defined here, not in settings (which raises it while being imported), so that
    :func:`start` can name it: one line, exit status 2."""


def start(prog: str, module: str, argv: list[str] | None = None, deferred: list | None = None) -> int:
    """Import ``module`` and run its ``main(argv)``: the entry point of ``python -m ddpm_lib``.

    Ctrl-C while importing is remembered (in ``deferred``, which the caller's SIGINT handler fills while it
    imports this module; here, while ``module`` is imported) and acted on once the imports are done: one line,
    exit status 130. So is Ctrl-C later that no command handled. A bad ``DDPM_*`` variable
    (:class:`SettingsError`, raised while the settings are imported) is one line with exit status 2.
    """
    deferred = [] if deferred is None else deferred
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        signal.signal(signal.SIGINT, lambda signum, frame: deferred.append(signum))
    try:
        main = importlib.import_module(module).main
    except SettingsError as e:
        return fail(f"{prog}: error: {e}", 2)
    except KeyboardInterrupt:
        deferred.append(signal.SIGINT)
    finally:
        if in_main:
            signal.signal(signal.SIGINT, signal.default_int_handler)
    if deferred:
        return fail(f"{prog}: interrupted (Ctrl-C) while starting; nothing was written.", 130)
    try:
        return main(argv)
    except KeyboardInterrupt:
        return fail(f"{prog}: interrupted (Ctrl-C).", 130)


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a bad command line in one line (no usage block, no traceback)."""

    def error(self, message):  # noqa: D401 - argparse API
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        raise SystemExit(2)


def fail(line: str, code: int) -> int:
    """Print ``line`` (white space folded to one line) on stderr; return the exit status ``code``."""
    sys.stderr.write(" ".join(line.split()) + "\n")
    return code


def run_guarded(prog: str, args: argparse.Namespace) -> int:
    """``args.func(args)`` with user errors as one line naming ``prog`` (exit 2)."""
    try:
        rc = args.func(args)
    except (CLIError, ClobberError) as e:
        return fail(f"{prog}: error: {e}", 2)
    except (OSError, ValueError) as e:  # e.g. from evaluate, or an --out that cannot be written: still one line
        return fail(f"{prog}: error: {type(e).__name__}: {last_line(e)}", 2)
    return rc if isinstance(rc, int) else 0


def last_line(e: BaseException) -> str:
    """The message of ``e``; for an error re-raised by a DataLoader worker, its last line (the original message)."""
    text = str(e)
    if "Original Traceback" in text:
        lines = [ln for ln in text.splitlines() if ln.strip()]
        return lines[-1].split(": ", 1)[-1] if lines else text
    return text


def device_problem(name: str, present: bool = True) -> str | None:
    """Why ``name`` cannot be used as a torch device (with ``present``: on this machine), or None when it can.
    The one check behind ``DDPM_DEVICE``, ``--device`` and ``TrainConfig.device``."""
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        return "not a device name: use cpu, cuda, cuda:1 or mps"
    if not present:
        return None
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA GPU is available here: use cpu"
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        n = torch.cuda.device_count()
        return f"this machine has {n} CUDA device(s) (cuda:0 to cuda:{n - 1})"
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        return "Apple's mps is not available here: use cpu"
    return None


def check_device(name: str, option: str = "--device"):
    """``torch.device(name)``, or a CLIError when it is not a device name or not present here."""
    why = device_problem(name)
    if why:
        raise CLIError(f"{option} {name!r}: {why}")
    return torch.device(name)


def physical_memory() -> int | None:
    """This machine's RAM in bytes (POSIX ``sysconf``), or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_sample_memory(num: int, shape: Sequence[int], option: str = "--num") -> None:
    """Refuse ``num`` samples of ``shape`` (C, H, W) when holding them as float32 (how the samplers return them)
    would take more than half of this machine's memory: a CLIError naming the size, before any sampling."""
    need = 4 * num * math.prod(shape)
    ram = physical_memory()
    if ram is not None and need > ram // 2:
        most = max(1, (ram // 2) // (4 * math.prod(shape)))
        raise CLIError(f"{option} {num}: {num} samples of {'x'.join(map(str, shape))} would take {need / 2**30:.1f} GiB "
                       f"of memory (float32), more than half of this machine's {ram / 2**30:.1f} GiB: give {option} "
                       f"{most} or fewer (and run again with another --seed for more).")


def finite_float(text: str) -> float:
    """argparse type: a finite number (``nan`` and ``inf`` are refused)."""
    try:
        x = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(x):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {text!r}")
    return x


def add_sampling_options(p: argparse.ArgumentParser, sampler_names: Sequence[str], *, num: int, batch: int) -> None:
    """The options ``sample`` and ``evaluate`` share: the model, how many images, and how to sample them
    (``num`` and ``batch`` are the command's defaults)."""
    p.add_argument("--ckpt", required=True,
                   help="checkpoint file (final.pt, best.pt, latest.pt), or pretrained:fashion_mnist / pretrained:cifar10")
    p.add_argument("--num", type=int, default=num, help=f"number of images (default {num})")
    p.add_argument("--sampler", default="ddim", choices=sampler_names, help="sampler (default ddim)")
    p.add_argument("--steps", type=int, default=50, help="sampling steps (default 50; ddpm: 0 = all T)")
    p.add_argument("--guidance", type=finite_float, default=None,
                   help="classifier-free guidance scale for a class-conditional model (default 1)")
    p.add_argument("--batch", type=int, default=batch, help=f"images per batch, sampling and features (default {batch})")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampling noise (default 0)")
    p.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: the best available)")
