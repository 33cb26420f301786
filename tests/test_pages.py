"""The pages a course has: LICENSE, CITATION.cff, CHANGELOG.md, docs/troubleshooting.md and
docs/instructor_guide.md, checked against the code they describe (version, exercises, commands)."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

import ddpm_lib

ROOT = Path(__file__).resolve().parent.parent
PAGES = ["LICENSE", "CITATION.cff", "CHANGELOG.md", "docs/troubleshooting.md", "docs/instructor_guide.md"]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_the_license_is_mit_with_its_holder_and_pyproject_says_so():
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("MIT License\n")
    assert "Copyright (c) 2026 the ddpm-course authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS"' in text
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert re.search(r'^license = "MIT"$', pyproject, re.M), "pyproject.toml: use the SPDX form license = \"MIT\""
    assert re.search(r'^license-files = \["LICENSE"\]$', pyproject, re.M)
    assert "License :: OSI Approved" not in pyproject  # with an SPDX license the classifier is an error


def test_citation_cff_is_valid_cff_1_2_and_names_this_version():
    yaml = pytest.importorskip("yaml")
    cff = yaml.safe_load((ROOT / "CITATION.cff").read_text())
    # the keys CFF 1.2.0 requires (https://github.com/citation-file-format/citation-file-format, schema.json)
    for key in ("cff-version", "message", "title", "authors"):
        assert cff.get(key), f"CITATION.cff lacks {key}"
    assert cff["cff-version"] == "1.2.0"
    assert cff["version"] == ddpm_lib.__version__
    assert cff["license"] == "MIT"
    assert cff["repository-code"] == ddpm_lib.REPO_URL
    assert all("name" in a or "family-names" in a for a in cff["authors"])
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", str(cff["date-released"]))


def test_the_changelog_has_a_section_for_this_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(ddpm_lib.__version__)} \(", text, re.M), (
        f"CHANGELOG.md has no '## {ddpm_lib.__version__} (date)' section")


def test_the_readme_links_every_page():
    readme = (ROOT / "README.md").read_text()
    for page in PAGES:
        assert f"]({page})" in readme, f"README.md does not link {page}"


def exercises_per_notebook() -> dict[str, list[str]]:
    """The check_... calls in each instructor notebook's code cells, in order (what grade reads)."""
    out = {}
    for path in NOTEBOOKS:
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        code = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        names = re.findall(r"\b(check_\w+)\s*\(", code)
        assert code.count("### BEGIN SOLUTION") == len(names), f"{path.name}: solutions and checkers differ in number"
        out[path.stem[:2]] = names
    return out


def test_the_instructor_guide_counts_the_exercises_the_notebooks_have():
    guide = (ROOT / "docs" / "instructor_guide.md").read_text()
    found = exercises_per_notebook()
    total = sum(len(v) for v in found.values())
    rows = {m[0]: m[1:] for m in re.findall(r"^\| (\d\d) [^|]+\| (\d+) \| ([^|]+) \| (\d+)% \|$", guide, re.M)}
    assert set(rows) == set(found), (sorted(rows), sorted(found))
    for nb, names in found.items():
        count, checkers, share = rows[nb]
        assert int(count) == len(names), f"docs/instructor_guide.md: notebook {nb} has {len(names)} exercises"
        assert re.findall(r"`(check_\w+)`", checkers) == names, nb
        assert int(share) == round(100 * len(names) / total), nb
    assert f"| **total** | **{total}** |" in guide and f"over {total}." in guide


@pytest.mark.parametrize("page", ["README.md", "CHANGELOG.md", "docs/troubleshooting.md", "docs/instructor_guide.md"])
def test_commands_and_links_in_the_pages_exist(page):
    text = (ROOT / page).read_text()
    for module in set(re.findall(r"python -m (ddpm_lib[\w.]*)", text)):
        assert importlib.util.find_spec(module) is not None, f"{page}: `python -m {module}`: no such module"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if not re.match(r"[a-z]+:", target):
            assert (ROOT / Path(page).parent / target).exists(), f"{page}: the link {target} leads nowhere"
    makefile = (ROOT / "Makefile").read_text()
    for target in set(re.findall(r"`make ([a-z][a-z-]*)", text)):
        assert re.search(rf"^{target}:", makefile, re.M), f"{page}: `make {target}` is not a Makefile target"
