"""Atomic checkpoints under SIGKILL, weights_only loading, and config-mismatch messages."""

import multiprocessing
import os
import random
import signal
import time

import pytest
import torch

from ddpm_lib.models.unet import UNet
from ddpm_lib.training.checkpoint import (
    CheckpointMismatchError,
    get_rng_state,
    load_checkpoint,
    load_model_weights,
    model_config_dict,
    save_checkpoint,
)

BIG = torch.arange(1_000_000, dtype=torch.float32)  # ~4 MB per file, so a kill often lands mid-write


def _writer(path, ready):
    """Save checkpoints to ``path`` forever (until killed).

    Runs in a forked child: it must not start an OpenMP parallel region (not fork-safe once the parent
    has a thread pool), so it only saves tensors built in the parent and tiny new ones.
    """
    i = 0
    while True:
        i += 1
        save_checkpoint(path, {"step": i, "big": BIG, "i": torch.tensor([i]), "config": {"a": [1, 2], "i": i}})
        if i == 1:
            ready.set()


def test_sigkill_at_random_moments_leaves_a_loadable_checkpoint(tmp_path):
    # fork (not spawn): the child shares the parent's imported torch, so starting it costs nothing
    ctx = multiprocessing.get_context("fork")
    rng = random.Random(0)
    path = tmp_path / "latest.pt"
    steps_seen = []
    for _ in range(6):  # the same file, killed six times at random moments, each run starting from the last
        ready = ctx.Event()
        p = ctx.Process(target=_writer, args=(path, ready), daemon=True)
        p.start()
        try:
            assert ready.wait(timeout=60), "the writer process did not start"
            time.sleep(rng.uniform(0.0, 0.4))
        finally:
            os.kill(p.pid, signal.SIGKILL)
            p.join(timeout=30)
        assert p.exitcode == -signal.SIGKILL
        payload = load_checkpoint(path)  # must not raise
        i = payload["step"]
        assert i >= 1 and payload["config"]["i"] == i and payload["i"].item() == i
        assert torch.equal(payload["big"], BIG)  # complete, not half-written
        steps_seen.append(i)
    assert max(steps_seen) > 1  # the kills really interrupted a stream of saves


def test_weights_only_payload_with_rng_and_configs(tmp_path):
    model = UNet.from_preset("tiny")
    payload = {
        "model": model.state_dict(),
        "model_config": model_config_dict(model),
        "train_config": {"lr": 2e-4, "unet": {"dropout": 0.1}, "min_snr_gamma": None},
        "rng": get_rng_state(torch.device("cpu")),
    }
    save_checkpoint(tmp_path / "c.pt", payload)
    loaded = torch.load(tmp_path / "c.pt", weights_only=True)
    assert loaded["model_config"]["base_channels"] == model.config.base_channels
    assert loaded["train_config"]["unet"] == {"dropout": 0.1}
    assert torch.equal(loaded["rng"]["torch"], torch.get_rng_state())
    assert not list(tmp_path.glob(".*.tmp"))  # no temp file left behind


def test_config_mismatch_names_the_fields(tmp_path):
    src = UNet.from_preset("tiny", base_channels=16)
    save_checkpoint(tmp_path / "c.pt", {"model": src.state_dict(), "model_config": model_config_dict(src)})
    payload = load_checkpoint(tmp_path / "c.pt")
    other = UNet.from_preset("tiny", base_channels=8, num_res_blocks=2)
    with pytest.raises(CheckpointMismatchError) as e:
        load_model_weights(other, payload, use_ema=False)
    msg = str(e.value)
    assert "base_channels=16" in msg and "base_channels=8" in msg and "num_res_blocks" in msg
    assert "channel_mults" not in msg and "image_size" not in msg  # only the differing fields
    same = UNet.from_preset("tiny", base_channels=16)
    load_model_weights(same, payload, use_ema=False)
    for k, v in src.state_dict().items():
        assert torch.equal(same.state_dict()[k], v)


def test_missing_and_corrupt_files_give_clear_errors(tmp_path):
    save_checkpoint(tmp_path / "best.pt", {"step": 1})
    with pytest.raises(FileNotFoundError, match="best.pt"):
        load_checkpoint(tmp_path / "latest.pt")
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not read checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
