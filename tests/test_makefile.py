"""Makefile targets as the README describes them: the table lists every target, `make lab` runs as root,
and `make test-oldest` pins every declared floor (ipywidgets included)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def makefile_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):.*## ", (ROOT / "Makefile").read_text(), re.M))


def test_the_readme_table_lists_every_make_target():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Make targets"):]
    table = table[:table.index("\n## ")]
    listed = set(re.findall(r"`make ([a-z][a-z-]*)", table))
    assert makefile_targets() - {"help"} <= listed, f"README's target table lacks {sorted(makefile_targets() - listed - {'help'})}"
    assert listed <= makefile_targets(), f"README lists targets the Makefile lacks: {sorted(listed - makefile_targets())}"
    assert {"weights", "release"} <= listed


@pytest.mark.parametrize("uid, root", [("0", True), ("1000", False)])
def test_make_lab_adds_allow_root_only_as_root(tmp_path, uid, root):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "id").write_text(f"#!/bin/sh\necho {uid}\n")
    (fake / "id").chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}{os.pathsep}{os.environ['PATH']}"}
    # -n: print the command; -o: do not (re)install the venv first
    out = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "lab", "TOKEN=s3cret"], cwd=ROOT, env=env,
                         capture_output=True, text=True, check=True).stdout
    (line,) = [ln for ln in out.splitlines() if "jupyter lab" in ln]
    assert ("--allow-root" in line) == root, line
    assert "--ServerApp.root_dir=notebooks" in line and "--IdentityProvider.token=s3cret" in line
    assert "--notebook-dir" not in line and "ServerApp.token" not in line  # the deprecated spellings


def test_test_oldest_pins_the_ipywidgets_floor():
    pyproject = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"ipywidgets>=([0-9.]+)"', pyproject).group(1)
    pins = dict(line.split("==") for line in (ROOT / "tools" / "oldest-constraints.txt").read_text().splitlines()
                if line.strip() and not line.startswith("#"))
    assert pins.get("ipywidgets", "").startswith(floor + "."), (floor, pins)
    # tools/test_oldest.sh checks every pinned package is installed at its pinned version
    assert "for name in wanted" in (ROOT / "tools" / "test_oldest.sh").read_text()
