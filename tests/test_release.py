"""Release plumbing: the version handshake between notebooks and library, and the declared floors."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ddpm_lib
from ddpm_lib import LibraryTooOldError, _version_tuple, require

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("text, expected", [
    ("0.2.0", (0, 2, 0)), ("1.10", (1, 10)), ("0.3.0.dev1", (0, 3, 0)), ("2.4.1+cu121", (2, 4, 1)), ("0.3rc1", (0, 3)),
])
def test_version_tuple(text, expected):
    assert _version_tuple(text) == expected


def test_require_passes_for_this_and_older_versions():
    assert require(ddpm_lib.__version__) == ddpm_lib.__version__
    assert require("0.1.0") == ddpm_lib.__version__
    assert _version_tuple("0.10.0") > _version_tuple("0.9.9")  # numeric, not string, comparison


def test_require_names_the_fix_in_a_checkout():
    with pytest.raises(LibraryTooOldError) as info:
        require("99.0.0")
    msg = str(info.value)
    assert "\n" not in msg and "99.0.0" in msg and ddpm_lib.__version__ in msg
    assert "git pull" in msg and "make install" in msg and "restart the kernel" in msg


def test_require_names_the_pip_command_outside_a_checkout(tmp_path):
    # the same module file, installed somewhere that is not a course checkout (as in site-packages)
    pkg = tmp_path / "site" / "ddpm_lib"
    pkg.mkdir(parents=True)
    shutil.copy(ROOT / "ddpm_lib" / "__init__.py", pkg / "__init__.py")
    spec = importlib.util.spec_from_file_location("ddpm_lib_installed_copy", pkg / "__init__.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    with pytest.raises(ImportError) as info:
        mod.require("99.0.0")
    assert f'%pip install -U "ddpm-course @ git+{ddpm_lib.REPO_URL}@v99.0.0"' in str(info.value)
    with pytest.raises(ValueError, match="not a version"):
        mod.require("latest")


def test_in_ipython_the_error_is_one_line_without_traceback(tmp_path):
    pytest.importorskip("IPython")
    code = "import ddpm_lib\nddpm_lib.require('99.0.0')\nprint('NOT REACHED')"
    # own IPython dir and in-memory history: never wait on the history database of another running IPython
    res = subprocess.run([sys.executable, "-m", "IPython", "--no-banner", "--colors=NoColor", "--quick",
                          "--HistoryManager.hist_file=:memory:", "-c", code], capture_output=True, text=True,
                         timeout=900, cwd=ROOT, stdin=subprocess.DEVNULL, env={**os.environ, "IPYTHONDIR": str(tmp_path)})
    out = (res.stdout + res.stderr).strip()
    lines = [ln for ln in out.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("LibraryTooOldError: this notebook needs ddpm_lib >= 99.0.0"), out
    assert "Traceback" not in out and "NOT REACHED" not in out


def test_declared_floors_are_the_tested_ones():
    """pyproject's torch/torchvision/numpy floors are what `make test-oldest` installs."""
    pyproject = (ROOT / "pyproject.toml").read_text()
    pinned = {}
    for line in (ROOT / "tools" / "oldest-constraints.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            pinned[name] = version
    assert {"torch", "torchvision", "numpy"} <= set(pinned)
    for name in ("torch", "torchvision", "numpy"):
        version = pinned[name]
        m = re.search(rf'"{name}>=([0-9.]+)"', pyproject)
        assert m, f"pyproject.toml declares no floor for {name}"
        assert version == m.group(1) or version.startswith(m.group(1) + "."), (name, m.group(1), version)
    for minor in (10, 11, 12, 13):
        assert f"Programming Language :: Python :: 3.{minor}" in pyproject
    assert '"tensorboard"' in pyproject
