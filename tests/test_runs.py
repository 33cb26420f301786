"""ddpm_lib.training.runs and .checkpoint: slim export, the resume rules, non-finite weights, the lock, and the atomic writer."""

import errno

import pytest
import torch

from ddpm_lib import files
from ddpm_lib.files import NoSpaceError
from ddpm_lib.loading import load_model
from ddpm_lib.models.ema import EMA
from ddpm_lib.models.unet import UNet
from ddpm_lib.training import checkpoint
from ddpm_lib.training.checkpoint import (
    RESUME_MAY_CHANGE,
    RunError,
    export_slim,
    load_checkpoint,
    resume_conflicts,
    save_checkpoint,
)
from ddpm_lib.training.config import TrainConfig
from ddpm_lib.training.runs import RunFolder, RunLockedError

pytestmark = pytest.mark.usefixtures("one_thread")


def full_payload(seed=0):
    torch.manual_seed(seed)
    model = UNet.from_preset("tiny", image_size=16)
    for p in model.parameters():  # non-zero everywhere (the preset zeroes its last layer)
        p.data.normal_(0, 0.5)
    ema = EMA(model, decay=0.9)
    opt = torch.optim.AdamW(model.parameters())
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    cfg = TrainConfig(preset="tiny", unet={"image_size": 16}, num_timesteps=50)
    return checkpoint.training_payload(step=7, model=model, ema=ema, optimizer=opt, lr_scheduler=sched,
                                 scaler=torch.amp.GradScaler("cuda", enabled=False), device=torch.device("cpu"),
                                 epoch=1, batch_in_epoch=2, progress={"smoothed": 0.1}, train_config=cfg.to_dict())


def test_slim_export_loads_as_fp32_rounded_ema(tmp_path):
    payload = full_payload()
    out = export_slim(payload, tmp_path / "slim.pt")
    slim = torch.load(out, weights_only=True)
    assert set(slim) == {"format", "step", "model_config", "train_config", "schedule", "ema"}
    shadow = slim["ema"]["shadow"]
    assert all(v.dtype == torch.float16 for v in shadow.values() if v.is_floating_point())
    full = save_checkpoint(tmp_path / "full.pt", payload)
    # fp16 EMA only, against fp32 weights + fp32 EMA (no optimizer step yet, so no Adam state): about a quarter
    assert out.stat().st_size < 0.3 * full.stat().st_size
    model, schedule, cfg, _ = load_model(out, device="cpu")
    for k, v in model.state_dict().items():
        assert v.dtype == torch.float32
        want = payload["ema"]["shadow"][k].to(torch.float16).to(torch.float32)  # what fp16 can hold
        assert torch.equal(v, want), k
    assert schedule.num_timesteps == 50 and cfg.preset == "tiny"
    with pytest.raises(ValueError, match="only EMA weights"):
        load_model(out, use_ema=False, device="cpu")
    with pytest.raises(RunError, match="lacks model, optimizer"):  # cannot continue a run
        checkpoint.restore_training_state(slim, model=model, ema=EMA(model), optimizer=None, lr_scheduler=None, scaler=None,
                                    device=torch.device("cpu"), source="slim.pt")


def test_slim_export_refuses_fp16_overflow_and_nan(tmp_path):
    payload = full_payload()
    k = next(iter(payload["ema"]["shadow"]))
    payload["ema"]["shadow"][k] = payload["ema"]["shadow"][k] * 0 + 1e6  # finite in fp32, inf in fp16
    with pytest.raises(ValueError, match="non-finite weights"):
        export_slim(payload, tmp_path / "slim.pt")
    assert not (tmp_path / "slim.pt").exists()


def test_non_finite_weights_refused_for_sampling(tmp_path):
    payload = full_payload()
    k = sorted(payload["ema"]["shadow"])[3]
    payload["ema"]["shadow"][k][..., 0] = float("inf")
    save_checkpoint(tmp_path / "c.pt", payload)
    with pytest.raises(ValueError, match=rf"non-finite weights .* in '{k}'"):
        load_model(tmp_path / "c.pt", device="cpu")
    load_model(tmp_path / "c.pt", use_ema=False, device="cpu")  # the raw weights are fine


def test_resume_rules():
    a = TrainConfig().to_dict()
    assert resume_conflicts(a, {**a, "steps": 99, "device": "cpu", "sample_every": 5}) == []
    assert resume_conflicts(a, {**a, "lr": 1.0, "batch_size": 3}) == ["batch_size (128 -> 3)", "lr (0.0002 -> 1.0)"]
    assert {"steps", "resume", "out_dir"} <= RESUME_MAY_CHANGE and not {"lr", "preset", "seed"} & RESUME_MAY_CHANGE


def test_lock_names_holder_and_is_released(tmp_path):
    a, b = RunFolder(tmp_path), RunFolder(tmp_path)
    a.acquire_lock()
    with pytest.raises(RunLockedError, match=r"in use by another trainer \(pid \d+"):
        b.acquire_lock()
    a.release_lock()
    b.acquire_lock()  # free again
    b.release_lock()


def test_atomic_write_disk_full_leaves_target_untouched(tmp_path, monkeypatch):
    target = tmp_path / "f.bin"
    files.atomic_write(target, b"old")

    def full(f, data):
        f.write(data[:1])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write_all", full)
    with pytest.raises(NoSpaceError, match=f"no space left on device while writing {target}"):
        files.atomic_write(target, b"new contents")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["f.bin"]


def test_load_checkpoint_refuses_non_dicts(tmp_path):
    torch.save([1, 2], tmp_path / "l.pt")
    with pytest.raises(ValueError, match="holds a list"):
        load_checkpoint(tmp_path / "l.pt")
