"""Every command-line entry point: argparse, `--help` exits 0, and every option has a description."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import ddpm_lib
from ddpm_lib.training.config import FIELD_HELP, TrainConfig

PKG = Path(ddpm_lib.__file__).parent


def modules_with_main() -> list[str]:
    """Dotted names below ddpm_lib (``evaluation.evaluate``) of the modules that define ``main``."""
    names = []
    for info in pkgutil.walk_packages(ddpm_lib.__path__, "ddpm_lib."):
        name = info.name.removeprefix("ddpm_lib.")
        file = PKG.joinpath(*name.split(".")).with_suffix(".py")
        src = file.read_text(encoding="utf-8") if file.is_file() else ""
        if re.search(r"^def main\(", src, re.M):
            names.append(name)
    return sorted(names)


def test_the_known_entry_points_are_found():
    assert {"cli", "evaluation.classifier", "data.sources", "evaluation.evaluate", "evaluation.features",
            "course.student", "course.grade"} <= set(modules_with_main())


def walk(parser: argparse.ArgumentParser, path: str):
    """(command path, action) for every option and positional of the parser and its subcommands."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from walk(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


@pytest.mark.parametrize("name", modules_with_main())
def test_help_exits_0_and_every_option_is_described(name, capsys):
    mod = importlib.import_module(f"ddpm_lib.{name}")
    assert hasattr(mod, "build_parser"), f"ddpm_lib.{name} has a main but no argparse build_parser()"
    with pytest.raises(SystemExit) as info:
        mod.main(["--help"])
    assert info.value.code == 0
    assert "usage:" in capsys.readouterr().out
    undescribed = []
    for path, action in walk(mod.build_parser(), f"python -m ddpm_lib.{name}"):
        text = re.sub(r"\(default:.*\)", "", action.help or "").strip()
        if action.help is argparse.SUPPRESS or len(text) < 3:
            undescribed.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not undescribed, f"options without a description: {undescribed}"


def test_every_trainconfig_field_has_one_description():
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(FIELD_HELP) == fields, (
        f"ddpm_lib.training.config.FIELD_HELP must describe exactly the TrainConfig fields: missing "
        f"{sorted(fields - set(FIELD_HELP))}, extra {sorted(set(FIELD_HELP) - fields)}")
    assert all("\n" not in h and len(h) > 10 for h in FIELD_HELP.values())


def test_student_help_in_a_real_process():
    p = subprocess.run([sys.executable, "-m", "ddpm_lib.course.student", "--help"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "OUT_DIR" in p.stdout, p.stderr
