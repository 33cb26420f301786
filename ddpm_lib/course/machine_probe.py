"""How long a notebook will take on *this* machine: a few timed training steps, scaled against the machine
the course's **Time:** lines were measured on.

Every Time line is one measurement on one machine (``benchmarks/notebook_times.json``: its date, CPU, whether
bf16 was native). Machines of one kind differ by up to 2x, and a CPU without native bf16 trains in fp32,
several times slower. So the notebooks that train or sample for minutes (04-08) start with a probe:

1. :func:`seconds_per_step` times a few steps of the ``fashion_mnist_cpu`` recipe's training step (its UNet,
   its batch, the precision this machine picks, the Trainer's own ``train_step`` on random images) and takes
   the median. The same probe ran on the reference machine when the Time lines were measured
   (``probe_step_s`` in the time table).
2. :func:`expected_seconds` scales the notebook's measured time by the ratio of the two probes, except the
   part a clock bounds (a recipe's ``minutes``), which takes as long on every machine:
   ``expected = clock + (measured - clock) * here / reference``.

It is an estimate from one workload (training steps of one small UNet); sampling and data loading scale
roughly, not exactly, like it.
"""

from __future__ import annotations

import statistics
import tempfile
import time

import torch
from torch.utils.data import TensorDataset

from ddpm_lib.progress import format_duration
from ddpm_lib.training.config import TrainConfig, model_field
from ddpm_lib.training.trainer import Trainer

PROBE_RECIPE = "fashion_mnist_cpu"


def seconds_per_step(steps: int = 4, warmup: int = 2, recipe: str = PROBE_RECIPE, **overrides) -> float:
    """Median wall time of one training step of ``recipe`` (any TrainConfig field in ``overrides``) on the CPU,
    after ``warmup`` untimed steps.

    Runs the Trainer's own step (loss, backward, clipping, AdamW, EMA) on random images in memory, in a
    temporary run folder that is never written; the caller's random state is left as it was."""
    if steps < 1 or warmup < 0:
        raise ValueError(f"steps must be >= 1 and warmup >= 0, got steps={steps}, warmup={warmup}.")
    with tempfile.TemporaryDirectory() as tmp, torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        cfg = TrainConfig.from_recipe(recipe, out_dir=tmp, device="cpu", minutes=None, progress=False,
                                      tensorboard=False, sample_every=0, checkpoint_every=0, **overrides)
        size, channels = int(model_field(cfg, "image_size")), int(model_field(cfg, "in_channels"))
        images = torch.rand(2 * cfg.batch_size, channels, size, size) * 2 - 1
        trainer = Trainer(cfg, dataset=TensorDataset(images))
        batches = iter(trainer.batches)
        for _ in range(warmup):
            trainer.train_step(batches)
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            trainer.train_step(batches)
            times.append(time.perf_counter() - start)
    return statistics.median(times)


#: (steps, warmup) of the probe in each mode: fast mode checks code in seconds, so its probe is shorter. The
#: reference machine's probe (benchmarks/notebook_times.py) is measured the same way, through :func:`probe`.
PROBE_STEPS = {"fast": (2, 1), "cpu": (4, 2)}


def probe(mode: str) -> float:
    """:func:`seconds_per_step` with the steps and warm-up of ``mode`` (``fast`` or ``cpu``)."""
    steps, warmup = PROBE_STEPS[mode]
    return seconds_per_step(steps=steps, warmup=warmup)


def expected_seconds(measured_s: float, reference_step_s: float, step_s: float, clock_s: float = 0.0) -> float:
    """``measured_s`` (a notebook's time on the reference machine) scaled to a machine whose probe took ``step_s``
    against ``reference_step_s`` there; the first ``clock_s`` seconds are bounded by a clock and do not scale."""
    if min(measured_s, reference_step_s, step_s) <= 0 or not 0 <= clock_s <= measured_s:
        raise ValueError(f"need positive times and 0 <= clock_s <= measured_s, got measured_s={measured_s}, "
                         f"reference_step_s={reference_step_s}, step_s={step_s}, clock_s={clock_s}.")
    return clock_s + (measured_s - clock_s) * step_s / reference_step_s


def time_report(mode: str, device: torch.device | str, *, fast_s: float, cpu_s: float, fast_probe_s: float,
                cpu_probe_s: float, clock_s: float = 0.0, step_s: float | None = None) -> str:
    """One line for the top of a notebook: what its Time line means on this machine.

    ``fast_s`` / ``cpu_s``: the notebook's measured times in fast and cpu mode on the reference machine, whose
    probe took ``fast_probe_s`` / ``cpu_probe_s`` when each mode was measured; ``clock_s``: the part of the
    cpu-mode time a clock bounds. ``step_s`` is measured here (:func:`seconds_per_step`) when not given. In gpu
    mode nothing is probed: the Time lines hold no GPU measurement."""
    if mode not in ("fast", "cpu") or torch.device(device).type != "cpu":
        return (f"{mode} mode on {torch.device(device).type}: the Time line holds no measurement for this setup, "
                "so there is nothing to scale.")
    if step_s is None:
        step_s = probe(mode)
    measured, clock, reference = (cpu_s, clock_s, cpu_probe_s) if mode == "cpu" else (fast_s, 0.0, fast_probe_s)
    ratio = step_s / reference
    expected = expected_seconds(measured, reference, step_s, clock)
    pace = f"{ratio:.2f}x as long as" if ratio >= 1 else f"{1 / ratio:.2f}x faster than"
    line = (f"This machine's training step ({step_s:.3f} s) takes {pace} on the Time line's machine "
            f"({reference:.3f} s): expect about {format_duration(expected)} in {mode} mode "
            f"(measured there: {format_duration(measured)})")
    if clock:
        line += f", of which {format_duration(clock)} are training by the clock, the same everywhere"
    return line + "."
