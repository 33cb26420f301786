"""One place for the course's switches: the mode, where data and runs live, the device, seeding.

Every notebook reads its mode-dependent sizes from here instead of hard-coding numbers twice; the sizes of a
training run (T, batch, data, UNet, steps) belong to the mode's recipe (:mod:`ddpm_lib.training.recipes`)::

    from ddpm_lib.settings import settings, seed_everything
    n_show = settings.pick(full=64, fast=16, cpu=32)  # a number the notebook itself needs
    recipe = settings.recipe("fashion_mnist")     # "fashion_mnist_cpu" in cpu mode; TrainConfig.from_recipe(recipe)

Three modes (``settings.mode``):

- ``fast``: seconds per notebook, for CI and ``make test``: tiny data, models and step counts. The
  notebooks still show real images because they sample from the starter weights shipped in
  :mod:`ddpm_lib.pretrained`.
- ``cpu``: real data, small models, recognisable images from your own training in minutes on a laptop.
- ``gpu``: the paper's scale (Ho et al. 2020), meant for a CUDA GPU.

Environment variables (read when the module is imported; call ``reload_settings()`` after changing them):

- ``DDPM_MODE``: ``fast``, ``cpu`` or ``gpu``. Unset: ``gpu`` when a CUDA GPU is found, else ``cpu``.
  Asking for ``gpu`` without a CUDA GPU warns once (with the estimated CPU time) and goes ahead.
- ``DDPM_FAST``: the older switch, kept as an alias: ``1`` means ``DDPM_MODE=fast``, ``0`` means the
  default mode. ``DDPM_MODE`` wins when both are set.
- ``DDPM_DATA_DIR``: where datasets are read from and downloaded to. Default: ``data/`` at the root of
  the course repository when ``ddpm_lib`` is used from a checkout; else ``/content/data`` on Colab and a
  per-user cache folder elsewhere (:func:`default_dirs`), never a folder inside ``notebooks/``.
- ``DDPM_RUNS_DIR``: where training runs and checkpoints go. Default: ``runs/`` beside the data dir.
- ``DDPM_DEVICE``: force ``cpu``, ``cuda``, ``cuda:1`` or ``mps``. Default: the best one available.
- ``DDPM_OFFLINE``: ``1`` never tries to download datasets (read by :mod:`ddpm_lib.data.sources`, which otherwise
  downloads missing files on first use).
"""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from ddpm_lib.command_line import SettingsError, device_problem

T = TypeVar("T")

MODES = ("fast", "cpu", "gpu")
# What a full gpu-mode run of the course costs on a 2-core CPU, for the warning below: notebook 04 alone
# trains the fashion_mnist preset for 20,000 steps at 2.97 s per step (measured on 2 cores, batch 128).
GPU_MODE_ON_CPU_ESTIMATE = "about 17 hours for notebook 04 alone (20,000 steps at ~3 s each on 2 cores)"

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _repo_root() -> Path | None:
    """The course checkout this package lives in, if any (a folder holding pyproject.toml + notebooks/)."""
    here = Path(__file__).resolve().parent.parent
    if (here / "pyproject.toml").is_file() and (here / "notebooks").is_dir():
        return here
    return None


def _user_cache_dir() -> Path:
    """The platform's per-user cache folder for ddpm-course (XDG on Linux, ~/Library/Caches on macOS)."""

    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "ddpm-course"
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local") / "ddpm-course"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ddpm-course"


def on_colab() -> bool:
    """True inside Google Colab (its ``google.colab`` module is loaded, or its runtime's environment variable is set)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def default_dirs() -> tuple[Path, Path]:
    """Default (data dir, runs dir): ``data/`` and ``runs/`` of the course checkout ddpm_lib runs from;
    else ``/content/data`` and ``/content/runs`` on Colab (its working folder); else ``data/`` and
    ``runs/`` in the per-user cache folder. Never relative to the current folder, so running a
    notebook from ``notebooks/`` with an installed ddpm_lib writes nothing there."""
    root = _repo_root()
    if root is None and on_colab():
        root = Path("/content")
    if root is None:
        root = _user_cache_dir()
    return root / "data", root / "runs"


def _parse_bool(name: str, value: str) -> bool:
    v = value.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise SettingsError(f"{name}={value!r} is not understood: use {name}=1 (on) or {name}=0 (off).")


def best_device() -> torch.device:
    """cuda if available, then Apple's mps, else cpu; ``DDPM_DEVICE`` overrides."""
    forced = os.environ.get("DDPM_DEVICE", "").strip()
    if forced:
        why = device_problem(forced)
        if why:
            raise SettingsError(f"DDPM_DEVICE={forced!r}: {why} (or unset DDPM_DEVICE).")
        return torch.device(forced)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass(frozen=True)
class Settings:
    """The course-wide switches, and the display sizes that depend on the mode.

    The size fields hold the value for the current mode; ``pick(full, fast, cpu)`` does the same for
    any number a notebook needs that is not listed here. Training sizes are not here: the recipe named by
    :meth:`recipe` owns them.
    """

    mode: str  # "fast", "cpu" or "gpu"
    data_dir: Path
    runs_dir: Path
    device: torch.device
    # display sizes that FAST mode shrinks (value for the current mode); training sizes (T, batch, data, UNet)
    # belong to the mode's recipe: ``TrainConfig.from_recipe(settings.recipe("fashion_mnist"))``
    sample_steps: int  # DDIM steps for quick sample grids
    num_samples: int  # images in a sample grid

    @property
    def fast(self) -> bool:
        """True in fast mode (the older name of the switch)."""
        return self.mode == "fast"

    def pick(self, full: T, fast: T, cpu: T | None = None) -> T:
        """The value for the current mode: ``fast`` in fast mode, ``cpu`` in cpu mode (``full`` when
        ``cpu`` is not given), ``full`` in gpu mode."""
        if self.mode == "fast":
            return fast
        if self.mode == "cpu" and cpu is not None:
            return cpu
        return full

    def recipe(self, dataset: str) -> str:
        """The :mod:`ddpm_lib.training.recipes` name this mode trains ``dataset`` with, e.g. ``fashion_mnist_cpu``."""
        return f"{dataset}_{self.mode}"

    def run_dir(self, name: str) -> Path:
        """Folder of a named training run; fast and cpu runs get their own (``name-fast``, ``name-cpu``)
        so they never mix with gpu-mode ones."""
        return self.runs_dir / (name if self.mode == "gpu" else f"{name}-{self.mode}")

    def banner(self) -> str:
        what = {"fast": "tiny data, models and step counts; images come from the starter weights",
                "cpu": "real data, small models, minutes on a CPU",
                "gpu": "the paper's scale"}[self.mode]
        return (
            f"ddpm_lib settings: mode={self.mode} ({what}), device={self.device}, data_dir={self.data_dir}, "
            f"runs_dir={self.runs_dir}"
        )


def load_settings() -> Settings:
    """Read the environment and build a fresh :class:`Settings`."""
    device = best_device()
    mode = _read_mode(device)

    default_data, default_runs = default_dirs()
    data_dir = Path(os.environ.get("DDPM_DATA_DIR") or default_data).expanduser().resolve()
    runs_dir = Path(os.environ.get("DDPM_RUNS_DIR") or default_runs).expanduser().resolve()
    for name, folder in (("DDPM_DATA_DIR", data_dir), ("DDPM_RUNS_DIR", runs_dir)):
        if folder.exists() and not folder.is_dir():
            raise SettingsError(f"{name}={os.environ.get(name)!r} is a file, not a folder: point it at a folder (it is "
                                "created if missing), or unset it for the default.")

    def pick(full, fast_value, cpu=None):
        if mode == "fast":
            return fast_value
        return cpu if (mode == "cpu" and cpu is not None) else full

    return Settings(
        mode=mode,
        data_dir=data_dir,
        runs_dir=runs_dir,
        device=device,
        sample_steps=pick(50, 10),
        num_samples=pick(64, 16),
    )


def _read_mode(device: torch.device) -> str:
    """``DDPM_MODE``, else the ``DDPM_FAST`` alias, else gpu with CUDA and cpu without."""
    default = "gpu" if device.type == "cuda" else "cpu"
    raw = os.environ.get("DDPM_MODE")
    if raw is not None and raw.strip():
        mode = raw.strip().lower()
        if mode not in MODES:
            raise SettingsError(f"DDPM_MODE={raw!r} is not understood: use DDPM_MODE=fast, cpu or gpu.")
    else:
        fast_env = os.environ.get("DDPM_FAST")
        mode = "fast" if fast_env is not None and _parse_bool("DDPM_FAST", fast_env) else default
    if mode == "gpu" and device.type != "cuda":
        warnings.warn(f"DDPM_MODE=gpu without a CUDA GPU runs the paper-scale settings on {device.type}: "
                      f"{GPU_MODE_ON_CPU_ESTIMATE}. Use DDPM_MODE=cpu for real images in minutes.", stacklevel=3)
    return mode


def _load_at_import() -> Settings:
    """:func:`load_settings` for the module's ``settings``. When a ``python -m ddpm_lib...`` command is running, a bad
    ``DDPM_*`` variable is one line on stderr and exit status 2 (the command-line contract; it is found while
    the command's imports run, before any ``main`` could catch it); imported anywhere else it raises
    :class:`SettingsError`."""
    try:
        return load_settings()
    except SettingsError as e:
        spec = getattr(sys.modules.get("__main__"), "__spec__", None)
        command = (getattr(spec, "name", None) or "").removesuffix(".__main__")
        if command.split(".")[0] == "ddpm_lib":
            sys.stderr.write(f"python -m {command}: error: {e}\n")
            raise SystemExit(2) from None
        raise


settings: Settings = _load_at_import()


def reload_settings() -> Settings:
    """Re-read the environment (after changing ``os.environ`` in a notebook); returns the new settings.

    ``settings`` is updated in place, so every ``from ddpm_lib.settings import settings`` made earlier
    sees the new values too (the returned object is a separate snapshot).
    """

    fresh = load_settings()
    for f in dataclasses.fields(Settings):
        object.__setattr__(settings, f.name, getattr(fresh, f.name))
    return fresh


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and every GPU); optionally ask for deterministic kernels.

    Returns a ``torch.Generator`` seeded with ``seed`` on the CPU, for cells that must give the same
    result whatever ran before them (pass it explicitly to ``torch.randn(..., generator=g)``).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if deterministic:
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
        # warn_only: a few ops (e.g. some upsampling backward kernels on CUDA) have no deterministic
        # version; we prefer a warning to a crash in a teaching notebook.
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    g = torch.Generator()
    g.manual_seed(seed)
    return g
