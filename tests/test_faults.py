"""Faults while training: SIGINT / SIGTERM save and stop, a second trainer is kept out, a full disk
loses nothing, a stale lock and stale temp files are recovered, and SIGKILLs at random moments
resume bit-exactly. Everything trains the "tiny" UNet on 16x16 synthetic squares on the CPU."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_lib import files
from ddpm_lib.cli import main
from ddpm_lib.training.checkpoint import load_checkpoint
from ddpm_lib.training.monitor import read_metrics
from ddpm_lib.training.runs import RunFolder

pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    rng = np.random.default_rng(0)
    imgs = np.zeros((40, 16, 16), np.uint8)
    for i in range(40):
        r, c = rng.integers(0, 10, 2)
        imgs[i, r:r + 6, c:c + 6] = 255
    path = tmp_path_factory.mktemp("faults") / "squares.npy"
    np.save(path, imgs)
    return path


def argv(data: Path, out: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "--preset", "tiny", "--dataset", "npy", "--data-root", str(data), "--unet",
            '{"image_size": 16, "dropout": 0.1}', "--out", str(out), "--steps", str(steps), "--batch-size", "8",
            "--num-timesteps", "50", "--warmup-steps", "2", "--lr", "1e-3", "--log-every", "1", "--progress", "false",
            "--device", "cpu", "--tensorboard", "false", "--ema-decay", "0.9", *extra]


def spawn(args: list[str]) -> subprocess.Popen:
    env = {"OMP_NUM_THREADS": "1", "PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(REPO), "DDPM_DEVICE": "cpu"}
    return subprocess.Popen([sys.executable, "-m", "ddpm_lib", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)


def wait_for_rows(run: Path, n: int, proc: subprocess.Popen, timeout: float = 900) -> None:
    """Until metrics.csv has ``n`` rows (the trainer is inside its loop)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        assert proc.poll() is None, proc.communicate()
        try:
            if len((run / "metrics.csv").read_text().splitlines()) > n:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the trainer did not start")


def run_main(args, capsys):
    rc = main(args)
    out, err = capsys.readouterr()
    return rc, out, err


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_saves_then_stops_and_keeps_a_second_trainer_out(data, tmp_path, sig, code, capsys):
    run = tmp_path / "run"
    proc = spawn(argv(data, run, 100_000, "--checkpoint-every", "100000"))  # no periodic checkpoint would come
    try:
        wait_for_rows(run, 3, proc)
        # a second trainer on the same folder is refused, naming the first one's pid; nothing is touched
        before = (run / "metrics.csv").stat().st_size
        rc, _, err = run_main(argv(data, run, 10, "--resume"), capsys)
        assert rc == 2 and err.count("\n") == 1 and f"in use by another trainer (pid {proc.pid}" in err, err
        assert (run / "metrics.csv").stat().st_size >= before
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == code, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert f"stopped by {signal.Signals(sig).name}" in err and f"saved {run / 'latest.pt'}" in err
    step = int(lines[0].split(" at step ")[1].split(";")[0])
    ckpt = load_checkpoint(run / "latest.pt")
    assert ckpt["step"] == step >= 3  # the file the message names exists, at the step it names
    assert read_metrics(run)["step"][-1] == step
    assert not list(run.glob(".*.tmp"))
    # and the run continues from there
    rc, _, err = run_main(argv(data, run, step + 2, "--resume"), capsys)
    assert rc == 0, err
    assert load_checkpoint(run / "final.pt")["step"] == step + 2
    assert list(read_metrics(run)["step"][-3:]) == [step, step + 1, step + 2]


def test_disk_full_one_line_last_good_checkpoint_intact(data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_write, saves = files._write_all, []

    def write(f, payload):  # the disk fills up at the second save of latest.pt, half-way through it
        if ".latest.pt." in f.name:
            saves.append(f.name)
            if len(saves) == 2:
                f.write(payload[: len(payload) // 2])
                raise OSError(errno.ENOSPC, "No space left on device")
        real_write(f, payload)

    monkeypatch.setattr(files, "_write_all", write)
    rc, _, err = run_main(argv(data, run, 4, "--checkpoint-every", "1"), capsys)
    assert rc == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    latest = run / "latest.pt"
    assert f"no space left on device while writing {latest}; the last good checkpoint {latest} is intact" in err
    assert load_checkpoint(latest)["step"] == 1  # the previous complete checkpoint
    assert not list(run.glob(".*.tmp")) and not (run / "final.pt").exists()
    monkeypatch.setattr(files, "_write_all", real_write)  # space freed: resume finishes the run
    rc, _, err = run_main(argv(data, run, 4, "--checkpoint-every", "1", "--resume"), capsys)
    assert rc == 0, err
    assert load_checkpoint(run / "final.pt")["step"] == 4


def test_disk_full_before_any_checkpoint(tmp_path, monkeypatch):
    def full(f, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(files, "_write_all", full)
    with pytest.raises(files.NoSpaceError, match=r"while writing .*best.pt; no checkpoint had been saved yet"):
        RunFolder(tmp_path / "r").save("best", {"step": 1})
    assert list((tmp_path / "r").iterdir()) == []  # no partial file, no temp file


def test_stale_lock_and_temp_files_after_a_crash_are_recovered(data, tmp_path, capsys):
    run = tmp_path / "run"
    rc, _, err = run_main(argv(data, run, 2, "--checkpoint-every", "1"), capsys)
    assert rc == 0, err
    # what a SIGKILLed trainer leaves: its lock file (with a pid that no longer runs) and a half-written save
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / ".lock").write_text(json.dumps({"pid": int(dead.stdout), "host": "x", "since": "then"}))
    (run / ".latest.pt.abc123.tmp").write_bytes(b"\0" * 1000)
    rc, out, err = run_main(argv(data, run, 3, "--checkpoint-every", "1", "--resume"), capsys)
    assert rc == 0, err
    assert "removed 1 temporary file(s)" in out
    assert not list(run.glob(".*.tmp")) and load_checkpoint(run / "final.pt")["step"] == 3


def test_resume_refused_when_latest_is_lost(data, tmp_path, capsys):
    run = tmp_path / "run"
    assert run_main(argv(data, run, 2, "--checkpoint-every", "1"), capsys)[0] == 0
    (run / "latest.pt").unlink()
    kept = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    rc, _, err = run_main(argv(data, run, 4, "--resume"), capsys)
    assert rc == 2 and err.count("\n") == 1
    assert "latest.pt is missing" in err and "final.pt, best.pt" in err and f"cp {run / 'final.pt'}" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == kept  # nothing replaced
    # the advice works
    (run / "latest.pt").write_bytes((run / "final.pt").read_bytes())
    rc, _, err = run_main(argv(data, run, 4, "--resume"), capsys)
    assert rc == 0 and load_checkpoint(run / "final.pt")["step"] == 4, err


def _weights(path: Path) -> dict:
    p = load_checkpoint(path)
    return {"model": p["model"], "ema": p["ema"]["shadow"], "step": p["step"]}


@pytest.mark.slow
def test_repeated_sigkill_resumes_bit_exactly(data, tmp_path, capsys):
    steps = 24
    ref = tmp_path / "ref"
    p = spawn(argv(data, ref, steps, "--checkpoint-every", "1"))
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    run, rng, kills = tmp_path / "run", random.Random(0), 0
    while kills < 4:
        p = spawn(argv(data, run, steps, "--checkpoint-every", "1", "--resume"))
        try:
            start = len((run / "metrics.csv").read_text().splitlines()) if (run / "metrics.csv").exists() else 1
            wait_for_rows(run, start, p)
            time.sleep(rng.uniform(0.0, 0.6))
        finally:
            p.send_signal(signal.SIGKILL)
            p.communicate(timeout=60)
        if p.returncode == -signal.SIGKILL:
            kills += 1
        if (run / "final.pt").exists():
            break
    p = spawn(argv(data, run, steps, "--checkpoint-every", "1", "--resume"))
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err
    assert kills >= 2  # the kills really interrupted the run
    a, b = _weights(ref / "final.pt"), _weights(run / "final.pt")
    assert a["step"] == b["step"] == steps
    for part in ("model", "ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    ma, mb = read_metrics(ref), read_metrics(run)
    assert list(mb["step"]) == list(range(1, steps + 1)) and (ma["loss"] == mb["loss"]).all()
    assert not list(run.glob(".*.tmp"))
