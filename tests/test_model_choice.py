"""ddpm_lib.course.model_choice: which model notebooks 05-07 sample from (a named checkpoint, your run, the starter)."""

from __future__ import annotations

import pytest
import torch

from ddpm_lib import pretrained
from ddpm_lib.course import model_choice
from ddpm_lib.loading import LoadedModel
from ddpm_lib.models.unet import UNet
from ddpm_lib.training.checkpoint import model_config_dict, save_checkpoint
from ddpm_lib.training.config import TrainConfig


def _write_run(path, steps, num_classes=None, seed=0):
    """A Trainer-format checkpoint of a tiny UNet whose EMA and raw weights differ (both random)."""
    torch.manual_seed(seed)
    net = UNet.from_preset("tiny", num_classes=num_classes)
    raw = {k: v.clone() for k, v in net.state_dict().items()}
    ema = {k: (v + 0.01 * torch.randn_like(v)) if v.is_floating_point() else v.clone() for k, v in raw.items()}
    cfg = TrainConfig(preset="tiny", num_timesteps=100, steps=steps, class_conditional=num_classes is not None)
    save_checkpoint(path, {"format": "ddpm_lib.checkpoint/1", "step": steps, "model": raw, "ema": {"shadow": ema},
                           "model_config": model_config_dict(net), "train_config": cfg.to_dict(),
                           "schedule": {"name": "linear", "num_timesteps": 100}})
    return ema


@pytest.fixture
def starter(monkeypatch):
    """Stand in for the shipped weights (the registry may be empty in a checkout): record what was asked for."""
    calls = []

    real_load = model_choice.load_model

    def fake_load(source, use_ema=True, device=None):
        if not str(source).startswith(pretrained.PREFIX):
            return real_load(source, use_ema=use_ema, device=device)
        name = str(source)[len(pretrained.PREFIX):]
        calls.append(name)
        net = UNet.from_preset("tiny", num_classes=10 if name == "cifar10" else None)
        return LoadedModel(net.eval(), None, TrainConfig(preset="tiny"), 0)

    monkeypatch.setattr(model_choice, "load_model", fake_load)
    return calls


@pytest.fixture
def runs(env, tmp_path):
    env(DDPM_MODE="fast", DDPM_FAST=None, DDPM_RUNS_DIR=tmp_path / "runs", DDPM_DEVICE="cpu")
    from ddpm_lib.settings import settings

    return settings


def _same_weights(model, state):
    return all(torch.equal(model.state_dict()[k].float(), v.float()) for k, v in state.items())


def test_no_run_uses_the_starter_and_says_why(runs, starter):
    chosen = model_choice.choose_model("fashion_mnist", "fashion_mnist")
    assert chosen.kind == "starter" and starter == ["fashion_mnist"] and chosen.path is None
    assert "starter weights pretrained:fashion_mnist" in chosen.source and "no run of yours" in chosen.source


def test_a_fast_mode_toy_run_is_skipped(runs, starter):
    _write_run(runs.run_dir("fashion_mnist") / "final.pt", steps=60)
    chosen = model_choice.choose_model("fashion_mnist", "fashion_mnist")
    assert chosen.kind == "starter" and "60 training steps" in chosen.source and "fewer than 1,000" in chosen.source


def test_a_real_run_is_used_with_its_ema_weights(runs, starter):
    path = runs.run_dir("fashion_mnist") / "final.pt"
    ema = _write_run(path, steps=model_choice.MIN_STEPS)
    model, schedule, cfg = chosen = model_choice.choose_model("fashion_mnist", "fashion_mnist")
    assert chosen.kind == "own run" and chosen.path == path and starter == []
    assert _same_weights(model, ema) and schedule.num_timesteps == 100 and cfg.steps == model_choice.MIN_STEPS
    assert f"{model_choice.MIN_STEPS:,} training steps" in chosen.source


def test_a_named_checkpoint_wins_and_is_remembered_for_the_next_notebook(runs, starter, tmp_path):
    _write_run(runs.run_dir("cifar10-cond") / "final.pt", steps=5000, num_classes=10, seed=1)
    named = tmp_path / "elsewhere" / "final.pt"
    ema = _write_run(named, steps=1234, num_classes=10, seed=2)
    first = model_choice.choose_model("cifar10-cond", "cifar10", checkpoint=str(named), remember=True, conditional=True)
    assert first.kind == "checkpoint" and _same_weights(first.model, ema)
    later = model_choice.choose_model("cifar10-cond", "cifar10", conditional=True)  # notebook 07, no CHECKPOINT
    assert later.kind == "checkpoint" and later.path == named.resolve() and _same_weights(later.model, ema)
    model_choice.choose_model("cifar10-cond", "cifar10", checkpoint="", remember=True, conditional=True)  # cleared
    assert model_choice.choose_model("cifar10-cond", "cifar10", conditional=True).kind == "own run"


def test_pretrained_by_name_is_honoured_and_remembered(runs, starter):
    _write_run(runs.run_dir("cifar10-cond") / "final.pt", steps=5000, num_classes=10)
    first = model_choice.choose_model("cifar10-cond", "cifar10", checkpoint="pretrained:cifar10", remember=True,
                                      conditional=True)
    later = model_choice.choose_model("cifar10-cond", "cifar10", conditional=True)
    assert first.kind == later.kind == "starter" and starter == ["cifar10", "cifar10"]
    assert "pretrained:cifar10" in later.source


def test_conditional_notebooks_skip_an_unconditional_run_and_refuse_an_unconditional_checkpoint(runs, starter, tmp_path):
    _write_run(runs.run_dir("cifar10-cond") / "final.pt", steps=5000)
    chosen = model_choice.choose_model("cifar10-cond", "cifar10", conditional=True)
    assert chosen.kind == "starter" and "not class-conditional" in chosen.source
    named = tmp_path / "uncond.pt"
    _write_run(named, steps=5000)
    with pytest.raises(ValueError, match="class-conditional"):
        model_choice.choose_model("cifar10-cond", "cifar10", checkpoint=named, conditional=True)


def test_without_starter_weights_a_toy_run_is_used_and_said_loudly(runs, monkeypatch):
    def missing(name):
        raise pretrained.PretrainedError(f"starter model {name!r}: the file is missing")

    monkeypatch.setattr(pretrained, "path", missing)  # what a checkout without the weights files raises
    ema = _write_run(runs.run_dir("fashion_mnist") / "final.pt", steps=60)
    chosen = model_choice.choose_model("fashion_mnist", "fashion_mnist")
    assert chosen.kind == "own run" and _same_weights(chosen.model, ema)
    assert "a toy" in chosen.source and "not available" in chosen.source
    with pytest.raises(pretrained.PretrainedError):  # a conditional notebook cannot use it: the error stands
        model_choice.choose_model("fashion_mnist", "fashion_mnist", conditional=True)


def test_a_missing_named_checkpoint_names_the_file(runs, starter, tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.pt"):
        model_choice.choose_model("cifar10-cond", "cifar10", checkpoint=tmp_path / "nowhere.pt")
