"""A table of bad inputs to ``python -m ddpm_lib train | sample | evaluate``: options, config files,
datasets and checkpoints. Each must exit with status 2 and one line on stderr that names the field or
file, with no traceback, and must leave every file that was there before untouched."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import call_main, squares, train_args, tree_hashes

from ddpm_lib.cli import main
from ddpm_lib.training.checkpoint import load_checkpoint, save_checkpoint
from ddpm_lib.training.runs import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")


class Evil:
    """Unpickling this would create a file: weights_only=True must refuse it."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))




@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Files for every case: datasets (good and broken), a finished run, checkpoints (good and broken)."""
    w = tmp_path_factory.mktemp("bad_inputs")
    imgs = squares(24)
    np.save(w / "squares.npy", imgs)
    np.save(w / "four.npy", imgs[:4])  # fewer than one batch of 8
    np.save(w / "zero.npy", imgs[:0])
    (w / "empty.npy").write_bytes(b"")
    (w / "text.npy").write_text("not an array")
    np.save(w / "nan_images.npy", np.full((24, 16, 16), np.nan, np.float32))
    np.savez(w / "short_labels.npz", images=imgs, labels=np.arange(20) % 3)
    np.savez(w / "neg_labels.npz", images=imgs, labels=-np.ones(24, np.int64))
    np.savez(w / "float_labels.npz", images=imgs, labels=np.full(24, 0.5))
    np.savez(w / "no_images.npz", labels=np.zeros(24))
    np.savez(w / "ten_classes.npz", images=imgs, labels=np.arange(24) % 10)
    from PIL import Image

    for name, n in (("good_folder", 3), ("corrupt_folder", 3)):
        (w / name / "a").mkdir(parents=True)
        for i in range(n):
            Image.fromarray(imgs[i]).save(w / name / "a" / f"{i}.png")
    (w / "corrupt_folder" / "a" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    (w / "empty_folder" / "a").mkdir(parents=True)
    (w / "a_file").write_text("not a folder")
    (w / "bad.json").write_text("{not json")
    (w / "list.json").write_text("[1, 2]")
    (w / "unknown.json").write_text(json.dumps({"foo": 1}))
    (w / "nan.json").write_text('{"lr": NaN}')

    assert main(train_args(w, out="done")) == 0  # a finished run: latest, best, final, metrics.csv
    done = w / "done"
    (w / "nolatest").mkdir()
    for name in ("final.pt", "best.pt", "metrics.csv", "config.json"):
        shutil.copy(done / name, w / "nolatest" / name)
    payload = load_checkpoint(done / "final.pt")
    bad = {**payload, "ema": {**payload["ema"], "shadow": dict(payload["ema"]["shadow"])}}
    k = next(iter(bad["ema"]["shadow"]))
    bad["ema"]["shadow"][k] = torch.full_like(bad["ema"]["shadow"][k], float("nan"))
    save_checkpoint(w / "nan.pt", bad)
    save_checkpoint(w / "future.pt", {**payload, "format": "ddpm_lib.checkpoint/99"})
    save_checkpoint(w / "nocfg.pt", {"step": 1})
    torch.save(torch.zeros(3), w / "tensor.pt")
    torch.save({"x": Evil(str(w / "PWNED"))}, w / "evil.pt")
    (w / "garbage.pt").write_bytes(b"not a checkpoint at all")
    (w / "zero.pt").write_bytes(b"")
    full = (w / "done" / "final.pt").read_bytes()
    (w / "truncated.pt").write_bytes(full[: len(full) // 2])
    return w


_snapshot = tree_hashes


def run_main(argv, capsys):
    return call_main(main, argv, capsys)


T = train_args  # shorter rows below


def _ck(name):
    return lambda w: ["sample", "--ckpt", str(w / name), "--device", "cpu", "--num", "2", "--steps", "2",
                      "--out", str(w / "out.png")]


def _s(*extra):
    return lambda w: ["sample", "--ckpt", str(w / "done" / "final.pt"), "--device", "cpu", "--num", "2", "--steps", "2",
                      "--out", str(w / "out.png"), *extra]


def _e(*extra, ckpt="done/final.pt"):
    return lambda w: ["evaluate", "--ckpt", str(w / ckpt), "--device", "cpu", "--num", "4", "--steps", "2", *extra]


CASES = [
    # --- train: options ---------------------------------------------------------------------------
    ("lr-nan", lambda w: T(w, "--lr", "nan"), "TrainConfig.lr"),
    ("lr-inf", lambda w: T(w, "--lr", "inf"), "TrainConfig.lr"),
    ("lr-negative", lambda w: T(w, "--lr", "-1"), "TrainConfig.lr"),
    ("weight-decay-nan", lambda w: T(w, "--weight-decay", "nan"), "TrainConfig.weight_decay"),
    ("grad-clip-nan", lambda w: T(w, "--grad-clip", "nan"), "TrainConfig.grad_clip"),
    ("min-snr-inf", lambda w: T(w, "--min-snr-gamma", "inf"), "TrainConfig.min_snr_gamma"),
    ("es-delta-nan", lambda w: T(w, "--early-stopping-min-delta", "nan"), "TrainConfig.early_stopping_min_delta"),
    ("ema-decay-1", lambda w: T(w, "--ema-decay", "1"), "TrainConfig.ema_decay"),
    ("label-dropout-unconditional", lambda w: T(w, "--label-dropout", "0.5"), "TrainConfig.label_dropout"),
    ("steps-0", lambda w: T(w, "--steps", "0"), "TrainConfig.steps"),
    ("steps-word", lambda w: T(w, "--steps", "ten"), "--steps: 'ten' is not an int"),
    ("batch-0", lambda w: T(w, "--batch-size", "0"), "TrainConfig.batch_size"),
    ("batch-accum", lambda w: T(w, "--batch-size", "9", "--grad-accum", "2"), "TrainConfig.batch_size"),
    ("preset", lambda w: T(w, "--preset", "huge"), "TrainConfig.preset"),
    ("dataset-name", lambda w: T(w, "--dataset", "imagenet"), "TrainConfig.dataset"),
    ("schedule", lambda w: T(w, "--schedule", "cubic"), "TrainConfig.schedule"),
    ("sampler", lambda w: T(w, "--sampler", "euler"), "TrainConfig.sampler"),
    ("precision", lambda w: T(w, "--mixed-precision", "fp8"), "TrainConfig.mixed_precision"),
    ("device-name", lambda w: T(w, "--device", "quantum"), "device='quantum': not a device name"),
    ("device-missing-gpu", lambda w: T(w, "--device", "cuda:99"), "--device"),
    ("unet-not-dict", lambda w: T(w, "--unet", "[1]"), "--unet"),
    ("unet-unknown-field", lambda w: T(w, "--unet", '{"bogus": 1}'), "TrainConfig.unet"),
    ("unet-channels-mismatch", lambda w: T(w, "--unet", '{"image_size": 16, "in_channels": 3}'), "expects 3x16x16"),
    ("unknown-option", lambda w: T(w, "--bogus", "1"), "unrecognized arguments: --bogus"),
    ("npy-without-root", lambda w: T(w)[:5] + T(w)[7:], "TrainConfig.data_root"),
    # --- train: config files ----------------------------------------------------------------------
    ("config-missing", lambda w: T(w, "--config", str(w / "none.json")), "none.json"),
    ("config-not-json", lambda w: T(w, "--config", str(w / "bad.json")), "bad.json is not valid JSON"),
    ("config-list", lambda w: T(w, "--config", str(w / "list.json")), "list.json holds a JSON list"),
    ("config-unknown", lambda w: T(w, "--config", str(w / "unknown.json")), "unknown TrainConfig field"),
    ("config-nan", lambda w: T(w, "--config", str(w / "nan.json")), "TrainConfig.lr must be a finite number"),
    # --- train: datasets --------------------------------------------------------------------------
    ("npy-missing", lambda w: T(w, data="none.npy"), "none.npy"),
    ("npy-empty-file", lambda w: T(w, data="empty.npy"), "empty.npy: not a readable .npy file"),
    ("npy-text", lambda w: T(w, data="text.npy"), "text.npy: not a readable .npy file"),
    ("npy-zero-images", lambda w: T(w, data="zero.npy"), "zero.npy: holds no images"),
    ("npy-nan-images", lambda w: T(w, data="nan_images.npy"), "nan_images.npy: float images"),
    ("npy-fewer-than-a-batch", lambda w: T(w, data="four.npy"), "fewer than one batch"),
    ("npz-short-labels", lambda w: T(w, data="short_labels.npz"), "short_labels.npz: 24 images but 20 labels"),
    ("npz-negative-labels", lambda w: T(w, data="neg_labels.npz"), "neg_labels.npz: labels must be non-negative"),
    ("npz-float-labels", lambda w: T(w, data="float_labels.npz"), "float_labels.npz: labels must be integers"),
    ("npz-no-images", lambda w: T(w, data="no_images.npz"), "no_images.npz: a .npz needs an 'images' array"),
    ("labels-beyond-model", lambda w: T(w, "--class-conditional", "--unet", '{"image_size": 16, "num_classes": 2}',
                                        data="ten_classes.npz"), "has label 9 but the model knows 2 classes"),
    ("folder-corrupt-image", lambda w: [*T(w, "--dataset", "folder", "--unet", '{"image_size": 16, "in_channels": 3, '
                                           '"out_channels": 3}', data="corrupt_folder")], "bad.jpg: cannot decode"),
    ("folder-empty", lambda w: T(w, "--dataset", "folder", data="empty_folder"), "no images found"),
    ("folder-is-a-file", lambda w: T(w, "--dataset", "folder", data="a_file"), "is not a folder"),
    # --- train: run folders -----------------------------------------------------------------------
    ("out-holds-a-run", lambda w: T(w, out="done"), "already holds a run"),
    ("resume-without-latest", lambda w: T(w, "--resume", out="nolatest"), "latest.pt is missing"),
    ("resume-changed-lr", lambda w: T(w, "--resume", "--lr", "0.5", out="done"), "changed settings: lr"),
    ("out-is-a-file", lambda w: T(w, out="a_file"), "a_file"),
    ("locked", lambda w: T(w, "--overwrite", out="locked_run"), "is in use by another trainer (pid"),
    # --- sample: checkpoints ----------------------------------------------------------------------
    ("ckpt-missing", _ck("none.pt"), "checkpoint not found"),
    ("ckpt-garbage", _ck("garbage.pt"), "could not read checkpoint"),
    ("ckpt-zero-bytes", _ck("zero.pt"), "could not read checkpoint"),
    ("ckpt-truncated", _ck("truncated.pt"), "could not read checkpoint"),
    ("ckpt-tensor", _ck("tensor.pt"), "holds a Tensor"),
    ("ckpt-no-config", _ck("nocfg.pt"), "holds no model_config"),
    ("ckpt-pickled-code", _ck("evil.pt"), "could not read checkpoint"),
    ("ckpt-nan-weights", _ck("nan.pt"), "non-finite weights"),
    ("ckpt-future-format", _ck("future.pt"), "ddpm_lib.checkpoint/99"),
    ("ckpt-a-folder", _ck("done"), "checkpoint not found"),
    # --- sample: options --------------------------------------------------------------------------
    ("guidance-nan", _s("--guidance", "nan"), "--guidance: must be a finite number"),
    ("guidance-inf", _s("--guidance", "inf"), "--guidance: must be a finite number"),
    ("eta-nan", _s("--eta", "nan"), "--eta: must be a finite number"),
    ("eta-2", _s("--eta", "2"), "eta must be a number between 0"),
    ("eta-with-ddpm", _s("--eta", "0.5", "--sampler", "ddpm"), "eta is a DDIM setting"),
    ("steps-negative", _s("--steps", "-1"), "--steps must be >= 1"),
    ("steps-0-ddim", _s("--steps", "0"), "--steps must be >= 1"),
    ("steps-over-T", _s("--steps", "5000"), "larger than the schedule's num_timesteps=50"),
    ("num-0", _s("--num", "0"), "--num must be >= 1"),
    ("num-word", _s("--num", "many"), "--num: invalid int value"),
    ("batch-0-sample", _s("--batch", "0"), "--batch must be >= 1"),
    ("class-unconditional", _s("--class", "1"), "--class: this model is unconditional"),
    ("guidance-unconditional", _s("--guidance", "2"), "--guidance: this model is unconditional"),
    ("seed-negative", _s("--seed", "-1"), "--seed must be >= 0"),
    ("nrow-0", _s("--nrow", "0"), "--nrow must be >= 1"),
    ("sample-device", _s("--device", "quantum"), "--device"),
    ("sampler-name", _s("--sampler", "euler"), "invalid choice"),
    ("out-under-a-file", lambda w: [*_s()(w)[:-2], "--out", str(w / "a_file" / "x.png")], "a_file"),
    # --- evaluate ---------------------------------------------------------------------------------
    ("eval-ckpt-missing", _e(ckpt="none.pt"), "checkpoint not found"),
    ("eval-guidance-nan", _e("--guidance", "nan"), "--guidance: must be a finite number"),
    ("eval-num-0", _e("--num", "0"), "--num must be a positive int"),
    ("eval-steps-negative", _e("--steps", "-3"), "--steps must be >= 1"),
    ("eval-features", _e("--features", "pixels"), "invalid choice"),
    ("eval-nan-weights", _e(ckpt="nan.pt"), "non-finite weights"),
    ("eval-classifier-missing", _e("--classifier", "/nonexistent/clf.pt"), "clf.pt"),
    ("no-command", lambda w: ["fly"], "invalid choice"),
]


def test_table_is_large_enough():
    assert len(CASES) >= 50 and len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.parametrize("name, argv_of, needle", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2_nothing_lost(world, name, argv_of, needle, capsys):
    before = _snapshot(world)
    holder = None
    if name == "locked":  # another trainer holds the folder (flock is per open file, so this counts)
        holder = RunFolder(world / "locked_run")
        holder.acquire_lock()
    try:
        rc, out, err = run_main(argv_of(world), capsys)
    finally:
        if holder is not None:
            holder.release_lock()
    assert rc == 2, (rc, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert needle in err, err
    assert "Traceback" not in err + out
    after = _snapshot(world)
    lost = [k for k, v in before.items() if after.get(k) != v]
    assert not lost, f"changed or deleted: {lost}"
    assert not (world / "PWNED").exists()  # no pickled code ran
    assert not list(world.rglob("*.tmp"))


def test_bad_input_in_a_real_process(world):
    """The same contract seen from a shell: exit status 2, one line, no traceback."""
    for argv in (_ck("garbage.pt")(world), _s("--guidance", "nan")(world)):
        p = subprocess.run([sys.executable, "-m", "ddpm_lib", *argv], capture_output=True, text=True, timeout=300,
                           env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": str(Path(__file__).parents[1])})
        assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr


def test_evaluate_module_entry_point_gives_one_line(world):
    """``python -m ddpm_lib.evaluation.evaluate`` (the module's own main) follows the same contract as the CLI."""
    cases = {"missing.pt": ["--ckpt", str(world / "missing.pt"), "--device", "cpu", "--num", "4"],
             "--num": ["--ckpt", str(world / "done" / "final.pt"), "--num", "many"]}
    for needle, argv in cases.items():
        p = subprocess.run([sys.executable, "-m", "ddpm_lib.evaluation.evaluate", *argv], capture_output=True, text=True,
                           timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "",
                                             "PYTHONPATH": str(Path(__file__).parents[1])})
        assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
        assert needle in p.stderr and "Traceback" not in p.stderr, p.stderr
