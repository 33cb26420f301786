"""Every course notebook follows the conventions (see README "Notebook conventions").

Runs over the notebooks present: a notebook not written yet is not a failure, a notebook that breaks a
rule is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

import ddpm_lib

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
COURSE_MAP = {
    "00": "00_welcome",
    "01": "01_forward_process",
    "02": "02_noise_schedules",
    "03": "03_unet_blocks",
    "04": "04_training",
    "05": "05_sampling",
    "06": "06_cifar10",
    "07": "07_evaluation",
    "08": "08_beyond_ddpm",
}
COLAB = "https://colab.research.google.com/github/ddpm-course/ddpm-course/blob/main/notebooks/{}"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"
INSTALL_CELL = (
    "import sys\n"
    "KEEP_ON_DRIVE = False  # Colab only: True keeps your runs on Google Drive, so later notebooks find what 04 and 06 trained\n"
    'if "google.colab" in sys.modules:\n'
    '    %pip install -q "ddpm-course @ git+https://github.com/ddpm-course/ddpm-course@<commit>"\n'
    "    if KEEP_ON_DRIVE:\n"
    "        import os\n"
    "        from google.colab import drive\n"
    '        drive.mount("/content/drive")\n'
    '        os.environ["DDPM_RUNS_DIR"] = "/content/drive/MyDrive/ddpm-course/runs"'
)
# the setup cell's version handshake (tools/set_version.py writes both this and the install cell's ref)
REQUIRE_LINE = f'ddpm_lib.require("{ddpm_lib.__version__}")'
NAME_RE = re.compile(r"^(\d\d)_[a-z0-9]+(?:_[a-z0-9]+)*\.ipynb$")


def present():
    return sorted(NOTEBOOKS.glob("*.ipynb"))


def text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def load(path):
    return json.loads(path.read_text(encoding="utf-8"))


def test_notebook_names_follow_the_map():
    for p in present():
        m = NAME_RE.match(p.name)
        assert m, f"{p.name}: course notebooks are named NN_name.ipynb (two digits, lower-case words joined by _)."
        assert m.group(1) in COURSE_MAP, f"{p.name}: the course map has notebooks 00..08 only."
        assert p.stem == COURSE_MAP[m.group(1)], f"{p.name}: notebook {m.group(1)} of the map is {COURSE_MAP[m.group(1)]}.ipynb."


needs_notebooks = pytest.mark.skipif(not present(), reason="no notebooks written yet")
params = pytest.mark.parametrize("path", present(), ids=lambda p: p.name)


@needs_notebooks
@params
def test_no_outputs_and_python3_kernel(path):
    nb = load(path)
    assert nb["metadata"].get("kernelspec", {}).get("name") == "python3", f"{path.name}: kernelspec must be python3"
    for i, c in enumerate(nb["cells"]):
        if c["cell_type"] == "code":
            assert c.get("outputs") == [], f"{path.name}: code cell {i} has outputs; commit notebooks without outputs"
            assert c.get("execution_count") is None, f"{path.name}: code cell {i} has an execution count"


@needs_notebooks
@params
def test_opening_cells(path):
    cells = load(path)["cells"]
    assert len(cells) >= 3, f"{path.name}: too few cells"
    first = cells[0]
    assert first["cell_type"] == "markdown", f"{path.name}: cell 1 must be markdown with the Colab badge"
    head = text(first)
    assert BADGE in head and f"({COLAB.format(path.name)})" in head, (
        f"{path.name}: cell 1 must start with the Open-in-Colab badge linking to {COLAB.format(path.name)}"
    )
    assert re.search(r"learning objectives", head, re.I), f"{path.name}: cell 1 needs a 'Learning objectives' list"
    assert "CPU" in head and "GPU" in head, f"{path.name}: cell 1 needs a time estimate (CPU FAST / GPU)"
    install = cells[1]
    pinned = re.sub(r'@[0-9a-f]{40}"', '@<commit>"', text(install).strip())  # the release commit (test_install_cell)
    assert install["cell_type"] == "code" and pinned == INSTALL_CELL, (
        f"{path.name}: cell 2 must be exactly the Colab-only install cell:\n{INSTALL_CELL}"
    )
    setup = text(cells[2])
    assert cells[2]["cell_type"] == "code" and "settings.banner()" in setup and "seed_everything(" in setup, (
        f"{path.name}: cell 3 must print settings.banner() and call seed_everything(...)"
    )
    assert REQUIRE_LINE in setup, (
        f"{path.name}: cell 3 must check the installed library with `{REQUIRE_LINE}` (the version the notebook "
        "was written for, the ref its Colab cell installs); `python tools/set_version.py VERSION` writes both"
    )


@needs_notebooks
@params
def test_ends_with_recap_and_going_further(path):
    cells = load(path)["cells"]
    last_code = max(i for i, c in enumerate(cells) if c["cell_type"] == "code")
    tail = "\n".join(text(c) for c in cells[last_code + 1 :] if c["cell_type"] == "markdown")
    assert re.search(r"^#+ .*recap", tail, re.I | re.M), f"{path.name}: needs a 'Recap' heading after the last code cell"
    assert re.search(r"^#+ .*going further", tail, re.I | re.M), f"{path.name}: needs a 'Going further' heading after the last code cell"
    assert cells[-1]["cell_type"] == "markdown", f"{path.name}: the last cell must be markdown (Going further)"


@needs_notebooks
@params
def test_no_code_cell_ends_with_semicolon(path):
    for i, c in enumerate(load(path)["cells"]):
        if c["cell_type"] != "code":
            continue
        lines = [ln.split("#", 1)[0].rstrip() for ln in text(c).splitlines()]
        lines = [ln for ln in lines if ln.strip()]
        if lines:
            assert not lines[-1].endswith(";"), f"{path.name}: code cell {i} ends with ';' (write `_ = ...` instead)"


def test_readme_and_welcome_list_the_whole_map():
    readme = (NOTEBOOKS.parent / "README.md").read_text(encoding="utf-8")
    for stem in COURSE_MAP.values():
        assert COLAB.format(f"{stem}.ipynb") in readme, f"README.md: the notebook map lacks the Colab badge of {stem}"
        assert f"(notebooks/{stem}.ipynb)" in readme, f"README.md: the notebook map lacks a link to {stem}"
    welcome = NOTEBOOKS / "00_welcome.ipynb"
    if welcome.exists():
        body = "\n".join(text(c) for c in load(welcome)["cells"] if c["cell_type"] == "markdown")
        for stem in COURSE_MAP.values():
            assert f"`{stem}`" in body, f"00_welcome.ipynb: the map lacks {stem}"
