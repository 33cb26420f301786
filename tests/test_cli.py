"""python -m ddpm_lib train/sample: one-line errors and a tiny end-to-end run."""

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lib.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def run_main(argv, capsys):
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors and --help
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--out", "x", "--bogus", "1"], "unrecognized arguments: --bogus"),
        (["train", "--out", "x", "--steps", "ten"], "--steps: 'ten' is not an int"),
        (["train", "--out", "x", "--lr", "-1"], "TrainConfig.lr"),
        (["train", "--out", "x", "--mixed-precision", "fp8"], "TrainConfig.mixed_precision"),
        (["train", "--out", "x", "--unet", "[1]"], "--unet"),
        (["sample", "--ckpt", "does/not/exist.pt"], "checkpoint not found"),
        (["sample", "--ckpt", "x.pt", "--num", "many"], "--num: invalid int value"),
        (["sample", "--ckpt", "x.pt", "--sampler", "euler"], "invalid choice"),
        (["fly"], "invalid choice"),
    ],
)
def test_errors_are_one_line(argv, needle, capsys):
    rc, out, err = run_main(argv, capsys)
    assert rc == 2
    assert err.count("\n") == 1 and needle in err, err
    assert "Traceback" not in err


def test_help_for_each_command(capsys):
    for cmd in ("train", "sample"):
        rc, out, _ = run_main([cmd, "--help"], capsys)
        assert rc == 0 and "--" in out
    rc, out, _ = run_main(["train", "--help"], capsys)
    assert "--checkpoint-every" in out and "--batch-size" in out and "--out" in out


def test_real_process_exit_code_and_one_line(tmp_path):
    p = subprocess.run([sys.executable, "-m", "ddpm_lib", "sample", "--ckpt", str(tmp_path / "none.pt")],
                       capture_output=True, text=True, env={"OMP_NUM_THREADS": "1", "PATH": ""}, cwd=tmp_path)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr


def test_train_then_sample_end_to_end(tmp_path, capsys):
    rng = np.random.default_rng(0)
    imgs = np.zeros((24, 16, 16), np.uint8)
    for i in range(24):  # a bright square on black
        r, c = rng.integers(0, 10, 2)
        imgs[i, r:r + 6, c:c + 6] = 255
    np.save(tmp_path / "squares.npy", imgs)
    run = tmp_path / "runs" / "tiny"
    argv = ["train", "--preset", "tiny", "--dataset", "npy", "--data-root", str(tmp_path / "squares.npy"),
            "--unet", '{"image_size": 16}', "--out", str(run), "--steps", "4", "--checkpoint-every", "2",
            "--batch-size", "8", "--num-timesteps", "50", "--warmup-steps", "1", "--log-every", "1",
            "--progress", "false", "--device", "cpu", "--sample-every", "4", "--num-samples", "4", "--sample-steps", "3"]
    rc, out, err = run_main(argv, capsys)
    assert rc == 0, err
    for name in ("latest.pt", "best.pt", "final.pt", "metrics.csv", "config.json", "samples/step_0000004.png"):
        assert (run / name).exists(), name
    header = (run / "metrics.csv").read_text().splitlines()[0].split(",")
    assert "loss" in header
    # again without --resume: refused in one line
    rc, _, err = run_main(argv, capsys)
    assert rc == 2 and "resume" in err and err.count("\n") == 1
    # resume to 6 steps
    rc, _, err = run_main([*argv[:-12], "--steps", "6", "--resume", "--progress", "false", "--device", "cpu"], capsys)
    assert rc == 0, err
    assert torch.load(run / "final.pt", weights_only=True)["step"] == 6

    grid = tmp_path / "grid.png"
    rc, out, err = run_main(["sample", "--ckpt", str(run / "final.pt"), "--num", "6", "--sampler", "ddim", "--steps", "3",
                             "--out", str(grid), "--out-dir", str(tmp_path / "pngs"), "--device", "cpu", "--seed", "1"],
                            capsys)
    assert rc == 0, err
    assert Image.open(grid).size[0] > 16
    pngs = sorted((tmp_path / "pngs").glob("*.png"))
    assert len(pngs) == 6 and Image.open(pngs[0]).size == (16, 16)
    rc, _, err = run_main(["sample", "--ckpt", str(run / "final.pt"), "--class", "1", "--device", "cpu"], capsys)
    assert rc == 2 and "unconditional" in err


def test_config_file_and_overrides(tmp_path):
    import json

    from ddpm_lib.cli import build_parser, build_train_config

    (tmp_path / "c.json").write_text(json.dumps({"preset": "tiny", "steps": 7, "lr": 0.001, "unet": {"dropout": 0.0}}))
    args = build_parser().parse_args(["train", "--config", str(tmp_path / "c.json"), "--steps", "9", "--out", "r",
                                      "--min-snr-gamma", "none", "--ema_warmup", "false", "--resume"])
    cfg = build_train_config(args)
    assert (cfg.preset, cfg.steps, cfg.lr, cfg.unet, cfg.out_dir) == ("tiny", 9, 0.001, {"dropout": 0.0}, "r")
    assert cfg.min_snr_gamma is None and cfg.ema_warmup is False and cfg.resume is True


def test_evaluate_subcommand_is_registered(capsys):
    rc, out, _ = run_main(["evaluate", "--help"], capsys)
    assert rc == 0 and "--ckpt" in out
