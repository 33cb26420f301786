"""The rendered edition of the course: static HTML pages of the executed notebooks (README "Rendered edition").

    python -m tools.build_site                  # = make site: execute every notebook (DDPM_MODE decides), render
    python -m tools.build_site --from DIR       # = make site SITE_FROM=DIR: render notebooks executed into DIR

Rendered with nbconvert's ``HTMLExporter`` (the ``lab`` template): a maintained Jupyter tool that the course
already installs (``make run`` uses it), which embeds every output image in its page as a ``data:`` URI (a
page is one self-contained file) and leaves the maths to MathJax in the browser, as JupyterLab does
(``--mathjax-url``; default nbconvert's, MathJax 2.7.7 from a CDN). It has no search.

Executing (no ``--from``) reuses ``benchmarks/notebook_times.py --out build/notebooks-<mode>``: each notebook in
a fresh kernel, in order (05-07 use what 04 and 06 trained). The course's notebooks are those of
``benchmarks/notebook_times.json``; each page's title is its notebook's first heading, the index's line for it
the "what you do" column of the README's notebook table.

``build/site`` mirrors the repository, so the notebooks' relative links keep their meaning: ``index.html``
(the course map), ``notebooks/NN_name.html``, ``docs/notation.html``. In the pages, a local link to a course
notebook or to ``docs/notation.md`` is pointed at its page, one to any other file of the repository at that
file on GitHub (``ddpm_lib.REPO_URL``); a link to nothing is left as it is, and :func:`check_site` reports it.
:func:`check_site` checks that every local ``href``/``src`` of every page names a built file and that every
notebook page shows its images: at least as many embedded images as its notebook has image outputs, and at
least one when its code plots (``plt.`` or ``show_images``), so a notebook that was never executed is caught.
"""

from __future__ import annotations

import argparse
import copy
import html
import os
import re
import sys
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parent.parent
NOTATION = "docs/notation.md"
# a URL with a scheme (https:, data:, mailto:, file:) or protocol-relative: not a file of the site
EXTERNAL_RE = re.compile(r"^(?:[a-zA-Z][a-zA-Z0-9+.-]*:|//)")
ATTR_RE = re.compile(r"""\b(href|src)=(["'])(.*?)\2""", re.S)
EMBEDDED_IMG_RE = re.compile(r"""<img\b[^>]*\bsrc=["']data:image/""")
IMAGE_MIMES = ("image/png", "image/jpeg", "image/gif")
PLOTS_RE = re.compile(r"\bplt\.|\bshow_images\(")
MODE_RE = re.compile(r"ddpm_lib settings: mode=(\w+)")
NAV_CSS = ("<style>.site-nav{font-family:sans-serif;font-size:14px;padding:8px 12px;margin-bottom:8px;"
           "border-bottom:1px solid #ccc;display:flex;gap:1.5em}.site-nav a{text-decoration:none}</style>")


def course_stems(root: Path = ROOT) -> list[str]:
    """The course's notebooks, in order: the entries of ``benchmarks/notebook_times.json``."""
    from benchmarks.notebook_times import load_times

    return sorted(load_times(root / "benchmarks" / "notebook_times.json")["notebooks"])


def _text(cell) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


def title_of(nb) -> str:
    """A notebook's first markdown heading ``# ...`` (its title)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^#\s+(.+?)\s*$", _text(cell), re.M)
            if m:
                return m.group(1)
    return ""


def map_lines(readme: str) -> dict[str, str]:
    """{"04": "the simple loss (eq. 14), ...", ...}: the "what you do" column of the README's notebook table."""
    from benchmarks.notebook_times import ROW_RE

    rows = {}
    for line in readme.split("\n"):
        m = ROW_RE.match(line)
        if m and len(line.split("|")) > 4:
            rows[m.group(1)] = line.split("|")[3].strip()
    return rows


def image_outputs(nb) -> int:
    """How many image outputs (png, jpeg, gif) the notebook carries."""
    return sum(any(m in out.get("data", {}) for m in IMAGE_MIMES)
               for cell in nb.cells if cell.cell_type == "code" for out in cell.get("outputs", []))


def plots(nb) -> bool:
    """Whether the notebook's code draws a figure (matplotlib's ``plt.`` or ``ddpm_lib.viz.show_images``)."""
    return any(PLOTS_RE.search(_text(c)) for c in nb.cells if c.cell_type == "code")


def outputs_mode(notebooks) -> str:
    """The DDPM_MODE the notebooks ran in, read from the settings banner they printed; "unknown" if none or several."""
    modes = {m for nb in notebooks for c in nb.cells if c.cell_type == "code" for out in c.get("outputs", [])
             for m in MODE_RE.findall(out.get("text", ""))}
    return modes.pop() if len(modes) == 1 else "unknown"


def _rewrite_links(page_html: str, source: Path, page: str, pages: dict[str, str], root: Path) -> str:
    """Point the local links of a page rendered from ``source`` (a file of ``root``) at built pages or GitHub."""
    from ddpm_lib import REPO_URL

    def fix(m):
        attr, quote, url = m.groups()
        if not url or url.startswith("#") or EXTERNAL_RE.match(url):
            return m.group(0)
        path, sep, frag = html.unescape(url).partition("#")
        target = Path(os.path.normpath(source.parent / unquote(path)))
        try:
            rel = target.relative_to(root).as_posix()
        except ValueError:
            return m.group(0)  # outside the repository: left for check_site to report
        if rel in pages:
            new = os.path.relpath(pages[rel], os.path.dirname(page) or ".").replace(os.sep, "/")
        elif target.exists():
            new = f"{REPO_URL}/{'tree' if target.is_dir() else 'blob'}/main/{rel}"
        else:
            return m.group(0)  # a link to nothing: check_site reports it
        return f"{attr}={quote}{html.escape(new + sep + frag)}{quote}"

    return ATTR_RE.sub(fix, page_html)


def _nav(page: str, links: list[tuple[str, str]]) -> str:
    up = os.path.dirname(page)
    items = "".join(f'<a href="{html.escape(os.path.relpath(href, up or "."))}">{html.escape(label)}</a>'
                    for label, href in links)
    return f'{NAV_CSS}<nav class="site-nav">{items}</nav>'


def _with_gifs(nb):
    """A copy of ``nb`` whose image/gif outputs also carry an HTML ``<img>`` of the GIF: nbconvert's templates
    render png, jpeg and svg, and would show an animation (notebook 05's trajectory) as its text form."""
    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            gif = out.get("data", {}).get("image/gif")
            if gif and "text/html" not in out["data"]:
                out["data"]["text/html"] = f'<img alt="animation" src="data:image/gif;base64,{"".join(gif.split())}">'
    return nb


def _render(exporter, nb, title: str, nav: str) -> str:
    body, _ = exporter.from_notebook_node(_with_gifs(nb), resources={"metadata": {"name": title}})
    return body.replace("<main>", "<main>\n" + nav, 1)


def _markdown_notebook(text: str):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_markdown_cell(text))
    return nb


def build_site(executed: Path, out: Path, stems: list[str], *, root: Path = ROOT, images: bool = True,
               mathjax_url: str | None = None) -> dict[str, int]:
    """Render ``executed/<stem>.ipynb`` for each stem, ``docs/notation.md`` and an index into ``out``.

    Links are resolved as if each notebook sat at ``root/notebooks/<stem>.ipynb``. Returns {page: the fewest
    embedded images it must show} for :func:`check_site`; with ``images=False`` (notebooks rendered without
    executing them) only as many as the notebook carries.
    """
    import nbformat
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(template_name="lab")
    if mathjax_url:
        exporter.mathjax_url = mathjax_url
    nbs = {s: nbformat.read(executed / f"{s}.ipynb", as_version=4) for s in stems}
    pages = {f"notebooks/{s}.ipynb": f"notebooks/{s}.html" for s in stems}
    pages[NOTATION] = "docs/notation.html"
    pages["index.md"] = "index.html"  # the index's own source location (the repository root)
    titles = {s: title_of(nb) or s for s, nb in nbs.items()}
    home, notation = ("course map", "index.html"), ("notation", "docs/notation.html")
    expected: dict[str, int] = {}

    def write(page: str, body: str, source: Path):
        body = _rewrite_links(body, source, page, pages, root)
        (out / page).parent.mkdir(parents=True, exist_ok=True)
        (out / page).write_text(body, encoding="utf-8")

    for i, s in enumerate(stems):
        nb, page = nbs[s], pages[f"notebooks/{s}.ipynb"]
        links = [home, notation]
        if i > 0:
            links.insert(0, (f"\u2190 {titles[stems[i - 1]]}", pages[f"notebooks/{stems[i - 1]}.ipynb"]))
        if i + 1 < len(stems):
            links.append((f"{titles[stems[i + 1]]} \u2192", pages[f"notebooks/{stems[i + 1]}.ipynb"]))
        write(page, _render(exporter, nb, titles[s], _nav(page, links)), root / "notebooks" / f"{s}.ipynb")
        expected[page] = max(image_outputs(nb), int(images and plots(nb)))

    notation_md = (root / NOTATION).read_text(encoding="utf-8")
    write(pages[NOTATION], _render(exporter, _markdown_notebook(notation_md), "Notation", _nav(pages[NOTATION], [home])),
          root / NOTATION)
    expected[pages[NOTATION]] = 0

    readme = root / "README.md"
    what = map_lines(readme.read_text(encoding="utf-8")) if readme.is_file() else {}
    from ddpm_lib import REPO_URL

    mode = outputs_mode(nbs.values())
    run = f"one run in **{mode} mode** (README, \"Modes\")" if mode != "unknown" else "one run"
    lines = ["# ddpm-course: the rendered course", "",
             "Denoising Diffusion Probabilistic Models (Ho et al. 2020) built from first principles in PyTorch, "
             f"one notebook at a time. These pages are the notebooks of [the repository]({REPO_URL}) with the outputs "
             f"of {run}; run them yourself with the Open-in-Colab badge at the top of each page, or `make lab` "
             "in a clone.", "", "## The notebooks", ""]
    for s in stems:
        line = what.get(s[:2], "")
        lines.append(f"- [{titles[s]}](notebooks/{s}.ipynb)" + (f": {line}" if line else ""))
    lines += ["", f"Every symbol and its code name: [the notation page]({NOTATION}).", "",
              f"Built by `make site` (`tools/build_site.py`, nbconvert's HTMLExporter); maths typeset by MathJax "
              f"from `{exporter.mathjax_url.split('?')[0]}`."]
    write("index.html", _render(exporter, _markdown_notebook("\n".join(lines)), "ddpm-course", ""), root / "index.md")
    expected["index.html"] = 0
    return expected


def local_refs(page_html: str) -> list[str]:
    """The ``href``/``src`` values of a page that name a file of the site (no scheme, not a bare #anchor)."""
    return [html.unescape(url) for _, _, url in ATTR_RE.findall(page_html)
            if url and not url.startswith("#") and not EXTERNAL_RE.match(url)]


def check_site(out: Path, expected: dict[str, int]) -> list[str]:
    """One line per problem: a local link or image of a page that names no built file, a page showing fewer
    embedded images than ``expected`` says, a page that was not built. (The ``#anchor`` part of a link is not
    checked.)"""
    problems = []
    for page, fewest in expected.items():
        path = out / page
        if not path.is_file():
            problems.append(f"{page}: not built")
            continue
        text = path.read_text(encoding="utf-8")
        for ref in local_refs(text):
            target = (path.parent / unquote(ref.partition("#")[0].partition("?")[0])).resolve()
            if not target.is_file() or out.resolve() not in target.parents:
                problems.append(f"{page}: broken link {ref!r} (no built file {target})")
        shown = len(EMBEDDED_IMG_RE.findall(text))
        if shown < fewest:
            problems.append(f"{page}: shows {shown} embedded images, expected at least {fewest} (its notebook's "
                            "image outputs, and one if its code plots: was it executed?)")
    return problems


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--from", dest="src", type=Path, default=None,
                   help="a folder of executed notebooks (make run's build/notebooks); default: execute them now "
                        "into build/notebooks-<mode> (DDPM_MODE decides the mode)")
    p.add_argument("--out", type=Path, default=ROOT / "build" / "site", help="where the site goes (default build/site)")
    p.add_argument("--mathjax-url", default=None,
                   help="MathJax 2 script the pages load (default nbconvert's CDN URL; a file:// URL for offline use)")
    args = p.parse_args(argv)
    stems = course_stems()
    if args.src is None:
        from benchmarks import notebook_times
        from ddpm_lib.settings import settings

        args.src = ROOT / "build" / f"notebooks-{settings.mode}"
        rc = notebook_times.main(["--out", str(args.src)])
        if rc:
            return rc
    missing = [s for s in stems if not (args.src / f"{s}.ipynb").is_file()]
    if missing:
        print(f"build_site: --from {args.src} has no {missing[0]}.ipynb ({len(missing)} of the {len(stems)} course "
              "notebooks missing): give the folder `make run` wrote (build/notebooks), or leave SITE_FROM unset to "
              "execute them.", file=sys.stderr)
        return 2
    expected = build_site(args.src, args.out, stems, mathjax_url=args.mathjax_url)
    problems = check_site(args.out, expected)
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        return 1
    print(f"built {len(expected)} pages into {args.out} from {args.src}: every local link resolves and every notebook "
          f"page shows its images ({sum(expected.values())} at least); open {args.out / 'index.html'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
