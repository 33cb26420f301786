"""A run's ``metrics.csv``: the Trainer writes it, notebooks read and plot it.

One row per logged optimizer step, with the columns :data:`METRIC_COLUMNS` (``loss`` is the mean over
the log interval, ``smoothed_loss`` the bias-corrected exponential moving average). The Trainer appends
rows with :func:`append_metrics` and, when it resumes from a checkpoint, drops the rows logged after it
with :func:`truncate_metrics`. :func:`read_metrics` gives the columns as arrays, :func:`plot_metrics`
draws the loss curve, and :class:`LiveLossPlot` redraws it during training in a notebook.
"""

from __future__ import annotations

import csv
import errno
import io
import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ddpm_lib.files import NoSpaceError, atomic_write


class HasRunDir(Protocol):
    """What :class:`LiveLossPlot` reads from the trainer it watches (a protocol: the trainer imports this module)."""

    run_dir: Path

METRIC_COLUMNS = ("step", "epoch", "loss", "smoothed_loss", "lr", "grad_norm", "img_per_s", "elapsed_s")


def _csv_text(rows: list[dict], header: bool) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    if header:
        w.writeheader()
    for r in rows:
        w.writerow({k: r.get(k, "") for k in METRIC_COLUMNS})
    return buf.getvalue()


def append_metrics(run_dir: str | os.PathLike, rows: list[dict]) -> None:
    """Add ``rows`` (dicts keyed by :data:`METRIC_COLUMNS`) to ``run_dir/metrics.csv``, creating it if needed.

    A full disk raises :class:`ddpm_lib.files.NoSpaceError`; a row cut short by it is dropped when the run resumes.
    """

    path = Path(run_dir) / "metrics.csv"
    text = _csv_text(rows, header=not path.is_file())
    try:
        with open(path, "a", newline="") as f:
            f.write(text)
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise NoSpaceError(path) from None
        raise


def truncate_metrics(run_dir: str | os.PathLike, step: int) -> None:
    """Keep the rows of ``run_dir/metrics.csv`` up to optimizer step ``step`` (when resuming), atomically;
    rows that do not parse (cut short by a crash) are dropped."""

    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return
    keep = []
    with open(path, newline="") as f:
        for r in csv.DictReader(f):
            try:
                ok = None not in r.values() and int(float(r["step"])) <= step
            except (TypeError, ValueError):
                ok = False
            if ok:
                keep.append(r)
    atomic_write(path, _csv_text(keep, header=True))


def read_metrics(run_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """The columns of ``run_dir/metrics.csv`` (or the csv file itself) as float arrays."""
    path = Path(run_dir)
    if path.is_dir():
        path = path / "metrics.csv"
    if not path.is_file():
        raise FileNotFoundError(f"no metrics file at {path}: has training logged anything yet (log_every > 0)?")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = rows[0].keys() if rows else METRIC_COLUMNS
    return {c: np.array([float(r[c]) if r[c] not in ("", None) else np.nan for r in rows]) for c in cols}


def plot_metrics(run_dir: str | os.PathLike, ax=None, log_y: bool = True, title: str | None = None):
    """Plot the raw and smoothed training loss of a run (notebook helper); returns the axes."""
    import matplotlib.pyplot as plt  # matplotlib is heavy: only when plotting

    m = read_metrics(run_dir)
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(m["step"], m["loss"], alpha=0.4, label="loss (mean over log interval)")
    ax.plot(m["step"], m["smoothed_loss"], label="smoothed loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if log_y:
        ax.set_yscale("log")
    ax.set_title(title or f"training loss: {Path(run_dir).name}")
    ax.legend()
    return ax


class LiveLossPlot:
    """A Trainer callback that redraws the loss curve in a notebook every ``every`` log rows.

    ``Trainer(cfg, callbacks=[LiveLossPlot()]).fit()``
    """

    def __init__(self, every: int = 5):
        self.every = every
        self.calls = 0

    def __call__(self, trainer: HasRunDir, row: dict) -> None:
        self.calls += 1
        if self.calls % self.every:
            return
        import matplotlib.pyplot as plt  # matplotlib is heavy: only when plotting

        try:
            from IPython.display import clear_output, display  # IPython exists only inside Jupyter
        except ImportError:  # not in a notebook
            return
        fig, ax = plt.subplots(figsize=(6, 3.5))
        plot_metrics(trainer.run_dir, ax=ax)
        clear_output(wait=True)
        display(fig)
        plt.close(fig)
