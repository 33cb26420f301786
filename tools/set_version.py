"""Set the release version everywhere it is written, and with --tag make the release (README "Releasing").

    python tools/set_version.py 0.3.0          # only rewrite the version (library, citation, require lines)
    python tools/set_version.py 0.3.0 --tag    # = make release VERSION=0.3.0: rewrite, commit, pin, tag v0.3.0

Rewrites ``ddpm_lib.__version__`` (and ``version:`` in ``CITATION.cff``) and, in the notebooks and the
student edition ``student/``, the version every notebook's setup cell requires (``ddpm_lib.require("0.3.0")``);
adds the ``require`` line to a setup cell that lacks it. Only those lines change (cell ids and every other
cell are kept).

With ``--tag`` (what ``make release`` runs) it makes the release in two commits. First it renames
CHANGELOG.md's "## Unreleased" section to "## X.Y.Z (date)", sets CITATION.cff's ``date-released``, and
commits all that ("release X.Y.Z"): the **release commit**. Then it writes that commit's full hash into
every notebook's Colab install cell (``...ddpm-course@<hash>``) and commits that ("pin ..."). A commit
cannot name its own hash, hence two commits. The install cells pin a commit hash rather than a tag because
a commit travels with every clone and push of the branch, while a tag needs its own push (a repository
that was cloned or pushed without tags would name a ref it does not have); the annotated tag ``vX.Y.Z`` is
still created on the release commit, for people. It first refuses, with one line and status 2, a working
tree with uncommitted changes or a tag ``vX.Y.Z`` that already exists. ``tests/test_install_cell.py``
fails while a notebook names a commit this repository lacks, or one whose library has another version.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_RE = re.compile(r'(%pip install -q "ddpm-course @ git\+https://github\.com/ddpm-course/ddpm-course)(@[^"]*)?"')
REQUIRE_RE = re.compile(r'ddpm_lib\.require\("[^"]*"\)')
REQUIRE_LINES = ["import ddpm_lib\n", "\n", 'ddpm_lib.require("{v}")  # stops with a one-line fix if the installed ddpm_lib is older\n']


def _notebooks() -> list[Path]:
    """The course notebooks and the student edition (``student/``, `make student-edition`): same install and setup cells."""
    return sorted([*(ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"), *(ROOT / "student").glob("[0-9][0-9]_*.ipynb")])


def _rewrite_notebook(path: Path, edit) -> bool:
    """Apply ``edit(install_cell, setup_cell)`` to one notebook; write it back when it changed."""
    raw = path.read_text(encoding="utf-8")
    nb = json.loads(raw)
    edit(nb["cells"][1], nb["cells"][2])
    out = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
    if out == raw:
        return False
    path.write_text(out, encoding="utf-8")
    return True


def pin_install_cells(commit: str) -> list[str]:
    """Point every notebook's Colab install cell at ``commit`` (a full hash); returns the files changed."""
    def edit(install, setup):
        install["source"] = [INSTALL_RE.sub(rf'\1@{commit}"', line) for line in install["source"]]

    return [str(p.relative_to(ROOT)) for p in _notebooks() if _rewrite_notebook(p, edit)]


def set_version(version: str) -> list[str]:
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise SystemExit(f"set_version: {version!r} is not a version like 0.3.0")
    changed = []
    init = ROOT / "ddpm_lib" / "__init__.py"
    src = init.read_text()
    new = re.sub(r'^__version__ = "[^"]*"', f'__version__ = "{version}"', src, count=1, flags=re.M)
    if new != src:
        init.write_text(new)
        changed.append(str(init.relative_to(ROOT)))
    cff = ROOT / "CITATION.cff"
    if cff.is_file():
        text = cff.read_text(encoding="utf-8")
        new = re.sub(r'^version: "[^"]*"', f'version: "{version}"', text, count=1, flags=re.M)
        if new != text:
            cff.write_text(new, encoding="utf-8")
            changed.append(str(cff.relative_to(ROOT)))
    def edit(install, setup):
        if any(REQUIRE_RE.search(line) for line in setup["source"]):
            setup["source"] = [REQUIRE_RE.sub(f'ddpm_lib.require("{version}")', line) for line in setup["source"]]
        else:
            setup["source"] = [line.format(v=version) for line in REQUIRE_LINES] + ["\n"] + setup["source"]

    return changed + [str(p.relative_to(ROOT)) for p in _notebooks() if _rewrite_notebook(p, edit)]


def _git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


def stamp_release_date(version: str) -> list[str]:
    """On release: CHANGELOG.md's "## Unreleased ..." heading becomes "## X.Y.Z (today)" and CITATION.cff's
    ``date-released`` today (UTC). Returns the files changed."""
    today = datetime.datetime.now(datetime.timezone.utc).date().isoformat()
    changed = []
    for name, pattern, repl in [("CHANGELOG.md", r"^## Unreleased\b.*$", f"## {version} ({today})"),
                                ("CITATION.cff", r'^date-released: "[^"]*"', f'date-released: "{today}"')]:
        path = ROOT / name
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            new = re.sub(pattern, repl, text, count=1, flags=re.M)
            if new != text:
                path.write_text(new, encoding="utf-8")
                changed.append(name)
    return changed


def release(version: str) -> str:
    """Set ``version`` everywhere and commit (the release commit), pin the install cells to that commit's
    hash and commit again, and create the annotated tag ``v<version>`` on the release commit.

    Returns the release commit's hash. Exits with status 2 and one line on a dirty tree or an existing tag.
    """
    if not re.fullmatch(r"\d+\.\d+\.\d+", version):
        raise SystemExit(f"set_version: {version!r} is not a version like 0.3.0")
    tag = f"v{version}"
    if _git("rev-parse", "--git-dir").returncode != 0:
        print(f"set_version --tag: {ROOT} is not a git checkout; run it in a clone of the course", file=sys.stderr)
        raise SystemExit(2)
    dirty = _git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    if dirty:
        first = dirty.splitlines()[0]
        print(f"set_version --tag: uncommitted changes ({first.strip()} ...): commit or stash them first, "
              "so the tag holds exactly what is committed", file=sys.stderr)
        raise SystemExit(2)
    if _git("rev-parse", "--verify", "--quiet", f"refs/tags/{tag}").returncode == 0:
        print(f"set_version --tag: the tag {tag} already exists; release a new version "
              f"(or delete it first: git tag -d {tag})", file=sys.stderr)
        raise SystemExit(2)
    changed = list(dict.fromkeys(set_version(version) + stamp_release_date(version)))
    for name in changed:
        print(f"updated {name}")
    if changed:
        _commit(f"release {version}: ddpm_lib.__version__, CITATION.cff, CHANGELOG.md and the notebooks' "
                f"require(\"{version}\")", changed)
    commit = _git("rev-parse", "HEAD").stdout.strip()
    made = _git("tag", "-a", tag, "-m", f"ddpm-course {version}", commit)
    if made.returncode != 0:
        raise SystemExit(f"set_version --tag: git tag failed: {made.stderr.strip()}")
    pinned = pin_install_cells(commit)
    for name in pinned:
        print(f"pinned {name}")
    if pinned:
        _commit(f"pin the Colab install cells to release {version} ({commit[:12]})", pinned)
    print(f"released {version} at {commit[:12]} (tag {tag}); the install cells pin {commit[:12]}; "
          f"publish with: git push origin HEAD {tag}")
    return commit


def _commit(message: str, files: list[str]) -> None:
    done = _git("commit", "-q", "-m", message, "--", *files)
    if done.returncode != 0:
        raise SystemExit(f"set_version --tag: git commit failed: {done.stderr.strip()}")


if __name__ == "__main__":
    args = sys.argv[1:]
    tag = "--tag" in args
    args = [a for a in args if a != "--tag"]
    if len(args) != 1 or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        raise SystemExit(0 if args and args[0] in ("-h", "--help") else 2)
    if tag:
        release(args[0])
    else:
        for name in set_version(args[0]):
            print(f"updated {name}")
