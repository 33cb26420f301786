"""Where `train` writes without --out, the mode of what it writes, and the command line's help texts."""

from __future__ import annotations

import argparse
import importlib
import os
import stat

import pytest
import torch

from ddpm_lib.cli import main

TINY = ["--preset", "tiny", "--dataset", "npy", "--unet", '{"image_size": 16}', "--steps", "2", "--batch-size", "8",
        "--num-timesteps", "50", "--warmup-steps", "1", "--log-every", "1", "--progress", "false", "--device", "cpu"]


@pytest.fixture
def umask():
    """Set the process umask for one test (restored after)."""
    old = os.umask(0o022)
    os.umask(old)

    def set_mask(mask):
        os.umask(mask)

    yield set_mask
    os.umask(old)


def test_train_without_out_writes_into_the_runs_folder_not_the_current_one(tmp_path, env, monkeypatch, capsys, one_thread,
                                                                          squares_npy):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    s = env(DDPM_RUNS_DIR=tmp_path / "runs", DDPM_DEVICE="cpu")
    data = squares_npy()
    assert main(["train", *TINY, "--data-root", str(data)]) == 0, capsys.readouterr().err
    assert (s.runs_dir / "default" / "final.pt").is_file()
    assert list(cwd.iterdir()) == []  # nothing in the folder the command ran from
    assert str(s.runs_dir / "default") in capsys.readouterr().out


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_checkpoints_and_config_get_the_mode_the_umask_gives_every_other_file(tmp_path, capsys, umask, mask, one_thread,
                                                                              squares_npy):
    umask(mask)
    run = tmp_path / "run"
    data = squares_npy()
    assert main(["train", *TINY, "--data-root", str(data), "--out", str(run), "--tensorboard", "false"]) == 0, \
        capsys.readouterr().err
    (tmp_path / "plain.txt").write_text("x")  # what open() gives under this umask: the reference
    expected = stat.S_IMODE((tmp_path / "plain.txt").stat().st_mode)
    assert expected == 0o666 & ~mask
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in run.iterdir() if p.is_file() and p.name != ".lock"}  # the lock: os.open(..., 0o644)
    assert {"final.pt", "latest.pt", "config.json", "metrics.csv"} <= set(files)
    assert files == dict.fromkeys(files, expected), files
    assert torch.load(run / "final.pt", weights_only=True)["step"] == 2


def parsers():
    """(command, parser) for every command and sub-command of the course's command lines."""
    out = []

    def walk(p, path):
        out.append((path, p))
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, f"{path} {name}")

    for module, prog in [("cli", "python -m ddpm_lib"), ("data.sources", "python -m ddpm_lib.data.sources"),
                         ("evaluation.classifier", "python -m ddpm_lib.evaluation.classifier"), ("evaluation.evaluate", "python -m ddpm_lib.evaluation.evaluate"),
                         ("evaluation.features", "python -m ddpm_lib.evaluation.features")]:
        walk(importlib.import_module(f"ddpm_lib.{module}").build_parser(), prog)
    return out


def test_every_command_has_a_description_line():
    missing = [path for path, p in parsers() if not (p.description or "").strip()]
    assert not missing, f"--help shows no description for: {missing}"
    names = {path for path, _ in parsers()}
    assert {"python -m ddpm_lib evaluate", "python -m ddpm_lib.data.sources download", "python -m ddpm_lib.data.sources status",
            "python -m ddpm_lib.evaluation.classifier train"} <= names


def test_no_option_states_its_default_twice():
    twice = [f"{path} {'/'.join(a.option_strings)}: {a.help}" for path, p in parsers() for a in p._actions
             if a.help and a.help.count("(default") > 1]
    assert not twice, twice
    train = dict(parsers())["python -m ddpm_lib train"]
    (device,) = [a for a in train._actions if "--device" in a.option_strings]
    assert device.help.count("(default:") == 1
