#!/usr/bin/env bash
# `make test-oldest`: build a virtual environment with the OLDEST supported versions
# (tools/oldest-constraints.txt: torch, torchvision, numpy, ipywidgets; Python 3.10), install ddpm_lib into it,
# then run the unit tests and two notebooks (04 training, 06 CIFAR-10: the Trainer, mixed precision,
# checkpoints, sampling) under nbval in FAST mode. Exits non-zero on any failure.
#
#   make test-oldest                                   # venv in .venv-oldest (git-ignored)
#   OLDEST_PYTHON=/path/to/python3.10 OLDEST_VENV=/tmp/oldest make test-oldest
#
# Needs the internet (or a package index pip is configured to use) to build the venv, once: about
# 3 GB, since PyPI's torch 2.4.1 for Linux pulls in the CUDA libraries.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${OLDEST_VENV:-.venv-oldest}"
# the first Python 3.10 that really runs (a pyenv shim can exist without its version being selected)
PYTHON="${OLDEST_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    for candidate in python3.10 "$(pyenv root 2>/dev/null)"/versions/3.10*/bin/python3.10; do
        if "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null; then
            PYTHON="$candidate"; break
        fi
    done
fi
[ -n "$PYTHON" ] || { echo "test-oldest: no Python 3.10 found; set OLDEST_PYTHON=/path/to/python3.10" >&2; exit 2; }
CONSTRAINTS=tools/oldest-constraints.txt

if [ ! -x "$VENV/bin/python" ]; then
    echo "creating $VENV with $PYTHON ($("$PYTHON" --version 2>&1))"
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install -q -c "$CONSTRAINTS" -e ".[dev]"
# the build backend pyproject.toml names (tests/test_install_cell.py builds the package without isolation)
"$VENV/bin/python" -m pip install -q "setuptools>=77,<85"

# the venv really holds the floor versions (pip could have picked others if the constraints were ignored)
"$VENV/bin/python" - "$CONSTRAINTS" <<'PY'
import sys
from importlib.metadata import version

wanted = {}
for line in open(sys.argv[1]):
    line = line.split("#")[0].strip()
    if line:
        name, v = line.split("==")
        wanted[name] = v
got = {name: version(name).split("+")[0] for name in wanted}
print(f"Python {sys.version.split()[0]}; " + ", ".join(f"{k} {v}" for k, v in got.items()))
bad = {k: (wanted[k], got[k]) for k in wanted if got[k] != wanted[k]}
if bad:
    sys.exit(f"test-oldest: expected the floor versions, got {bad}")
PY

"$VENV/bin/python" -m pytest -q -m "not slow" tests
DDPM_FAST=1 "$VENV/bin/python" -m pytest -q --nbval-lax --nbval-current-env \
    notebooks/04_training.ipynb notebooks/06_cifar10.ipynb
echo "test-oldest: passed with the versions above"
