"""ddpm_lib: the tested library behind the ddpm-course notebooks (DDPM, Ho et al. 2020, arXiv:2006.11239).

Importing ``ddpm_lib`` is cheap: it loads no submodule. Import what you need::

    from ddpm_lib.settings import settings, seed_everything
    from ddpm_lib.data.sources import load_dataset

Layers, lowest first; a module imports only its own layer and the ones before it (``tests/test_layers.py``
checks it with ``tools/import_graph.py``). Each subpackage's docstring gives its reading order.

- utilities: ``settings`` (mode, folders, device, seeds), ``files`` (atomic writes, ``NoSpaceError``,
  sha256), ``progress``, ``viz`` (image grids, GIFs), ``command_line`` (one-line errors for every
  entry point), ``pretrained`` (the starter-weight files and their registries).
- ``diffusion``: schedules, the forward process, the variational bound, losses, samplers, exact toy denoisers.
- ``models``: timestep embeddings, blocks, the UNet, EMA, the diffusers export.
- ``data``: datasets as [-1, 1] tensors, synthetic stand-ins, batches.
- ``training``: recipes, ``TrainConfig``, the Trainer and its callbacks, checkpoints, run folders.
- ``loading``: a model rebuilt from a checkpoint or ``pretrained:NAME`` (``load_model``).
- ``evaluation``: FID, KID, Inception Score, the feature classifier.
- ``course``: the exercises' checkers, student copies, grading, which model a notebook shows.
- ``cli``: ``python -m ddpm_lib train | sample | evaluate``.

The notebooks and the modules each is about (it builds their ideas in a few lines, then imports them):

| notebook | modules |
|---|---|
| 00 welcome | ``settings``, ``data.sources``, ``viz``, ``training.recipes`` |
| 01 forward process | ``diffusion.forward``, ``diffusion.schedules`` |
| 02 noise schedules | ``diffusion.schedules`` |
| 03 UNet blocks | ``models.embeddings``, ``models.blocks``, ``models.unet`` |
| 04 training | ``diffusion.bound``, ``diffusion.losses``, ``diffusion.toy``, ``models.ema``, ``training`` (recipes, config, trainer, monitor), ``loading`` |
| 05 sampling | ``diffusion.samplers``, ``diffusion.toy``, ``diffusion.empirical``, ``course.model_choice`` |
| 06 CIFAR-10 | ``training`` (the ``cifar10_*`` recipes), ``loading``, ``course.model_choice`` |
| 07 evaluation | ``evaluation`` (metrics, features, classifier, evaluate) |

Every notebook checks its exercises with ``course.exercises``. Each notebook's setup cell calls
:func:`require` with the version it was written for, so a notebook and an older installed library never
drift silently.
"""

from __future__ import annotations

from pathlib import Path

__version__ = "0.5.0"

# The git URL the notebooks' Colab cell installs from, pinned to a release commit (README, "Releasing").
REPO_URL = "https://github.com/ddpm-course/ddpm-course"

__all__ = ["REPO_URL", "LibraryTooOldError", "__version__", "require"]


def _version_tuple(version: str) -> tuple[int, ...]:
    """``"0.2.0"`` -> ``(0, 2, 0)``; stops at the first non-numeric part (``"0.3.0.dev1"`` -> ``(0, 3, 0)``)."""
    out = []
    for part in version.split("+")[0].split("."):
        digits = ""
        for ch in part:
            if not ch.isdigit():
                break
            digits += ch
        if not digits:
            break
        out.append(int(digits))
        if len(digits) < len(part):
            break
    return tuple(out)


class LibraryTooOldError(ImportError):
    """The installed ddpm_lib is older than a notebook needs. In Jupyter it shows as its one-line
    message (no traceback), and stops "Run all"."""

    def _render_traceback_(self):  # IPython shows this instead of a traceback
        return [f"{type(self).__name__}: {self}"]


def require(min_version: str) -> str:
    """Check the installed ddpm_lib is at least ``min_version`` (the version a notebook was written for).

    Returns the installed version. Otherwise raises :class:`LibraryTooOldError`, whose one-line message
    says exactly how to update: ``git pull`` and ``make install`` in a course checkout, else a
    ``%pip install`` of the matching release tag.
    """
    if not _version_tuple(min_version):
        raise ValueError(f"require: {min_version!r} is not a version like '0.2.0'.")
    if _version_tuple(__version__) >= _version_tuple(min_version):
        return __version__

    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        how = f"update the course checkout: `git pull` then `make install` in {root}"
    else:
        how = f'run `%pip install -U "ddpm-course @ git+{REPO_URL}@v{min_version}"`'
    raise LibraryTooOldError(
        f"this notebook needs ddpm_lib >= {min_version} but {__version__} is installed "
        f"({Path(__file__).resolve().parent}): {how}, then restart the kernel."
    )
