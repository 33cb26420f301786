"""The rest of issue 21's list of silent-wrong results, unclear messages and tracebacks: each case is now a
one-line error naming the field or file and the fix (exit status 2, no traceback, nothing changed), or, for
the two that are not errors, a warning (``evaluate --num 3``) or a correct result (16-bit TIFFs). A checkpoint
changed after its run saved it is refused (the run's checksums.json); an untouched copy is not.

One finished 4-step run on a tiny ``.npy`` data set is shared (module fixture); the cases that depend on
the environment read at import (``DDPM_MODE``, ``DDPM_DEVICE``, ``DDPM_DATA_DIR``) run a real process.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_refused_in_one_line, call_main, squares, train_args, tree_hashes
from PIL import Image

from ddpm_lib import cli
from ddpm_lib.command_line import SettingsError, start
from ddpm_lib.data.sources import CIFAR10_CLASSES, load_dataset
from ddpm_lib.evaluation.classifier import FeatureClassifier, save_classifier
from ddpm_lib.settings import best_device
from ddpm_lib.training.checkpoint import export_slim

pytestmark = pytest.mark.usefixtures("one_thread")
ROOT = Path(__file__).resolve().parents[1]


def T(w: Path, *extra: str, **kw) -> list[str]:
    return train_args(w, *extra, steps=4, **kw)


def S(w: Path, *extra: str) -> list[str]:
    return ["sample", "--ckpt", str(w / "done" / "final.pt"), "--device", "cpu", "--num", "2", "--steps", "2",
            "--out", str(w / "out.png"), *extra]


def E(w: Path, *extra: str) -> list[str]:
    return ["evaluate", "--ckpt", str(w / "done" / "final.pt"), "--device", "cpu", "--steps", "2", "--batch", "4", *extra]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    w = tmp_path_factory.mktemp("bad_inputs_21")
    imgs = squares(24)
    np.save(w / "squares.npy", imgs)
    shutil.copy(w / "squares.npy", w / "not_a_zip.npz")  # a .npy array under a .npz name
    np.savez(w / "huge_label.npz", images=imgs, labels=np.array([0] * 23 + [10**9]))
    (w / "a_file").write_text("not a folder\n")
    assert cli.main(T(w, out="done")) == 0  # a finished run at step 4
    done = w / "done"
    (w / "trunc_run").mkdir()
    for name in ("best.pt", "final.pt", "config.json", "metrics.csv"):
        shutil.copy(done / name, w / "trunc_run" / name)
    full = (done / "latest.pt").read_bytes()
    (w / "trunc_run" / "latest.pt").write_bytes(full[: len(full) // 3])
    shutil.copytree(done, w / "tampered_run")  # final.pt edited after the run saved it: still a valid checkpoint
    payload = torch.load(done / "final.pt", weights_only=True)
    k = next(iter(payload["ema"]["shadow"]))
    payload["ema"]["shadow"][k] = payload["ema"]["shadow"][k] + 1.0
    torch.save(payload, w / "tampered_run" / "final.pt")
    (w / "slim_run").mkdir()
    export_slim(done / "final.pt", w / "slim_run" / "latest.pt")
    cifar = w / "cifar_missing_truck" / "cifar10"
    for split in ("train", "test"):
        for c in CIFAR10_CLASSES:
            if not (split == "train" and c == "truck"):
                (cifar / split / c).mkdir(parents=True)
                Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(cifar / split / c / "0.png")
    clf = FeatureClassifier(in_channels=1, num_classes=2, width=4, feature_dim=8)
    save_classifier(clf, w / "clf.pt", dataset="npy")
    return w


snapshot = tree_hashes


def run_main(argv, capsys):
    return call_main(cli.main, argv, capsys)


CASES = [
    ("resume-fewer-steps", lambda w: T(w, "--resume", "--steps", "2", out="done"),
     ["steps=2", "already at step 4", "more than 4"]),
    ("resume-and-overwrite", lambda w: T(w, "--resume", "--overwrite", out="done"),
     ["TrainConfig.overwrite", "pass only one"]),
    ("class-conditional-unlabelled", lambda w: T(w, "--class-conditional"),
     ["class_conditional=True", "squares.npy", "no labels", "'labels'"]),
    ("truncated-latest", lambda w: T(w, "--resume", out="trunc_run"),
     ["latest.pt", "final.pt (step 4)", "best.pt (step ", "cp "]),
    ("npz-not-a-zip", lambda w: T(w, data="not_a_zip.npz"), ["not_a_zip.npz", "not a .npz archive", "rename it"]),
    ("npz-label-1e9", lambda w: T(w, data="huge_label.npz"), ["huge_label.npz", "label 1000000000", "class indices"]),
    ("sample-steps-over-T", lambda w: T(w, "--sample-every", "2", "--sample-steps", "100"),
     ["TrainConfig.sample_steps", "num_timesteps=50"]),
    ("evaluate-npy-model", lambda w: E(w, "--num", "4"), ["dataset='npy'", "no feature classifier", "--classifier"]),
    ("resume-from-slim", lambda w: T(w, "--resume", out="slim_run"), ["slim_run", "cannot be resumed from", "slim"]),
    ("cifar10-folder-missing-a-class", lambda w: ["train", "--preset", "tiny", "--dataset", "cifar10", "--data-root",
                                                  str(w / "cifar_missing_truck"), "--out", str(w / "new_run"),
                                                  "--steps", "1", "--device", "cpu", "--progress", "false"],
     ["cifar_missing_truck/cifar10", "train/ lacks the class folder(s) truck"]),
    ("tampered-checkpoint", lambda w: [*S(w)[:1], "--ckpt", str(w / "tampered_run" / "final.pt"), *S(w)[3:]],
     ["tampered_run/final.pt", "does not match any SHA-256", "checksums.json"]),
    ("sample-num-too-large", lambda w: S(w, "--num", "1000000000"), ["--num 1000000000", "GiB", "or fewer"]),
]


@pytest.mark.parametrize("name, argv_of, words", CASES, ids=[c[0] for c in CASES])
def test_one_line_exit_2_nothing_changed(world, name, argv_of, words, capsys):
    before = snapshot(world)
    t0 = time.perf_counter()
    rc, out, err = run_main(argv_of(world), capsys)
    assert_refused_in_one_line(rc, out, err, words)
    if name == "resume-from-slim":
        assert "config.json" not in err  # the slim run has none: never suggest it
    assert snapshot(world) == before
    assert not (world / "new_run" / "latest.pt").exists()  # refused before any training step
    assert time.perf_counter() - t0 < 60


def _process(env_extra: dict, *argv: str) -> subprocess.CompletedProcess:
    env = {"OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), **env_extra}
    return subprocess.run([sys.executable, "-m", "ddpm_lib", *argv], capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize("variable, value, words", [
    ("DDPM_MODE", "turbo", ["DDPM_MODE='turbo'", "fast, cpu or gpu"]),
    ("DDPM_DEVICE", "cuda:7", ["DDPM_DEVICE='cuda:7'"]),
    ("DDPM_DEVICE", "quantum", ["DDPM_DEVICE='quantum'", "not a device name"]),
    ("DDPM_DATA_DIR", None, ["DDPM_DATA_DIR=", "a_file", "is a file, not a folder"]),
])
def test_bad_environment_variable_is_one_line_in_a_real_process(world, variable, value, words):
    p = _process({variable: value if value is not None else str(world / "a_file")},
                 "sample", "--ckpt", str(world / "done" / "final.pt"), "--out", str(world / "env.png"))
    assert p.returncode == 2, p.stderr
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    for word in words:
        assert word in p.stderr, (word, p.stderr)
    assert not (world / "env.png").exists()


@pytest.mark.parametrize("module", ["ddpm_lib.course.grade", "ddpm_lib.evaluation.evaluate", "ddpm_lib.data.sources",
                                    "ddpm_lib.evaluation.classifier"])
def test_every_entry_point_gives_one_line_for_a_bad_environment_variable(module):
    """The other ``python -m ddpm_lib...`` commands read the settings while importing too: the same one line."""
    env = {"OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT), "DDPM_MODE": "turbo"}
    p = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "Traceback" not in p.stderr, p.stderr
    assert p.stderr.startswith(f"python -m {module}: error: DDPM_MODE='turbo'"), p.stderr


def test_importing_the_settings_with_a_bad_variable_raises(monkeypatch):
    """Outside a ddpm_lib command (a notebook, a script) a bad variable is an exception naming it, not an exit."""
    from ddpm_lib.settings import load_settings

    monkeypatch.setenv("DDPM_MODE", "turbo")
    with pytest.raises(SettingsError, match="DDPM_MODE='turbo'"):
        load_settings()


def test_ddpm_device_index_beyond_the_gpus_is_named(monkeypatch):
    """On a machine with one GPU, DDPM_DEVICE=cuda:7 names the devices there are (the check of best_device)."""
    monkeypatch.setenv("DDPM_DEVICE", "cuda:7")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    with pytest.raises(SettingsError, match=r"has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
        best_device()


def test_ctrl_c_while_starting_is_one_line(monkeypatch, capsys, world):
    """Ctrl-C while the command imports, and while the trainer loads data and builds the model: exit 130, one line."""
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("importlib.import_module", interrupted)
    assert start("python -m ddpm_lib", "ddpm_lib.cli", []) == 130
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "while starting" in err
    monkeypatch.undo()
    monkeypatch.setattr(cli, "Trainer", interrupted)
    rc, out, err = run_main(T(world, out="ctrl_c_run"), capsys)
    assert rc == 130 and err.count("\n") == 1 and "while starting; nothing was written" in err, err
    assert not (world / "ctrl_c_run").exists()


@pytest.mark.parametrize("delay", [0.5, 2.0])
def test_ctrl_c_during_start_up_of_a_real_process(world, delay):
    """SIGINT soon after `python -m ddpm_lib train` starts (importing numpy and torch, or loading the data): one
    line, status 130. (Raised in the middle of an import, it used to leave numpy half-imported: AttributeError.)"""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    # enough steps that the run is still going when the signal comes (4 steps can finish within 2 s)
    p = subprocess.Popen([sys.executable, "-m", "ddpm_lib", *train_args(world, steps=100_000, out=f"sigint_run_{delay}")], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(delay)
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130, (p.returncode, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err


def test_evaluate_with_few_samples_warns(world, capsys):
    """--num at or below the feature dimension (8 for this classifier): the report and the output carry a warning."""
    report = world / "few.json"
    rc, out, err = run_main(E(world, "--num", "3", "--classifier", str(world / "clf.pt"), "--out", str(report)), capsys)
    assert rc == 0, err
    assert "warning: only 3 samples for 8-dimensional features" in out
    assert json.loads(report.read_text())["warnings"]
    rc, out, err = run_main(E(world, "--num", "9", "--classifier", str(world / "clf.pt")), capsys)
    assert rc == 0 and "warning" not in out, err


def test_16_bit_tiffs_load_at_their_brightness(tmp_path):
    """A 16-bit grayscale TIFF loads as value/257 (65535 -> 255), not clipped at 255 (which made it nearly white)."""
    ramp = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)  # 0..65535 in steps of 257
    (tmp_path / "a").mkdir()
    Image.fromarray(ramp).save(tmp_path / "a" / "ramp.tif")
    assert Image.open(tmp_path / "a" / "ramp.tif").mode.startswith("I;16")
    ds = load_dataset("folder", root=tmp_path, image_size=16, grayscale=True)
    x = ds[0][0] if isinstance(ds[0], (tuple, list)) else ds[0]
    expected = torch.from_numpy((ramp / 257).astype(np.float32)) / 127.5 - 1  # 8-bit value k -> k / 127.5 - 1
    assert torch.allclose(x[0], expected, atol=1e-6)
    assert abs(float(x.mean())) < 0.01  # a ramp over the whole range has mean 0 in [-1, 1], not near 1 (white)


def test_an_untouched_checkpoint_of_the_run_loads_and_copies_of_each_other_too(world, capsys):
    """The integrity check accepts every checkpoint as the run saved it, and final.pt copied over latest.pt
    (the advice for a lost or truncated latest.pt)."""
    from ddpm_lib.training.checkpoint import load_checkpoint

    run = world / "copy_run"
    if not run.exists():
        shutil.copytree(world / "done", run)
    assert json.loads((run / "checksums.json").read_text()).keys() == {"latest.pt", "best.pt", "final.pt"}
    for name in ("latest.pt", "best.pt", "final.pt"):
        assert load_checkpoint(run / name)["step"] >= 1
    shutil.copy(run / "best.pt", run / "latest.pt")
    assert load_checkpoint(run / "latest.pt")["step"] == load_checkpoint(run / "best.pt")["step"]
