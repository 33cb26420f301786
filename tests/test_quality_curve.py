"""QualityCurve: FID probes during a run, at the right steps, of the EMA model, with their time left off the clock."""

import time

import pytest
import torch

from ddpm_lib.diffusion.samplers import sample_batched
from ddpm_lib.evaluation.features import compute_features
from ddpm_lib.evaluation.metrics import fid_from_features
from ddpm_lib.evaluation.quality_curve import QualityCurve
from ddpm_lib.training.trainer import TrainConfig, Trainer

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_config(tmp_path, **kw):
    base = dict(dataset="fashion_mnist", max_items=32, preset="tiny", num_timesteps=50, batch_size=8, steps=8,
                lr=1e-3, warmup_steps=2, checkpoint_every=0, log_every=0, ema_decay=0.5, device="cpu",
                progress=False, tensorboard=False, out_dir=str(tmp_path / "run"), seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_probes_at_the_fractions_and_the_end_of_the_ema_model(tmp_path, env):
    env(DDPM_DATA_DIR=tmp_path / "data", DDPM_RUNS_DIR=tmp_path / "runs", DDPM_OFFLINE=1, DDPM_DEVICE="cpu")
    curve = QualityCurve("fashion_mnist", num=16, steps=3, at=(0.25, 0.5))
    trainer = Trainer(tiny_config(tmp_path), callbacks=[curve])
    trainer.fit()
    assert [p["step"] for p in curve.points] == [2, 4, 8]
    assert all(a["minutes"] <= b["minutes"] for a, b in zip(curve.points, curve.points[1:]))
    assert curve.floor["num"] == 16 and 0 <= curve.floor["fid"] < curve.points[-1]["fid"]

    # the last point is the FID of the final EMA model's DDIM samples from the fixed noise (recomputed here)
    model = trainer.ema_model()
    fake = sample_batched(model, trainer.schedule, 16, trainer.data_shape, generator=torch.Generator().manual_seed(0),
                          sampler="ddim", num_steps=3, progress=False)
    fid = fid_from_features(compute_features(curve.extractor.features, fake), curve.real_features)
    assert curve.points[-1]["fid"] == pytest.approx(fid, rel=1e-6)
    # and not the raw weights' (EMA decay 0.5 over 8 steps leaves them apart)
    raw = sample_batched(trainer.raw_model.eval(), trainer.schedule, 16, trainer.data_shape,
                         generator=torch.Generator().manual_seed(0), sampler="ddim", num_steps=3, progress=False)
    assert not torch.allclose(raw, fake)


def test_probe_time_is_left_off_the_clock(tmp_path, env):
    env(DDPM_DATA_DIR=tmp_path / "data", DDPM_RUNS_DIR=tmp_path / "runs", DDPM_OFFLINE=1, DDPM_DEVICE="cpu")
    trainer = Trainer(tiny_config(tmp_path))
    before = trainer.seconds_spent()
    time.sleep(0.3)
    trainer.exclude_time(0.3)
    assert trainer.seconds_spent() - before < 0.1


@pytest.mark.parametrize("kw", [dict(num=1), dict(at=(0.0,)), dict(at=(1.5,))])
def test_bad_settings_are_refused(kw):
    with pytest.raises(ValueError, match="QualityCurve"):
        QualityCurve("fashion_mnist", **kw)


def test_a_resumed_run_carries_its_curve_on(tmp_path, env):
    env(DDPM_DATA_DIR=tmp_path / "data", DDPM_RUNS_DIR=tmp_path / "runs", DDPM_OFFLINE=1, DDPM_DEVICE="cpu")
    first = QualityCurve("fashion_mnist", num=16, steps=2, at=(0.25, 0.5))
    Trainer(tiny_config(tmp_path, checkpoint_every=1), callbacks=[first]).fit(max_steps=3)  # "interrupted" at 3
    assert [p["step"] for p in first.points] == [2, 3]
    second = QualityCurve("fashion_mnist", num=16, steps=2, at=(0.25, 0.5))
    Trainer(tiny_config(tmp_path, checkpoint_every=1, resume=True), callbacks=[second]).fit()
    assert [p["step"] for p in second.points] == [2, 3, 4, 8]  # the earlier points, then 0.5 and the end
    assert second.points[:2] == first.points[:2]
    # reusing the finished run adds nothing
    third = QualityCurve("fashion_mnist", num=16, steps=2, at=(0.25, 0.5))
    Trainer(tiny_config(tmp_path, checkpoint_every=1, resume=True), callbacks=[third]).fit()
    assert third.points == second.points
