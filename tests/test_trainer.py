"""Trainer: exact resume, NaN stop, early stopping, LR schedule, checkpoints, config validation.

Everything runs the "tiny" UNet on 16x16 stand-in images for a handful of steps.
"""

import math

import pytest
import torch
from torch.utils.data import TensorDataset

from ddpm_lib.loading import load_model
from ddpm_lib.settings import seed_everything
from ddpm_lib.training.checkpoint import load_checkpoint
from ddpm_lib.training.trainer import (
    NonFiniteLossError,
    TrainConfig,
    Trainer,
    lr_factor,
    read_metrics,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def standin_dataset(n=20, size=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, 1, size, size)
    for i in range(n):  # bright squares at random places, on a dark background
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        x[i, 0, r:r + 6, c:c + 6] = 1.0
    return TensorDataset(x * 2 - 1, torch.randint(0, 10, (n,), generator=g))


def config(tmp_path, **kw):
    base = dict(preset="tiny", unet={"image_size": 16}, num_timesteps=50, batch_size=8, steps=6, lr=1e-3,
                warmup_steps=2, checkpoint_every=2, log_every=1, ema_decay=0.9, out_dir=str(tmp_path / "run"),
                device="cpu", progress=False, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def test_resume_is_bit_identical(tmp_path):
    # dropout and label dropout exercise the RNG; 20 images / batch 8 = 2 batches per epoch, so epochs turn over
    kw = dict(unet={"image_size": 16, "dropout": 0.1}, class_conditional=True, label_dropout=0.3)
    ds = standin_dataset()
    seed_everything(3)  # the caller seeds the process; both runs start from the same weights
    full = Trainer(config(tmp_path / "a", **kw), dataset=ds)
    full.fit()
    seed_everything(3)
    part = Trainer(config(tmp_path / "b", **kw), dataset=ds)
    r = part.fit(max_steps=3)  # "interrupted" after 3 of 6 steps
    assert r["stopped"] == "max_steps" and not (tmp_path / "b" / "run" / "final.pt").exists()
    resumed = Trainer(config(tmp_path / "b", resume=True, **kw), dataset=ds)
    resumed.fit()
    assert resumed.step == 6
    for k, v in full.raw_model.state_dict().items():
        assert torch.equal(v, resumed.raw_model.state_dict()[k]), k
    for k, v in full.ema.shadow.items():
        assert torch.equal(v, resumed.ema.shadow[k]), k
    ma, mb = read_metrics(tmp_path / "a" / "run"), read_metrics(tmp_path / "b" / "run")
    assert list(mb["step"]) == [1, 2, 3, 4, 5, 6]
    assert (ma["loss"] == mb["loss"]).all()
    # and the resumed weights really moved away from the interrupted ones
    mid = load_checkpoint(tmp_path / "b" / "run" / "latest.pt")
    assert mid["step"] == 6


def test_checkpoint_contents_and_load_model(tmp_path):
    cfg = config(tmp_path, steps=4, sample_every=0)
    tr = Trainer(cfg, dataset=standin_dataset())
    tr.fit()
    run = tmp_path / "run"
    for name in ("latest", "best", "final"):
        p = torch.load(run / f"{name}.pt", weights_only=True)
        assert {"model", "ema", "optimizer", "lr_scheduler", "scaler", "step", "rng", "train_config", "model_config"} <= set(p)
    final = torch.load(run / "final.pt", weights_only=True)
    assert final["step"] == 4 and final["train_config"]["lr"] == 1e-3
    model, schedule, tc, _ = load_model(run / "final.pt", device="cpu")
    assert schedule.num_timesteps == 50 and tc.steps == 4 and not model.training
    for k, v in tr.ema.shadow.items():  # EMA weights by default
        assert torch.equal(model.state_dict()[k], v)
    raw, _, _, _ = load_model(run / "final.pt", use_ema=False, device="cpu")
    for k, v in tr.raw_model.state_dict().items():
        assert torch.equal(raw.state_dict()[k], v)
    # metrics: lr column follows warm-up then cosine decay, computed here independently
    m = read_metrics(run)
    for step, lr in zip(m["step"], m["lr"]):
        s = int(step)  # lr in effect for the next step, index s
        expected = 1e-3 * ((s + 1) / 2 if s < 2 else 0.5 * (1 + math.cos(math.pi * (s - 2) / 2)))
        assert lr == pytest.approx(expected, abs=1e-12)
    # a new run into the same folder must be explicit
    with pytest.raises(ValueError, match="resume=True"):
        Trainer(cfg, dataset=standin_dataset()).fit()


def test_lr_factor_shape():
    f = [lr_factor(s, 10, 110) for s in range(110)]
    assert f[0] == pytest.approx(0.1) and f[9] == pytest.approx(1.0)
    assert f[10] == pytest.approx(1.0) and f[60] == pytest.approx(0.5) and f[109] == pytest.approx(0.5 * (1 + math.cos(math.pi * 99 / 100)))
    assert all(a >= b for a, b in zip(f[10:], f[11:]))
    assert lr_factor(50, 10, 110, decay="constant") == 1.0
    assert lr_factor(109 + 1, 10, 110, min_ratio=0.1) == pytest.approx(0.1)


class NaNAfter(torch.nn.Module):
    """Wraps a model; returns NaN from the ``n``-th call on (an injected fault)."""

    def __init__(self, inner, n):
        super().__init__()
        self.inner, self.n, self.calls = inner, n, 0

    def forward(self, x, t, labels=None):
        self.calls += 1
        out = self.inner(x, t)
        return out * float("nan") if self.calls >= self.n else out


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    from ddpm_lib.models.unet import UNet

    model = NaNAfter(UNet.from_preset("tiny", image_size=16), n=4)
    tr = Trainer(config(tmp_path, checkpoint_every=1), model=model, dataset=standin_dataset())
    with pytest.raises(NonFiniteLossError) as e:
        tr.fit()
    msg = str(e.value)
    assert "step 4" in msg and "nan" in msg and "lr=" in msg and "fp32" in msg and "latest.pt" in msg
    good = load_checkpoint(tmp_path / "run" / "latest.pt")
    assert good["step"] == 3
    assert all(torch.isfinite(v).all() for v in good["model"].values() if v.is_floating_point())
    assert not (tmp_path / "run" / "final.pt").exists()


def test_huge_lr_stops_with_a_clear_message(tmp_path):
    tr = Trainer(config(tmp_path, lr=1e30, warmup_steps=0, steps=20), dataset=standin_dataset())
    with pytest.raises(NonFiniteLossError, match="lower the learning rate"):
        tr.fit()
    assert tr.step < 20


def test_early_stopping_on_plateau(tmp_path):
    # lr so small the loss cannot improve by min_delta: stop after `patience` steps
    tr = Trainer(config(tmp_path, lr=1e-12, warmup_steps=0, steps=50, early_stopping_patience=3,
                        early_stopping_min_delta=0.5), dataset=standin_dataset())
    r = tr.fit()
    assert r["stopped"] == "early_stopping" and r["step"] == 4
    assert (tmp_path / "run" / "final.pt").exists()


def test_bf16_channels_last_and_grad_accum_run(tmp_path):
    tr = Trainer(config(tmp_path, mixed_precision="bf16", grad_accum=2, steps=2, channels_last=True),
                 dataset=standin_dataset())
    r = tr.fit()
    assert r["step"] == 2 and math.isfinite(r["smoothed_loss"])
    assert tr.batches.micro_batch == 4


def test_live_loss_plot_and_plot_metrics(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from ddpm_lib.training.trainer import LiveLossPlot, plot_metrics

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.csv").write_text("step,epoch,loss,smoothed_loss,lr,grad_norm,img_per_s,elapsed_s\n"
                                     "1,0,1.0,1.0,0.1,2.0,10,1\n2,0,0.5,0.8,0.1,1.0,10,2\n")
    ax = plot_metrics(run)
    assert len(ax.lines) == 2 and list(ax.lines[0].get_ydata()) == [1.0, 0.5]
    cb = LiveLossPlot(every=1)

    class FakeTrainer:
        run_dir = run

    cb(FakeTrainer(), {})
    assert cb.calls == 1


@pytest.mark.parametrize(
    "kw, field",
    [
        (dict(lr=-1.0), "lr"),
        (dict(batch_size=10, grad_accum=3), "batch_size"),
        (dict(mixed_precision="fp8"), "mixed_precision"),
        (dict(unet={"bogus": 1}), "unet"),
        (dict(label_dropout=0.1), "label_dropout"),
        (dict(steps="10"), "steps"),
        (dict(preset="huge"), "preset"),
        (dict(ema_decay=1.0), "ema_decay"),
        (dict(dataset="npy"), "data_root"),
    ],
)
def test_config_errors_name_the_field(kw, field):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**kw)


def test_model_and_data_must_fit(tmp_path):
    with pytest.raises(ValueError, match="1x32x32"):
        Trainer(config(tmp_path, unet={}), dataset=standin_dataset())  # 32x32 model, 16x16 data


def test_tensorboard_logging_when_installed(tmp_path, monkeypatch):
    import sys
    import types

    calls = []

    class FakeWriter:  # stands in for torch.utils.tensorboard.SummaryWriter
        def __init__(self, log_dir, purge_step=None):
            calls.append(("init", log_dir))

        def add_scalar(self, tag, value, step):
            calls.append((tag, step))

        def close(self):
            calls.append(("close",))

    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    Trainer(config(tmp_path, steps=2), dataset=standin_dataset()).fit()
    assert calls[0] == ("init", str(tmp_path / "run" / "tb")) and calls[-1] == ("close",)
    assert ("train/loss", 1) in calls and ("train/lr", 2) in calls


def test_fp16_needs_cuda(tmp_path):
    with pytest.raises(ValueError, match="fp16"):
        Trainer(config(tmp_path, mixed_precision="fp16"), dataset=standin_dataset())


def test_init_from_starts_from_the_checkpoints_ema_weights(tmp_path):
    # fine-tuning: a second run starts from the first run's EMA weights (not its raw ones), step 0, fresh optimizer
    ds = standin_dataset()
    seed_everything(3)
    first = Trainer(config(tmp_path / "a"), dataset=ds)
    first.fit()
    src = tmp_path / "a" / "run" / "final.pt"
    ema_weights = load_model(src, use_ema=True, device="cpu").model.state_dict()
    raw_weights = load_model(src, use_ema=False, device="cpu").model.state_dict()
    assert any(not torch.equal(ema_weights[k], raw_weights[k]) for k in ema_weights)  # the test can tell them apart
    seed_everything(4)  # another seed: random weights would differ
    tuned = Trainer(config(tmp_path / "b", init_from=str(src), lr=1e-4), dataset=ds)
    for k, v in ema_weights.items():
        assert torch.equal(tuned.raw_model.state_dict()[k], v), k
        assert torch.equal(tuned.ema.shadow[k], v), k
    assert tuned.step == 0 and tuned.optimizer.state_dict()["state"] == {}
    tuned.fit()
    assert tuned.step == 6  # the step count starts afresh
    assert load_model(tmp_path / "b" / "run" / "final.pt", device="cpu").config.init_from == str(src)
    seed_everything(4)
    fresh = Trainer(config(tmp_path / "c"), dataset=ds)  # without init_from: random weights, not the checkpoint's
    assert any(not torch.equal(fresh.raw_model.state_dict()[k], v) for k, v in ema_weights.items())


def test_init_from_a_different_model_names_the_mismatch(tmp_path):
    ds = standin_dataset()
    first = Trainer(config(tmp_path / "a"), dataset=ds)
    first.fit(max_steps=1)
    src = tmp_path / "a" / "run" / "latest.pt"
    with pytest.raises(ValueError, match="base_channels"):
        Trainer(config(tmp_path / "b", init_from=str(src), unet={"image_size": 16, "base_channels": 4}), dataset=ds)
    with pytest.raises(ValueError, match="init_from"):
        config(tmp_path / "c", init_from=" ")
