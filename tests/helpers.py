"""Helpers shared by the test files (importable as ``helpers``: pytest puts tests/ on sys.path)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below ``root`` (a run's lock file excepted): compare before and after a command to
    prove it changed nothing."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != ".lock"}


def call_main(main, argv, capsys) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of a command's ``main(argv)``; argparse's SystemExit counts as its exit code."""
    try:
        rc = main(argv)
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    return rc, out, err


def squares(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """n uint8 images (size x size), each a white 6x6 square at a seeded place on black: a tiny data set."""
    rng = np.random.default_rng(seed)
    imgs = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        r, c = rng.integers(0, size - 6, 2)
        imgs[i, r:r + 6, c:c + 6] = 255
    return imgs


def train_args(w: Path, *extra: str, data: str = "squares.npy", out: str = "new_run", steps: int = 2) -> list[str]:
    """``train`` arguments for the tiny UNet on the npy file ``w/data`` into ``w/out`` (CPU, seconds)."""
    return ["train", "--preset", "tiny", "--dataset", "npy", "--data-root", str(w / data), "--unet", '{"image_size": 16}',
            "--out", str(w / out), "--steps", str(steps), "--batch-size", "8", "--num-timesteps", "50",
            "--warmup-steps", "1", "--log-every", "1", "--checkpoint-every", "1", "--progress", "false",
            "--device", "cpu", "--tensorboard", "false", *extra]


def assert_refused_in_one_line(rc: int, out: str, err: str, words=()) -> None:
    """Exit code 2, exactly one line on stderr, no traceback anywhere, and each of ``words`` in that line."""
    assert rc == 2, (rc, out, err)
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in out + err
    for word in words:
        assert word in err, (word, err)
