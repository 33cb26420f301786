"""ddpm_lib.settings: the FAST switch, folders, device choice, pick/run_dir, and seeding."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
import torch

from ddpm_lib import settings as settings_mod


@pytest.mark.parametrize("value, fast", [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False), (" off ", False)])
def test_fast_values(env, value, fast):
    s = env(DDPM_FAST=value, DDPM_DEVICE="cpu")
    assert s.fast is fast
    assert settings_mod.settings == s  # reload_settings updates the module's object (and returns a snapshot)


@pytest.mark.parametrize("bad", ["2", "fast", "yes please"])
def test_fast_bad_value_is_a_clear_error(env, bad):
    with pytest.raises(ValueError, match=r"DDPM_FAST=.*DDPM_FAST=1.*DDPM_FAST=0"):
        env(DDPM_FAST=bad)


def test_default_mode_gpu_iff_cuda(env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    s = env(DDPM_FAST=None, DDPM_MODE=None, DDPM_DEVICE=None)
    assert s.mode == "cpu" and not s.fast and s.device.type == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # pretend: nothing touches the GPU
    s = env(DDPM_FAST=None, DDPM_MODE=None, DDPM_DEVICE=None)
    assert s.device.type == "cuda" and s.mode == "gpu"
    s = env(DDPM_FAST="1")
    assert s.mode == "fast" and s.fast  # the alias wins over the device
    s = env(DDPM_FAST="0")
    assert s.mode == "gpu"  # "not fast" is the default mode


@pytest.mark.parametrize("value", ["fast", "cpu", "gpu", " CPU "])
def test_mode_values(env, value, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # gpu mode without the warning
    s = env(DDPM_MODE=value, DDPM_FAST="1", DDPM_DEVICE=None)  # DDPM_MODE wins over the alias
    assert s.mode == value.strip().lower()
    assert s.recipe("cifar10") == f"cifar10_{s.mode}"


def test_mode_bad_value_is_a_clear_error(env):
    with pytest.raises(ValueError, match=r"DDPM_MODE='turbo'.*fast, cpu or gpu"):
        env(DDPM_MODE="turbo")


def test_gpu_mode_without_gpu_warns_with_estimate(env, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match=r"DDPM_MODE=gpu without a CUDA GPU.*hours"):
        s = env(DDPM_MODE="gpu", DDPM_DEVICE="cpu")
    assert s.mode == "gpu"


def test_pick_per_mode(env):
    s = env(DDPM_MODE="cpu", DDPM_DEVICE="cpu")
    assert s.pick(full=128, fast=16, cpu=64) == 64 and s.pick(full=128, fast=16) == 128
    s = env(DDPM_MODE="fast")
    assert s.pick(full=128, fast=16, cpu=64) == 16


def test_device_override(env, monkeypatch):
    assert env(DDPM_DEVICE="cpu").device == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="DDPM_DEVICE"):
        env(DDPM_DEVICE="cuda")


def test_fast_sizes_are_smaller(env):
    """Fast mode shrinks the display sizes here, and the training sizes through its recipe (which owns them:
    Settings holds none of T, batch, data size or UNet)."""
    from ddpm_lib.training.config import TrainConfig

    full, fast = env(DDPM_MODE="cpu", DDPM_DEVICE="cpu"), env(DDPM_MODE="fast", DDPM_DEVICE="cpu")
    for field in ("sample_steps", "num_samples"):
        assert getattr(fast, field) < getattr(full, field), field
    assert not {"num_timesteps", "batch_size", "max_train_images", "unet_preset"} & {f.name for f in dataclasses.fields(full)}
    for dataset in ("fashion_mnist", "cifar10"):
        cpu_cfg, fast_cfg = (TrainConfig.from_recipe(s.recipe(dataset)) for s in (full, fast))
        for field in ("num_timesteps", "batch_size", "steps"):
            assert getattr(fast_cfg, field) < getattr(cpu_cfg, field), (dataset, field)
        assert cpu_cfg.max_items is None and fast_cfg.max_items == 512


def test_data_dir_and_runs_dir_overrides(env, tmp_path):
    s = env(DDPM_DATA_DIR=tmp_path / "d", DDPM_RUNS_DIR=tmp_path / "r", DDPM_DEVICE="cpu")
    assert s.data_dir == (tmp_path / "d").resolve() and s.runs_dir == (tmp_path / "r").resolve()
    s = env(DDPM_DATA_DIR=None, DDPM_RUNS_DIR=None)
    root = settings_mod._repo_root()
    assert root is not None and s.data_dir == root / "data" and s.runs_dir == root / "runs"


def test_pick_and_run_dir(env, tmp_path, monkeypatch):
    s = env(DDPM_FAST=1, DDPM_RUNS_DIR=tmp_path, DDPM_DEVICE="cpu")
    assert s.pick(full=128, fast=16) == 16
    assert s.run_dir("fashion_mnist") == tmp_path.resolve() / "fashion_mnist-fast"
    s = env(DDPM_FAST=None, DDPM_MODE="cpu")
    assert s.run_dir("fashion_mnist") == tmp_path.resolve() / "fashion_mnist-cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    s = env(DDPM_MODE="gpu", DDPM_DEVICE=None)
    assert s.pick(full=128, fast=16) == 128
    assert s.run_dir("fashion_mnist") == tmp_path.resolve() / "fashion_mnist"
    assert "mode=gpu" in s.banner() and str(s.data_dir) in s.banner()


def draws(g):
    return (
        random.random(),
        float(np.random.rand()),
        torch.rand(3).tolist(),
        torch.randn(2, generator=g).tolist(),
    )


def test_seed_everything_reproducible():
    g1 = settings_mod.seed_everything(123)
    assert isinstance(g1, torch.Generator)
    a = draws(g1)
    g2 = settings_mod.seed_everything(123)
    b = draws(g2)
    assert a == b
    c = draws(settings_mod.seed_everything(124))
    assert c != a
    # the returned generator is independent of the global stream: same values whatever ran before
    g3 = settings_mod.seed_everything(123)
    torch.rand(100)
    assert torch.randn(2, generator=g3).tolist() == a[3]
    assert torch.are_deterministic_algorithms_enabled()


def test_seed_everything_rejects_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        settings_mod.seed_everything(-1)
    with pytest.raises(ValueError, match="seed"):
        settings_mod.seed_everything(1.5)


def test_reload_reaches_earlier_imports(env):
    from ddpm_lib.settings import settings as imported_before  # as a notebook's first cell does

    first = env(DDPM_FAST="1", DDPM_DEVICE="cpu").fast
    second = env(DDPM_FAST="0", DDPM_DEVICE="cpu").fast
    assert first != second  # the environment really changed the setting
    assert imported_before.fast == second and imported_before is settings_mod.settings
