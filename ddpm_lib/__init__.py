"""ddpm_lib: the tested library behind the ddpm-course notebooks (DDPM, Ho et al. 2020, arXiv:2006.11239).

Importing ``ddpm_lib`` is cheap: it loads no submodule. Import what you need::

    from ddpm_lib.settings import settings, seed_everything
    from ddpm_lib.data import load_dataset

Modules, roughly in course order:

- ``settings``: FAST mode, data/runs folders, device, ``seed_everything`` (one place for every switch).
- ``data``: Fashion-MNIST, CIFAR-10, image folders and array files as [-1, 1] tensors; the offline error;
  ``image_datasets``: the Dataset classes behind it; ``standins``: the synthetic stand-ins FAST mode
  uses when real data is missing.
- ``viz``: show and save image grids and GIFs.
- ``schedules``: noise schedules (linear, cosine, sigmoid, quadratic) and their derived quantities.
- ``forward``: the forward process q(x_t | x_0) (eq. 4), the posterior (eqs. 6-7), eps/x0/v conversions.
- ``embeddings``, ``blocks``, ``unet``: timestep embeddings, ResBlock/attention, the UNet.
  ``diffusers_compat``: export the UNet to diffusers' UNet2DModel (tests and benchmarks check against it).
- ``losses``, ``ema``, ``checkpoint``, ``train_config``, ``trainer``, ``distributed``: training
  (Algorithm 1); ``monitor``: a run's metrics.csv, read and plotted.
- ``samplers``: DDPM ancestral sampling (Algorithm 2), DDIM, DPM-Solver++, classifier-free guidance.
- ``toy``: a Gaussian mixture with its exact optimal denoiser, to test samplers without training;
  ``empirical``: the exact denoiser of a finite training set (the training loss's optimum, which memorises).
- ``features``, ``metrics``, ``classifier``, ``evaluate``: FID, KID, Inception Score.
- ``exercises``: the checkers for the notebooks' exercises; ``student``: ``make student``.

Each notebook's setup cell calls :func:`require` with the version it was written for, so a notebook
and an older installed library never drift silently.
"""

from __future__ import annotations

__version__ = "0.2.0"

# The git URL the notebooks' Colab cell installs from; each release is tagged ``v<__version__>``
# (README, "Releasing").
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
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        how = f"update the course checkout: `git pull` then `make install` in {root}"
    else:
        how = f'run `%pip install -U "ddpm-course @ git+{REPO_URL}@v{min_version}"`'
    raise LibraryTooOldError(
        f"this notebook needs ddpm_lib >= {min_version} but {__version__} is installed "
        f"({Path(__file__).resolve().parent}): {how}, then restart the kernel."
    )
