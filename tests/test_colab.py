"""Colab: the install cell's opt-in to keep runs on Google Drive, and the line 05-07 print when they fall back
to the starter weights because the run an earlier notebook trained is on another Colab machine."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from ddpm_lib import settings as settings_mod
from ddpm_lib.course import model_choice

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DRIVE_RUNS = Path("/content/drive/MyDrive/ddpm-course/runs")


def run_install_cell(path: Path, keep_on_drive: bool, monkeypatch):
    """Execute the notebook's install cell as IPython would on Colab, with Colab's modules stood in for."""
    transformer = pytest.importorskip("IPython.core.inputtransformer2").TransformerManager()
    src = "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][1]["source"])
    flag = "KEEP_ON_DRIVE = False"
    assert src.count(flag) == 1, f"{path.name}: the install cell must offer `{flag}` once"
    src = src.replace(flag, f"KEEP_ON_DRIVE = {keep_on_drive}")
    calls = []
    drive = types.SimpleNamespace(mount=lambda where: calls.append(("mount", where)))
    colab = types.ModuleType("google.colab")
    colab.drive = drive
    google = types.ModuleType("google")
    google.colab = colab
    monkeypatch.setitem(sys.modules, "google", google)
    monkeypatch.setitem(sys.modules, "google.colab", colab)
    ip = types.SimpleNamespace(run_line_magic=lambda name, line: calls.append((name, line)))
    exec(transformer.transform_cell(src), {"get_ipython": lambda: ip})
    return calls


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem[:2])
def test_keep_on_drive_mounts_drive_and_points_the_runs_there(path, env, monkeypatch):
    monkeypatch.setenv("DDPM_RUNS_DIR", "")  # records the variable, so the cell's setting is undone after the test
    monkeypatch.delenv("DDPM_RUNS_DIR")
    calls = run_install_cell(path, True, monkeypatch)
    assert calls[0][0] == "pip" and calls[0][1].startswith("install -q")
    assert ("mount", "/content/drive") in calls
    assert settings_mod.reload_settings().runs_dir == DRIVE_RUNS


def test_by_default_the_cell_only_installs(env, monkeypatch):
    monkeypatch.setenv("DDPM_RUNS_DIR", "")
    monkeypatch.delenv("DDPM_RUNS_DIR")
    calls = run_install_cell(NOTEBOOKS[0], False, monkeypatch)
    assert [c[0] for c in calls] == ["pip"]
    assert "DDPM_RUNS_DIR" not in __import__("os").environ


@pytest.mark.parametrize("colab", [True, False])
def test_the_starter_fallback_says_why_on_colab(env, tmp_path, colab):
    env(DDPM_RUNS_DIR=tmp_path, DDPM_DEVICE="cpu", DDPM_MODE="fast",
        COLAB_RELEASE_TAG="release-colab_20261101-060000_RC00" if colab else None)
    assert settings_mod.on_colab() is colab
    chosen = model_choice.choose_model("fashion_mnist", "fashion_mnist", device="cpu")
    assert chosen.kind == "starter"
    assert ("KEEP_ON_DRIVE = True" in chosen.source) is colab, chosen.source
    assert "\n" not in chosen.source
