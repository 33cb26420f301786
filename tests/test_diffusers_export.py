"""Sharing a trained model in Hugging Face diffusers' format (ddpm_lib.models.diffusers_compat.save_diffusers) and
loading it back (load_diffusers), offline. diffusers is the independent reference: its own DDPMPipeline
loads the folder, and its UNet and scheduler must give what ddpm_lib's model and schedule give."""

from __future__ import annotations

import json

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

from ddpm_lib.loading import load_model  # noqa: E402
from ddpm_lib.models.diffusers_compat import load_diffusers, save_diffusers  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    model, schedule, cfg, _ = load_model("pretrained:fashion_mnist", device="cpu")  # the starter weights: a real model
    folder = save_diffusers(model, schedule, tmp_path_factory.mktemp("export") / "my-ddpm",
                            prediction_type=cfg.prediction_type)
    return model, schedule, cfg, folder


def test_diffusers_loads_the_folder_and_computes_what_ddpm_lib_computes(exported, one_thread):
    model, schedule, cfg, folder = exported
    pipe = diffusers.DDPMPipeline.from_pretrained(folder, low_cpu_mem_usage=False)
    assert isinstance(pipe.scheduler, diffusers.DDPMScheduler)
    assert pipe.scheduler.config.prediction_type == "epsilon" == cfg.prediction_type
    assert pipe.scheduler.config.num_train_timesteps == schedule.num_timesteps
    torch.testing.assert_close(pipe.scheduler.alphas_cumprod, schedule.alpha_bars.float(), rtol=1e-5, atol=1e-7)
    g = torch.Generator().manual_seed(0)
    size = model.config.image_size
    x = torch.randn(3, model.config.in_channels, size, size, generator=g)
    t = torch.tensor([0, 400, schedule.num_timesteps - 1])
    with torch.no_grad():
        ours = model(x, t)
        theirs = pipe.unet(x, t).sample
    torch.testing.assert_close(theirs, ours, rtol=1e-4, atol=1e-4)


def test_load_diffusers_gives_back_the_same_model(exported, one_thread):
    model, schedule, cfg, folder = exported
    assert any(".qkv." in k for k in model.state_dict())  # the fused attention projection is split and re-joined
    back, schedule_back, prediction = load_diffusers(folder)
    assert prediction == cfg.prediction_type and back.config == model.config
    mine, theirs = model.state_dict(), back.state_dict()
    assert mine.keys() == theirs.keys()
    for k in mine:
        assert torch.equal(mine[k].float(), theirs[k]), k
    assert torch.equal(schedule_back.betas, schedule.betas.cpu())


def test_a_folder_that_is_not_an_export_or_whose_betas_changed_is_refused(exported, tmp_path):
    _, _, _, folder = exported
    with pytest.raises(FileNotFoundError, match="ddpm_lib.json"):
        load_diffusers(tmp_path)
    info = json.loads((folder / "ddpm_lib.json").read_text())
    changed = tmp_path / "changed"
    changed.mkdir()
    for sub in ("unet", "scheduler"):
        (changed / sub).symlink_to(folder / sub)
    info["schedule"]["name"] = "cosine"
    (changed / "ddpm_lib.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="betas"):
        load_diffusers(changed)
    with pytest.raises(ValueError, match="prediction_type"):
        save_diffusers(*load_model("pretrained:fashion_mnist", device="cpu")[:2], tmp_path / "x", prediction_type="eps")
