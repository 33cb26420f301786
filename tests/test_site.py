"""`make site` (tools/build_site.py): the rendered edition builds, every local link resolves, every page shows
its images.

Executing the course takes minutes, so the site is built here from two tiny stand-in notebooks (maths, a
figure, relative links to the notation page and to each other), one of them executed in a fresh kernel with
DDPM_MODE=fast; the real notebooks are rendered without executing them, which checks their links. The two
failures the check exists for are shown: a broken link, and a page without its images.
"""

from __future__ import annotations

import shutil

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from tools.build_site import ROOT, build_site, check_site, course_stems, main

MATHS = r"$x_t = \sqrt{\bar\alpha_t}\,x_0 + \sqrt{1 - \bar\alpha_t}\,\epsilon$"
STEMS = ["00_demo", "01_next"]


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """(root, executed): a stand-in repository (notebooks/, docs/notation.md) and its executed notebooks."""
    from nbconvert.preprocessors import ExecutePreprocessor

    tmp = tmp_path_factory.mktemp("site")
    root, executed = tmp / "course", tmp / "executed"
    for d in (root / "notebooks", root / "docs", executed):
        d.mkdir(parents=True)
    (root / "docs" / "notation.md").write_text(
        "# Notation\n\n$\\bar\\alpha_t = \\prod_{s \\le t} (1 - \\beta_s)$; used in [the demo](../notebooks/00_demo.ipynb).\n")
    demo = new_notebook(cells=[
        new_markdown_cell(f"# 00 · Demo\n\nThe jump: {MATHS}; symbols on [the notation page](../docs/notation.md)."),
        new_code_cell("import matplotlib.pyplot as plt\n\nplt.plot([0, 1], [1, 0])\nplt.show()"),
        new_code_cell("import io\n\nfrom IPython.display import Image, display\nfrom PIL import Image as PILImage\n\n"
                      "frames = [PILImage.new('L', (8, 8), v) for v in (0, 255)]\nbuf = io.BytesIO()\n"
                      "frames[0].save(buf, format='GIF', save_all=True, append_images=frames[1:])\n"
                      "display(Image(data=buf.getvalue(), format='gif'))"),  # an animation, as 05 shows one
    ])
    (root / "README.md").write_text("# Demo\n\n| # | notebook | what you do |\n|---|---|---|\n"
                                    "| 00 | [demo](notebooks/00_demo.ipynb) | draw a line |\n| 01 | next | read on |\n")
    nxt = new_notebook(cells=[new_markdown_cell(
        "# 01 · Next\n\nBack to [the demo](00_demo.ipynb#the-jump), the [notation](../docs/notation.md).")])
    for stem, nb in zip(STEMS, (demo, nxt)):
        nbformat.write(nb, root / "notebooks" / f"{stem}.ipynb")
    mp = pytest.MonkeyPatch()
    mp.setenv("DDPM_MODE", "fast")
    try:
        ExecutePreprocessor(timeout=120, kernel_name="python3").preprocess(demo, {"metadata": {"path": str(root / "notebooks")}})
    finally:
        mp.undo()
    nbformat.write(demo, executed / "00_demo.ipynb")
    nbformat.write(nxt, executed / "01_next.ipynb")  # no code: nothing to execute
    return root, executed


def test_the_site_of_executed_notebooks_has_its_pages_images_maths_and_links(course, tmp_path):
    root, executed = course
    expected = build_site(executed, tmp_path, STEMS, root=root)
    assert expected == {"notebooks/00_demo.html": 2, "notebooks/01_next.html": 0, "docs/notation.html": 0, "index.html": 0}
    assert check_site(tmp_path, expected) == []
    demo = (tmp_path / "notebooks" / "00_demo.html").read_text()
    assert demo.count('src="data:image/png;base64,') == 1  # the figure, embedded
    assert demo.count('src="data:image/gif;base64,') == 1  # the animation (nbconvert alone shows its text form)
    assert r"\sqrt{\bar\alpha_t}" in demo and "cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7" in demo  # left to MathJax
    assert 'href="../docs/notation.html"' in demo and (tmp_path / "docs" / "notation.html").is_file()
    assert 'href="01_next.html"' in demo and 'href="../index.html"' in demo  # the navigation bar
    assert 'href="00_demo.html#the-jump"' in (tmp_path / "notebooks" / "01_next.html").read_text()
    assert 'href="../notebooks/00_demo.html"' in (tmp_path / "docs" / "notation.html").read_text()
    index = (tmp_path / "index.html").read_text()
    assert '<a href="notebooks/00_demo.html">00 · Demo</a>: draw a line' in index
    assert '<a href="notebooks/01_next.html">01 · Next</a>: read on' in index


def test_a_broken_link_is_reported(course, tmp_path):
    root, executed = course
    src = tmp_path / "executed"
    shutil.copytree(executed, src)
    nb = nbformat.read(src / "01_next.ipynb", as_version=4)
    nb.cells.append(new_markdown_cell("See [the appendix](../docs/appendix.md)."))
    nbformat.write(nb, src / "01_next.ipynb")
    site = tmp_path / "site"
    problems = check_site(site, build_site(src, site, STEMS, root=root))
    assert len(problems) == 1 and problems[0].startswith("notebooks/01_next.html: broken link '../docs/appendix.md'"), problems


def test_a_page_without_its_images_is_reported(course, tmp_path):
    root, executed = course
    src = tmp_path / "executed"
    shutil.copytree(executed, src)
    nb = nbformat.read(src / "00_demo.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = []  # as if the notebook had never been executed
    nbformat.write(nb, src / "00_demo.ipynb")
    site = tmp_path / "site"
    problems = check_site(site, build_site(src, site, STEMS, root=root))
    assert problems == ["notebooks/00_demo.html: shows 0 embedded images, expected at least 1 (its notebook's "
                        "image outputs, and one if its code plots: was it executed?)"]
    # an executed notebook's page that lost one of its images (the animation) is reported too
    site2 = tmp_path / "site2"
    expected = build_site(executed, site2, STEMS, root=root)
    page = site2 / "notebooks" / "00_demo.html"
    page.write_text(page.read_text().replace('src="data:image/gif', 'src="data:text/plain'))
    assert check_site(site2, expected) == ["notebooks/00_demo.html: shows 1 embedded images, expected at least 2 "
                                           "(its notebook's image outputs, and one if its code plots: was it executed?)"]


def test_the_course_notebooks_render_and_every_local_link_resolves(tmp_path):
    stems = course_stems()
    assert stems == sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    expected = build_site(ROOT / "notebooks", tmp_path, stems, images=False)  # committed without outputs
    assert check_site(tmp_path, expected) == []
    index = (tmp_path / "index.html").read_text()
    for stem in stems:
        page = (tmp_path / "notebooks" / f"{stem}.html").read_text()
        assert 'href="../docs/notation.html"' in page, stem  # every notebook links the notation page
        assert f'href="notebooks/{stem}.html"' in index, stem


def test_a_from_folder_without_the_notebooks_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["--from", str(tmp_path), "--out", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(tmp_path) in err and "00_welcome.ipynb" in err, err
