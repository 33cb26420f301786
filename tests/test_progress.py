"""Progress output: a live bar in a terminal, plain timed lines in a log (no carriage returns)."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np

from ddpm_lib import progress
from ddpm_lib.progress import LineProgress, progress_bar


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_line_progress_prints_one_line_every_n_seconds(monkeypatch):
    clock = FakeClock()
    monkeypatch.setattr(progress.time, "monotonic", clock)
    out = io.StringIO()
    bar = LineProgress(total=100, desc="training", every_s=10, file=out)
    for i in range(100):
        clock.now += 1.0  # one step per second
        bar.update(1)
        if i == 49:
            bar.set_postfix(loss="0.0412")
    bar.close()
    bar.close()  # idempotent
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 11  # at 10, 20, ..., 100 s, and the closing line
    assert lines[0] == "training: 10/100 (10%), 10 s elapsed, 1.00 it/s, ~1.5 min left"
    assert lines[-1].startswith("training: 100/100 (100%), 1.7 min elapsed, 1.00 it/s, ~0 s left, loss=0.0412")


def test_line_progress_iterates_and_stays_silent_when_short_or_disabled(monkeypatch):
    out = io.StringIO()
    assert list(LineProgress(range(5), desc="sampling", leave=False, file=out)) == [0, 1, 2, 3, 4]
    assert out.getvalue() == ""  # finished before the first line was due, and leave=False
    assert list(LineProgress(range(3), disable=True, file=out)) == [0, 1, 2]
    assert out.getvalue() == ""


def test_progress_bar_picks_by_where_the_output_goes(monkeypatch):
    class Tty(io.StringIO):
        def isatty(self):
            return True

    assert isinstance(progress_bar(total=3, file=io.StringIO()), LineProgress)
    bar = progress_bar(total=3, file=Tty())
    assert not isinstance(bar, LineProgress) and type(bar).__module__.startswith("tqdm")
    bar.close()


def test_piped_cli_training_writes_lines_not_a_bar(tmp_path):
    imgs = np.zeros((16, 16, 16), np.uint8)
    imgs[:, 4:12, 4:12] = 255
    np.save(tmp_path / "squares.npy", imgs)
    code = ("import ddpm_lib.progress as p; p.LOG_EVERY_S = 0.0; from ddpm_lib.cli import main; "
            "raise SystemExit(main())")
    argv = ["train", "--preset", "tiny", "--dataset", "npy", "--data-root", str(tmp_path / "squares.npy"),
            "--unet", '{"image_size": 16}', "--out", str(tmp_path / "run"), "--steps", "3", "--batch-size", "8",
            "--num-timesteps", "50", "--warmup-steps", "1", "--device", "cpu", "--tensorboard", "false"]
    res = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=900, stdin=subprocess.DEVNULL,
                         env={"OMP_NUM_THREADS": "1", "PATH": "", "PYTHONPATH": ":".join(sys.path)}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "\r" not in res.stdout + res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("training: ")]
    assert [ln.split(",")[0] for ln in lines] == ["training: 1/3 (33%)", "training: 2/3 (67%)",
                                                  "training: 3/3 (100%)", "training: 3/3 (100%)"]
