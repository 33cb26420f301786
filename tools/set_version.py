"""Set the release version everywhere it is written, and with --tag make the release (README "Releasing").

    python tools/set_version.py 0.3.0          # only rewrite the files
    python tools/set_version.py 0.3.0 --tag    # = make release VERSION=0.3.0: rewrite, commit, tag v0.3.0

Rewrites ``ddpm_lib.__version__`` (and ``version:`` in ``CITATION.cff``), in the notebooks and the student
edition ``student/`` the ref every notebook's Colab cell installs
(``...ddpm-course@v0.3.0``) and the version every notebook's setup cell requires
(``ddpm_lib.require("0.3.0")``); adds the ``require`` line to a setup cell that lacks it. Only those
lines change (cell ids and every other cell are kept). ``tests/test_notebook_conventions.py`` checks
the three agree.

With ``--tag`` (what ``make release`` runs) it also renames CHANGELOG.md's "## Unreleased" section to
"## X.Y.Z (date)" and sets CITATION.cff's ``date-released``. It first refuses, with one line and status 2, a working tree
with uncommitted changes or a tag ``vX.Y.Z`` that already exists; then it rewrites the files, commits
them ("release X.Y.Z") when anything changed, and creates the annotated tag ``vX.Y.Z`` on that commit:
the ref every notebook's Colab cell installs. ``tests/test_install_cell.py`` fails while a notebook
names a tag this repository lacks, or a tag whose library has another version.
"""

from __future__ import annotations

import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INSTALL_RE = re.compile(r'(%pip install -q "ddpm-course @ git\+https://github\.com/ddpm-course/ddpm-course)(@v[^"]*)?"')
REQUIRE_RE = re.compile(r'ddpm_lib\.require\("[^"]*"\)')
REQUIRE_LINES = ["import ddpm_lib\n", "\n", 'ddpm_lib.require("{v}")  # stops with a one-line fix if the installed ddpm_lib is older\n']


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
    # the student edition (student/, `make student-edition`) has the same install and setup cells
    for path in sorted([*(ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"), *(ROOT / "student").glob("[0-9][0-9]_*.ipynb")]):
        raw = path.read_text(encoding="utf-8")
        nb = json.loads(raw)
        install, setup = nb["cells"][1], nb["cells"][2]
        install["source"] = [INSTALL_RE.sub(rf'\1@v{version}"', line) for line in install["source"]]
        if any(REQUIRE_RE.search(line) for line in setup["source"]):
            setup["source"] = [REQUIRE_RE.sub(f'ddpm_lib.require("{version}")', line) for line in setup["source"]]
        else:
            setup["source"] = [line.format(v=version) for line in REQUIRE_LINES] + ["\n"] + setup["source"]
        out = json.dumps(nb, indent=1, ensure_ascii=False) + "\n"
        if out != raw:
            path.write_text(out, encoding="utf-8")
            changed.append(str(path.relative_to(ROOT)))
    return changed


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
    """Set ``version`` everywhere, commit the change and create the annotated tag ``v<version>``.

    Returns the tagged commit's hash. Exits with status 2 and one line on a dirty tree or an existing tag.
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
        done = _git("commit", "-q", "-m", f"release {version}: ddpm_lib.__version__, the notebooks' install "
                    f"cells (@{tag}) and require(\"{version}\")", "--", *changed)
        if done.returncode != 0:
            raise SystemExit(f"set_version --tag: git commit failed: {done.stderr.strip()}")
    made = _git("tag", "-a", tag, "-m", f"ddpm-course {version}")
    if made.returncode != 0:
        raise SystemExit(f"set_version --tag: git tag failed: {made.stderr.strip()}")
    commit = _git("rev-parse", "HEAD").stdout.strip()
    print(f"tagged {tag} at {commit[:12]}; publish it with: git push origin HEAD {tag}")
    return commit


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
