"""Progress bars that suit where the output goes.

In a terminal or a Jupyter notebook, :func:`progress_bar` is tqdm's live bar (``tqdm.auto``: a widget
in Jupyter). When standard output is a file or a pipe (``python -m ddpm_lib train ... > log``, a batch
job, CI), a live bar would write thousands of carriage-return updates onto one line of the log, so it
is replaced by :class:`LineProgress`: one plain line every ``every_s`` seconds (30 by default) and one
at the end::

    training: 1200/20000 (6%), 10.0 min elapsed, 2.00 it/s, ~2.6 h left, loss=0.0412, lr=1.98e-04

    from ddpm_lib.progress import progress_bar
    for t in progress_bar(range(1000), desc="sampling"):
        ...
"""

from __future__ import annotations

import sys
import time

LOG_EVERY_S = 30.0  # seconds between two lines when the output is not a terminal


def _in_jupyter() -> bool:
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def is_interactive(stream=None) -> bool:
    """True in a Jupyter kernel, or when ``stream`` (default: sys.stdout) is a terminal."""
    if _in_jupyter():
        return True
    stream = sys.stdout if stream is None else stream
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_duration(seconds: float) -> str:
    """A wall time as people read it: '42 s', '6.7 min', '2.9 h'."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


class LineProgress:
    """A tqdm stand-in for logs: the part of tqdm's interface the library uses (iterate, ``update``,
    ``set_postfix``, ``close``, context manager), printing one line every ``every_s`` seconds."""

    def __init__(self, iterable=None, total=None, desc: str = "", initial: int = 0, leave: bool = True,
                 disable: bool = False, every_s: float | None = None, file=None, **_tqdm_only):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.desc, self.n, self.leave, self.disable = total, desc, initial, leave, disable
        self.every_s = LOG_EVERY_S if every_s is None else every_s
        self.file = file
        self._initial = initial
        self._start = self._last = time.monotonic()
        self._postfix = ""
        self._lines = 0
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __len__(self):
        return self.total or 0

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs):
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str = "", refresh: bool = True):
        self.desc = desc

    def refresh(self):
        pass

    def line(self) -> str:
        """The current state in one line."""
        elapsed = time.monotonic() - self._start
        done = self.n - self._initial
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)" if self.total else f"{self.n}",
                 f"{format_duration(elapsed)} elapsed"]
        if rate > 0:
            parts.append(f"{rate:.2f} it/s" if rate >= 0.1 else f"{1 / rate:.1f} s/it")
            if self.total:
                parts.append(f"~{format_duration(max(0, self.total - self.n) / rate)} left")
        if self._postfix:
            parts.append(self._postfix)
        return f"{self.desc}: " + ", ".join(parts) if self.desc else ", ".join(parts)

    def _print(self):
        print(self.line(), file=self.file if self.file is not None else sys.stdout, flush=True)
        self._lines += 1
        self._last = time.monotonic()

    def update(self, n: int = 1):
        self.n += n
        if not self.disable and time.monotonic() - self._last >= self.every_s:
            self._print()

    def close(self):
        if self._closed:
            return
        self._closed = True
        if not self.disable and (self.leave or self._lines):
            self._print()


def progress_bar(iterable=None, *, disable: bool = False, every_s: float | None = None, **kwargs):
    """tqdm's bar (``tqdm.auto``) in a terminal or notebook, else a :class:`LineProgress` for logs.

    Takes tqdm's arguments (``total``, ``desc``, ``initial``, ``leave``, ``dynamic_ncols``, ...);
    ``every_s`` sets the seconds between two lines in a log.
    """
    if disable or is_interactive(kwargs.get("file")):
        from tqdm.auto import tqdm  # tqdm only for an interactive bar; a log gets plain lines

        return tqdm(iterable, disable=disable, **kwargs)
    return LineProgress(iterable, disable=disable, every_s=every_s, **kwargs)
