"""The notebooks' Colab install cell: the ref it installs exists, and it leaves Colab's packages alone.

Every notebook's second cell runs, on Colab only, ``%pip install -q "ddpm-course @ git+REPO@<commit>"``,
pinned to the full hash of a release commit. That works only if the commit exists and holds the library
version the setup cell then ``require``s; ``make release VERSION=X.Y.Z`` (``tools/set_version.py X.Y.Z
--tag``) writes the version, commits, and pins the cells to that commit. These tests check the commit here,
in the clone they run in (every clone of the branch has it, tags or not; a shallow clone may not).

The second half checks the cell against a Colab-like machine with pip itself as the oracle: pip's
resolver runs as a dry run (``--dry-run --no-index``, offline) with Colab's packages "installed" (their
``.dist-info`` metadata on ``PYTHONPATH``) and a Colab-like constraints file, and must select nothing
but ddpm-course itself.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ddpm_lib

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
PIP_LINE = re.compile(r"^\s*%pip install (?P<args>.+)$", re.M)
VERSION_LINE = re.compile(r'^__version__ = "([^"]+)"', re.M)
IMPORT_RE = re.compile(r"^\s*(?:from\s+(ddpm_lib(?:\.\w+)*)\s+import\s+([^#\n]+)|import\s+(ddpm_lib(?:\.\w+)*))", re.M)
GIT_ENV = {"GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.org",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.org"}

# What a Colab-like runtime has installed (the measurement: torch 2.11, ipywidgets 7.7.1; the
# others are versions Colab shipped alongside). Only the metadata matters to pip's resolver.
COLAB_INSTALLED = {
    "torch": "2.11.0", "torchvision": "0.26.0", "numpy": "2.0.2", "pillow": "11.3.0",
    "matplotlib": "3.10.0", "tqdm": "4.67.1", "ipywidgets": "7.7.1", "tensorboard": "2.19.0",
}
COLAB_CONSTRAINTS = "torch==2.11.*\ntorchvision==0.26.*\nipywidgets==7.7.1\n"
ALLOWED_FLAGS = {"-q", "--quiet"}  # no -U/--upgrade, --force-reinstall, --no-deps, --upgrade-strategy, ...


def cell_source(path: Path, index: int) -> str:
    return "".join(json.loads(path.read_text(encoding="utf-8"))["cells"][index]["source"])


def install_args(path: Path) -> list[str]:
    lines = PIP_LINE.findall(cell_source(path, 1))
    assert len(lines) == 1, f"{path.name}: the install cell (cell 2) must hold exactly one `%pip install` line"
    return shlex.split(lines[0])


def install_ref(path: Path) -> str:
    """The git ref the notebook's install cell pins (the commit hash in ``...ddpm-course@<hash>``)."""
    reqs = [a for a in install_args(path) if not a.startswith("-")]
    assert len(reqs) == 1, f"{path.name}: the install cell must install one requirement, got {reqs}"
    m = re.fullmatch(rf"ddpm-course @ git\+{re.escape(ddpm_lib.REPO_URL)}@(\S+)", reqs[0])
    assert m, f"{path.name}: the install cell must install `ddpm-course @ git+{ddpm_lib.REPO_URL}@<commit>`, got {reqs[0]!r}"
    return m.group(1)


def git(root: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                          env={**os.environ, **GIT_ENV, **(env or {})})


def imported_modules(sources: list[str]) -> set[str]:
    """Dotted names of the ddpm_lib modules (or attributes) that code imports."""
    names = set()
    for src in sources:
        for frm, what, imp in IMPORT_RE.findall(src):
            if imp:
                names.add(imp)
            else:
                names.add(frm)
                names.update(f"{frm}.{part.split(' as ')[0].strip(' ()')}" for part in what.split(","))
    return {n for n in names if n.strip(".")}


def is_module(name: str, files: set[str]) -> bool:
    path = name.replace(".", "/")
    return f"{path}.py" in files or f"{path}/__init__.py" in files


def ref_problems(root: Path, ref: str, version: str, modules: set[str]) -> list[str]:
    """Why the Colab cell's ``ref`` would not give a notebook (of ``version``, importing ``modules``)
    what it needs, in the git repository at ``root``; empty when it would."""
    if not re.fullmatch(r"[0-9a-f]{40}", ref):
        return [f"the install cells install @{ref}, which is not a full commit hash: a tag or branch may be "
                f"missing from a clone and moves; make the release, `make release VERSION={version}`"]
    if git(root, "cat-file", "-e", f"{ref}^{{commit}}").returncode != 0:
        shallow = git(root, "rev-parse", "--is-shallow-repository").stdout.strip() == "true"
        return [f"the install cells install @{ref[:12]}, a commit this repository does not have: make the "
                f"release, `make release VERSION={version}`"
                + (" (this is a shallow clone: `git fetch --unshallow` first)" if shallow else "")]
    problems = []
    init = git(root, "show", f"{ref}:ddpm_lib/__init__.py").stdout
    m = VERSION_LINE.search(init)
    if not m or m.group(1) != version:
        problems.append(f"the commit {ref[:12]} holds ddpm_lib {m.group(1) if m else '(none)'}, but the notebooks "
                        f"require {version}: the Colab cell would install a library their setup cell rejects")
    if git(root, "merge-base", "--is-ancestor", ref, "HEAD").returncode != 0:
        problems.append(f"the commit {ref[:12]} is not in this branch's history")
    pinned = set(git(root, "ls-tree", "-r", "--name-only", ref).stdout.split())
    here = set(git(root, "ls-tree", "-r", "--name-only", "HEAD").stdout.split()) | {
        str(p.relative_to(root)) for p in (root / "ddpm_lib").rglob("*.py")}
    missing = sorted(n for n in modules if is_module(n, here) and not is_module(n, pinned))
    if missing:
        problems.append(f"the notebooks import {', '.join(missing)}, which the commit {ref[:12]} does not have: "
                        f"Colab would install a library without them; release a new version "
                        f"(`make release VERSION=X.Y.Z`)")
    return problems


# --- the cells themselves ------------------------------------------------------------------------


def test_every_notebook_pins_one_release_commit():
    refs = {path.name: install_ref(path) for path in NOTEBOOKS}
    assert len(NOTEBOOKS) >= 8
    assert len(set(refs.values())) == 1 and re.fullmatch(r"[0-9a-f]{40}", next(iter(refs.values()))), refs


def test_the_install_cell_never_upgrades_or_reinstalls():
    for path in NOTEBOOKS:
        flags = {a.split("=")[0] for a in install_args(path) if a.startswith("-")}
        assert flags <= ALLOWED_FLAGS, (
            f"{path.name}: the install cell passes {sorted(flags - ALLOWED_FLAGS)} to pip: on Colab that can "
            "replace the runtime's torch/torchvision/ipywidgets (only -q is allowed)")


# --- the ref exists -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkout() -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed: the install cells' commit can only be checked with git")
    top = git(ROOT, "rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip(f"{ROOT} is not a git checkout (an sdist, a wheel or an exported tree): "
                    "the commit the install cells name can only be checked in a clone")
    return ROOT


def test_the_commit_the_install_cells_name_exists_and_holds_this_version(checkout):
    sources = [c_src for path in NOTEBOOKS for c_src in
               ("".join(c["source"]) for c in json.loads(path.read_text(encoding="utf-8"))["cells"]
                if c["cell_type"] == "code")]
    problems = ref_problems(checkout, install_ref(NOTEBOOKS[0]), ddpm_lib.__version__, imported_modules(sources))
    assert not problems, "\n".join(problems)


@pytest.fixture
def tiny_course(tmp_path, checkout) -> Path:
    """A git repository with this course's release files (the version, the notebooks, the release tool)."""
    repo = tmp_path / "course"
    for rel in ["tools/set_version.py", "ddpm_lib/__init__.py", "CITATION.cff", *(str(p.relative_to(ROOT)) for p in NOTEBOOKS)]:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, repo / rel)
    (repo / "CHANGELOG.md").write_text("# Changelog\n\n## Unreleased\n\n- a change\n\n## 0.0.1 (2026-01-01)\n")
    assert git(repo, "init", "-q").returncode == 0
    git(repo, "add", "-A")
    assert git(repo, "commit", "-q", "-m", "course").returncode == 0
    return repo


def test_a_missing_or_wrong_commit_is_caught_and_make_release_pins_the_right_one(tiny_course):
    repo = tiny_course
    version = ddpm_lib.__version__
    assert "not a full commit hash" in ref_problems(repo, f"v{version}", version, set())[0]
    (problem,) = ref_problems(repo, "0" * 40, version, set())
    assert "does not have" in problem and "make release" in problem
    first = git(repo, "rev-parse", "HEAD").stdout.strip()
    assert any("holds ddpm_lib" in p for p in ref_problems(repo, first, "9.9.9", set()))
    # a notebook importing a module the pinned library lacks
    (repo / "ddpm_lib" / "brand_new.py").write_text("")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "new module")
    assert any("ddpm_lib.brand_new" in p for p in
               ref_problems(repo, first, version, {"ddpm_lib", "ddpm_lib.brand_new", "ddpm_lib.require"}))

    run = subprocess.run([sys.executable, "tools/set_version.py", "9.9.9", "--tag"], cwd=repo,
                         capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    assert run.returncode == 0, run.stderr
    assert "git push origin HEAD v9.9.9" in run.stdout
    release = git(repo, "rev-parse", "v9.9.9^{commit}").stdout.strip()
    assert git(repo, "rev-parse", "HEAD~1").stdout.strip() == release  # HEAD is the pin on top of the release
    assert ref_problems(repo, release, "9.9.9", {"ddpm_lib.brand_new"}) == []
    assert git(repo, "status", "--porcelain").stdout == ""  # both commits made, nothing left over
    assert 'version: "9.9.9"' in git(repo, "show", "v9.9.9:CITATION.cff").stdout
    changelog = git(repo, "show", "v9.9.9:CHANGELOG.md").stdout
    assert re.search(r"^## 9\.9\.9 \(\d{4}-\d{2}-\d{2}\)$", changelog, re.M) and "## Unreleased" not in changelog
    for path in NOTEBOOKS:
        nb = repo / "notebooks" / path.name
        assert install_ref(nb) == release
        assert 'ddpm_lib.require("9.9.9")' in cell_source(nb, 2)


@pytest.mark.parametrize("case", ["dirty", "existing tag", "bad version"])
def test_make_release_refuses_in_one_line(tiny_course, case):
    repo = tiny_course
    version = "9.9.9"
    if case == "dirty":
        (repo / "ddpm_lib" / "__init__.py").write_text("# edited\n", encoding="utf-8")
    elif case == "existing tag":
        git(repo, "tag", "-a", "v9.9.9", "-m", "already")
    else:
        version = "latest"
    before = git(repo, "rev-parse", "HEAD").stdout
    run = subprocess.run([sys.executable, "tools/set_version.py", version, "--tag"], cwd=repo,
                         capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1, run.stderr
    assert {"dirty": "uncommitted", "existing tag": "already exists", "bad version": "not a version"}[case] in run.stderr
    assert git(repo, "rev-parse", "HEAD").stdout == before


def test_a_clone_without_tags_still_has_the_pinned_commit(checkout, tmp_path):
    """CI tests a fresh clone of the branch, which may come without tags: the pinned commit is still there."""
    clone = tmp_path / "clone"
    assert subprocess.run(["git", "clone", "-q", "--no-tags", "--no-checkout", str(checkout), str(clone)],
                          capture_output=True).returncode == 0
    assert git(clone, "tag", "--list").stdout.strip() == ""
    ref = install_ref(NOTEBOOKS[0])
    assert ref_problems(clone, ref, ddpm_lib.__version__, set()) == []


# --- Colab's packages stay -------------------------------------------------------------------------


def pip_dry_run(tmp_path: Path, installed: dict[str, str], constraints: str, args: list[str]):
    """Resolve the install cell's requirement with pip, offline, on a machine that has ``installed``."""
    site = tmp_path / "site"
    for name, version in installed.items():
        info = site / f"{name}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "INSTALLER").write_text("pip\n")
    # the project as the git ref would deliver it: its metadata comes from pyproject.toml
    proj = tmp_path / "ddpm-course"
    (proj / "ddpm_lib").mkdir(parents=True)
    for rel in ["pyproject.toml", "README.md", "ddpm_lib/__init__.py",
                *(p.name for p in ROOT.glob("LICENSE*"))]:
        shutil.copy(ROOT / rel, proj / rel)
    (tmp_path / "constraints.txt").write_text(constraints)
    flags = [a for a in args if a.startswith("-") and a not in ("-q", "--quiet")]  # keep pip's "already satisfied" lines
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(PYTHONPATH=str(site), PIP_CONFIG_FILE=os.devnull, PIP_DISABLE_PIP_VERSION_CHECK="1")
    res = subprocess.run([sys.executable, "-m", "pip", "install", *flags, "--dry-run", "--no-index",
                          "--no-build-isolation", "--report", str(tmp_path / "report.json"),
                          "-c", str(tmp_path / "constraints.txt"), f"ddpm-course @ {proj.as_uri()}"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    if res.returncode != 0:
        return None, res.stdout + res.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    return {i["metadata"]["name"]: i["metadata"]["version"] for i in report["install"]}, res.stdout


def test_the_install_cell_on_colab_installs_only_ddpm_course(tmp_path):
    chosen, out = pip_dry_run(tmp_path, COLAB_INSTALLED, COLAB_CONSTRAINTS, install_args(NOTEBOOKS[0]))
    assert chosen == {"ddpm-course": ddpm_lib.__version__}, out
    for name in ("torch", "torchvision", "ipywidgets"):
        assert re.search(rf"Requirement already satisfied: {name}\b.*\({COLAB_INSTALLED[name]}\)", out), out


def test_the_dry_run_does_see_a_requirement_colab_misses(tmp_path):
    """The same check on a runtime whose torch is below the floor: pip must want another torch."""
    chosen, out = pip_dry_run(tmp_path, {**COLAB_INSTALLED, "torch": "2.3.1"}, "", install_args(NOTEBOOKS[0]))
    assert chosen is None and re.search(r"No matching distribution found for torch>=", out), out
