"""torchrun with 2 CPU processes (gloo): both ranks end with identical weights and the loss goes down."""

import json
import os
import subprocess
import sys

from ddpm_lib.training.monitor import read_metrics


def test_two_process_gloo_run(tmp_path, squares_npy):
    squares_npy(64)
    run = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "DDPM_FAST": "1", "DDPM_DEVICE": "cpu"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "ddpm_lib", "train", "--preset", "tiny", "--dataset", "npy", "--data-root", str(tmp_path / "squares.npy"),
           "--unet", '{"image_size": 16}', "--out", str(run), "--steps", "20", "--batch-size", "16",
           "--num-timesteps", "50", "--lr", "3e-3", "--warmup-steps", "2", "--log-every", "1",
           "--checkpoint-every", "0", "--progress", "false", "--device", "cpu"]
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    info = json.loads((run / "distributed.json").read_text())
    assert info["world_size"] == 2 and info["backend"] == "gloo"
    assert len(set(info["weight_sha256"])) == 1  # both ranks hold bit-identical weights
    m = read_metrics(run)
    assert len(m["loss"]) == 20  # rank 0 only wrote metrics (one row per step)
    print("losses", m["loss"].round(3).tolist())
    assert m["loss"][-5:].mean() < 0.8 * m["loss"][:5].mean()
    assert (run / "final.pt").exists() and not list(run.glob("*rank*"))
