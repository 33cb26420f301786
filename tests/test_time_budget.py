"""The time budget (TrainConfig.minutes): a run stops when its minutes are spent, and its cosine decay follows the
steps the machine actually manages, so a slow laptop ends at the same learning rate as a fast one.

The clock is replaced by a fake one that advances a fixed number of seconds per optimizer step, so the expected
result is known in closed form: a run with a budget of B seconds at s seconds per step is the step-based run of
B / s steps (``lr_curve`` of that config is the independent reference). One test uses the real clock.
"""

import math
import subprocess
import sys

import pytest
import torch
from torch.utils.data import TensorDataset

from ddpm_lib.settings import seed_everything
from ddpm_lib.training import trainer as trainer_mod
from ddpm_lib.training.callbacks import Callback
from ddpm_lib.training.checkpoint import load_checkpoint
from ddpm_lib.training.trainer import TrainConfig, Trainer, lr_curve

pytestmark = pytest.mark.usefixtures("one_thread")


def squares(n=16, size=16):
    g = torch.Generator().manual_seed(0)
    x = -torch.ones(n, 1, size, size)
    for i in range(n):
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        x[i, 0, r:r + 6, c:c + 6] = 1.0
    return TensorDataset(x, torch.zeros(n, dtype=torch.long))


def config(tmp_path, **kw):
    base = dict(preset="tiny", unet={"image_size": 16}, num_timesteps=50, batch_size=8, steps=1000, lr=1e-3,
                warmup_steps=3, min_lr_ratio=0.1, checkpoint_every=0, log_every=0, ema_decay=0.9,
                out_dir=str(tmp_path / "run"), device="cpu", progress=False, tensorboard=False, seed=0)
    base.update(kw)
    return TrainConfig(**base)


class FakeClock:
    """perf_counter for the trainer module that moves only while a training step runs (by ``seconds_per_step``,
    before the step's own lr update reads it, as a real step's compute precedes its lr update)."""

    def __init__(self, monkeypatch, seconds_per_step):
        self.now = 1000.0
        fake_time = type("T", (), {"perf_counter": staticmethod(lambda: self.now)})
        monkeypatch.setattr(trainer_mod, "time", fake_time)
        step = Trainer.train_step

        def timed_step(trainer, batches):
            self.now += seconds_per_step
            return step(trainer, batches)

        monkeypatch.setattr(Trainer, "train_step", timed_step)


class LrLog(Callback):
    """Records the learning rate each optimizer step used."""

    def __init__(self):
        self.lrs = []

    def on_step_end(self, trainer, loss):
        self.lrs.append(trainer.lr_used)


@pytest.fixture
def lr_log(monkeypatch):
    log = LrLog()
    step = Trainer.train_step

    def remember_lr(trainer, batches):
        trainer.lr_used = trainer.optimizer.param_groups[0]["lr"]
        return step(trainer, batches)

    monkeypatch.setattr(Trainer, "train_step", remember_lr)
    return log


@pytest.mark.parametrize("seconds_per_step", [1.0, 2.5])
def test_a_budget_run_is_the_step_run_this_machine_can_afford(tmp_path, monkeypatch, lr_log, seconds_per_step):
    FakeClock(monkeypatch, seconds_per_step)
    budget_s = 30.0
    seed_everything(0)
    trainer = Trainer(config(tmp_path, minutes=budget_s / 60), dataset=squares(), callbacks=[lr_log])
    result = trainer.fit()
    affordable = math.ceil(budget_s / seconds_per_step)  # the first step at which the budget is spent
    assert result["stopped"] == "time_budget" and trainer.step == affordable
    assert result["seconds"] == pytest.approx(affordable * seconds_per_step)
    reference = lr_curve(config(tmp_path, steps=affordable))  # the step-based run of that many steps
    assert lr_log.lrs == pytest.approx(reference.tolist(), rel=1e-9)
    assert lr_log.lrs[-1] < 0.15 * 1e-3  # the decay is near its floor (min_lr_ratio * lr) when the budget ends
    assert (tmp_path / "run" / "final.pt").exists()  # a run that spent its budget is finished, not interrupted
    assert load_checkpoint(tmp_path / "run" / "final.pt")["train_config"]["minutes"] == pytest.approx(0.5)


def test_steps_still_cap_a_budget_run(tmp_path, monkeypatch, lr_log):
    FakeClock(monkeypatch, 1.0)
    trainer = Trainer(config(tmp_path, minutes=10.0, steps=12), dataset=squares(), callbacks=[lr_log])
    assert trainer.fit()["stopped"] == "completed" and trainer.step == 12
    assert lr_log.lrs == pytest.approx(lr_curve(config(tmp_path, steps=12)).tolist(), rel=1e-9)


def test_a_resumed_run_keeps_its_clock(tmp_path, monkeypatch):
    """Seconds spent before an interruption count against the budget: 8 + 12 steps, not 8 + 20."""
    FakeClock(monkeypatch, 1.0)
    first = Trainer(config(tmp_path, minutes=20 / 60, checkpoint_every=1), dataset=squares())
    assert first.fit(max_steps=8)["stopped"] == "max_steps"
    second = Trainer(config(tmp_path, minutes=20 / 60, checkpoint_every=1, resume=True), dataset=squares())
    result = second.fit()
    assert result["stopped"] == "time_budget" and second.step == 20


def test_the_real_clock_stops_a_run_within_its_budget(tmp_path):
    budget_s = 3.0
    trainer = Trainer(config(tmp_path, minutes=budget_s / 60, steps=100_000), dataset=squares())
    result = trainer.fit()
    assert result["stopped"] == "time_budget" and 0 < trainer.step < 100_000
    assert budget_s <= result["seconds"] < budget_s + 2.0  # at most one step and the final save past it


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_a_bad_budget_is_refused_naming_the_field(tmp_path, bad):
    with pytest.raises(ValueError, match="minutes"):
        config(tmp_path, minutes=bad)


def test_cli_refuses_a_bad_budget_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ddpm_lib", "train", "--recipe", "fashion_mnist_fast", "--minutes", "0",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "minutes" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
