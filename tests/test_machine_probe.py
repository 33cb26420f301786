"""ddpm_lib.course.machine_probe: the probe that scales a notebook's Time line to the student's machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ddpm_lib.course import machine_probe as mp


def test_expected_seconds_scales_all_but_the_clock():
    # a machine twice as slow: the 480 clock-bound seconds stay, the other 120 double
    assert mp.expected_seconds(600, reference_step_s=0.2, step_s=0.4, clock_s=480) == pytest.approx(720)
    assert mp.expected_seconds(90, reference_step_s=0.2, step_s=0.1) == pytest.approx(45)
    for bad in (dict(measured_s=60, reference_step_s=0.0, step_s=0.1), dict(measured_s=60, reference_step_s=0.1, step_s=0.1, clock_s=61)):
        with pytest.raises(ValueError):
            mp.expected_seconds(**bad)


def test_time_report_per_mode():
    cpu = mp.time_report("cpu", "cpu", fast_s=21, cpu_s=600, clock_s=480, fast_probe_s=0.3, cpu_probe_s=0.2, step_s=0.4)
    assert "2.00x as long as" in cpu and "about 12.0 min in cpu mode" in cpu and "8.0 min are training by the clock" in cpu
    fast = mp.time_report("fast", "cpu", fast_s=21, cpu_s=600, clock_s=480, fast_probe_s=0.2, cpu_probe_s=0.3, step_s=0.1)
    assert "2.00x faster than" in fast and "about 10 s in fast mode" in fast and "clock" not in fast  # its own probe
    gpu = mp.time_report("gpu", "cuda", fast_s=21, cpu_s=600, fast_probe_s=0.2, cpu_probe_s=0.2)  # nothing probed, nothing scaled
    assert "no measurement" in gpu and "expect" not in gpu


def test_the_probe_measures_the_workload_and_leaves_the_callers_random_state(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    small = mp.seconds_per_step(steps=5, warmup=1, batch_size=4)
    big = mp.seconds_per_step(steps=5, warmup=1, batch_size=128)
    assert torch.equal(torch.get_rng_state(), state)
    assert 0 < small < big, (small, big)  # 32x the images: a probe that did not run the step would not see it
    assert list(tmp_path.iterdir()) == []  # it writes nothing where it runs


def test_the_probe_builds_images_the_recipes_model_takes(tmp_path, monkeypatch):
    # cifar10_cpu's preset takes 3-channel images and its recipe has no unet override: the probe must read the
    # preset (a 1-channel default would be refused by the Trainer's model-fits-data check)
    monkeypatch.chdir(tmp_path)
    assert mp.seconds_per_step(recipe="cifar10_cpu", steps=1, warmup=0, batch_size=2, class_conditional=False,
                               label_dropout=0.0) > 0


@pytest.mark.parametrize("mode", ["fast", "cpu"])
def test_the_reference_probe_is_measured_as_the_notebooks_measure_theirs(mode, env, tmp_path, monkeypatch):
    """benchmarks/notebook_times.py records the probe the Time lines are scaled against: it must take the same
    steps and warm-up as the probe line of a notebook in that mode, or the ratio compares unlike medians."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from benchmarks import notebook_times as nt

    calls = []
    monkeypatch.setattr(mp, "seconds_per_step", lambda **kw: calls.append(kw) or 0.25)
    mp.time_report(mode, "cpu", fast_s=10, cpu_s=100, fast_probe_s=0.3, cpu_probe_s=0.2)
    env(DDPM_MODE=mode, DDPM_FAST=None)
    assert nt.main(["--out", str(tmp_path / "nb"), "--only", "99", "--json", str(tmp_path / "t.json")]) == 0
    assert len(calls) == 2 and calls[0] == calls[1], calls
    assert json.loads((tmp_path / "t.json").read_text())["probe_step_s"] == 0.25
