"""Set the release version everywhere it is written (README "Releasing").

    python tools/set_version.py 0.3.0

Rewrites ``ddpm_lib.__version__``, the ref every notebook's Colab cell installs
(``...ddpm-course@v0.3.0``) and the version every notebook's setup cell requires
(``ddpm_lib.require("0.3.0")``); adds the ``require`` line to a setup cell that lacks it. Only those
lines change (cell ids and every other cell are kept). ``tests/test_notebook_conventions.py`` checks
the three agree.
"""

from __future__ import annotations

import json
import re
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
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
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


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__.strip())
        raise SystemExit(0 if len(sys.argv) == 2 else 2)
    for name in set_version(sys.argv[1]):
        print(f"updated {name}")
