"""Interleaved timing and paired ratios: the one timing method of every benchmark here.

On a shared machine the speed of everything drifts with outside load, so two configurations timed one
after the other can differ by 2-3x for reasons that have nothing to do with them. Here every
configuration runs once per round, in a rotating order, and a ratio is taken *within* each round
(the two timings ran seconds apart, under nearly the same load); we report the median of those
per-round ratios with their spread (min..max), and call a run noisy when that spread is wide or when
the ratio of the medians disagrees with the paired one.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

NOISY_SPREAD = 1.25  # max/min of the per-round ratios above this: noisy
NOISY_DISAGREE = 0.10  # ratio of medians vs paired ratio differing by more than this fraction: noisy


def interleaved_times(runners: dict[str, Callable[[], object]], rounds: int, steps: int,
                      sync: Callable[[], None] = lambda: None, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of every runner, ``rounds`` values each (the mean of ``steps`` calls per round).

    Every runner is called ``warmup`` times first (compilation, allocator, caches). Round r runs the
    runners rotated by r, reversed on odd rounds, so that each takes every position in the order.
    """
    if rounds < 1 or steps < 1:
        raise ValueError(f"rounds and steps must be >= 1, got {rounds} and {steps}.")
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    sync()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        if r % 2:
            order = order[::-1]
        for name in order:
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                runners[name]()
            sync()
            times[name].append((time.perf_counter() - t0) / steps)
    return times


def speedup(base: list[float], other: list[float]) -> dict:
    """How much faster ``other`` is than ``base`` (> 1: faster): the per-round ratios base/other,
    their median and spread, and the ratio of the two medians for comparison."""
    if len(base) != len(other) or not base:
        raise ValueError("speedup needs two equally long, non-empty lists of per-round times.")
    per_round = [b / o for b, o in zip(base, other)]
    paired = statistics.median(per_round)
    from_medians = statistics.median(base) / statistics.median(other)
    spread = max(per_round) / min(per_round)
    reasons = []
    if len(per_round) > 1 and spread > NOISY_SPREAD:
        reasons.append(f"per-round ratios range {min(per_round):.3f}..{max(per_round):.3f}")
    if abs(from_medians / paired - 1) > NOISY_DISAGREE:
        reasons.append(f"ratio of medians {from_medians:.3f} vs paired {paired:.3f}")
    return {"paired": paired, "min": min(per_round), "max": max(per_round), "per_round": per_round,
            "from_medians": from_medians, "noisy": bool(reasons), "noisy_because": "; ".join(reasons)}


def fmt_speedup(s: dict) -> str:
    """``1.592x [1.41..1.72]`` (and a NOISY note when it is)."""
    text = f"{s['paired']:.3f}x [{s['min']:.3f}..{s['max']:.3f}]"
    return text + (f"  NOISY: {s['noisy_because']}" if s["noisy"] else "")


def median_spread(values: list[float]) -> tuple[float, float, float]:
    """(median, min, max)."""
    return statistics.median(values), min(values), max(values)
