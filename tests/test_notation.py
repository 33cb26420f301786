"""The notebooks keep to docs/notation.md (issue 19 item 3).

- every notebook's first cell links the notation page, and the page exists;
- the noise has one spelling in maths, ``\\epsilon``: no ``\\varepsilon``, no Unicode epsilon;
- ``\\sigma_t`` only means the reverse step's standard deviation: a short list of banned patterns catches
  it used as the noise level of x_t (the sqrt(1 - alpha_bar_t) of eq. 4), as in "eps ~ -sigma_t grad log p_t";
- the code names the page gives for the schedule's quantities exist.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ddpm_lib.diffusion.schedules import make_schedule

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "docs" / "notation.md"
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
LINK = "../docs/notation.md"

OTHER_EPSILONS = ["\\varepsilon", "\u03b5", "\u03f5"]  # LaTeX's variant, Greek small epsilon, lunate epsilon
# sigma_t next to a score / gradient, or set equal to the forward noise level: the noise-level meaning
BANNED_SIGMA = [
    re.compile(r"\\sigma_t\s*\\nabla"),                              # -\sigma_t \nabla log p_t
    re.compile(r"\\sigma_t\s*\^?\s*2?\s*=\s*\\?sqrt\{?\s*1\s*-\s*\\bar"),  # \sigma_t = \sqrt{1-\bar\alpha_t}
    re.compile(r"\\sigma_t\^2\s*=\s*1\s*-\s*\\bar"),                  # \sigma_t^2 = 1 - \bar\alpha_t
    re.compile(r"sigma_t\s*\*?\s*(grad|score|∇)", re.I),             # "sigma_t * grad log p", "sigma_t score"
]


def cells(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["cells"]


def text(cell: dict) -> str:
    return "".join(cell["source"])


params = pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)


def test_the_page_exists_and_defines_the_symbols():
    page = PAGE.read_text(encoding="utf-8")
    for symbol in ["x_t", "\\epsilon", "\\beta_t", "\\alpha_t", "\\bar\\alpha_t", "\\tilde\\beta_t", "\\sigma_t",
                   "\\mathrm{SNR}_t", "\\lambda_t", "$w$", "w'", "code index `t` is the paper's step $t + 1$"]:
        assert symbol in page, symbol


def test_the_pages_code_names_exist():
    schedule = make_schedule("linear", 100)
    names = set(re.findall(r"`schedule\.([a-z_0-9]+)", PAGE.read_text(encoding="utf-8")))
    assert {"betas", "alphas", "alpha_bars", "snr", "log_snr", "posterior_variance"} <= names
    for name in names:
        assert hasattr(schedule, name), f"docs/notation.md names schedule.{name}, which NoiseSchedule lacks"


@params
def test_first_cell_links_the_notation_page(path):
    first = text(cells(path)[0])
    assert f"]({LINK})" in first, f"{path.name}: the first cell must link {LINK}"
    assert (path.parent / LINK).resolve() == PAGE and PAGE.is_file()


@params
def test_one_spelling_of_epsilon(path):
    for i, cell in enumerate(cells(path)):
        for other in OTHER_EPSILONS:
            assert other not in text(cell), f"{path.name}, cell {i}: write the noise as \\epsilon, not {other!r}"


@params
def test_sigma_t_is_never_the_noise_level(path):
    for i, cell in enumerate(cells(path)):
        for pattern in BANNED_SIGMA:
            m = pattern.search(text(cell))
            assert m is None, (f"{path.name}, cell {i}: {m.group(0)!r} uses sigma_t as the noise level of x_t; "
                               "write \\sqrt{1-\\bar\\alpha_t} (docs/notation.md)")


def test_the_banned_patterns_catch_the_old_sentences():
    old = [r"$\epsilon_\theta(x_t, t, y) \approx -\sigma_t \nabla_{x_t} \log p_t(x_t \mid y)$",  # 06 before the fix
           r"with $\sigma_t = \sqrt{1-\bar\alpha_t}$", "eps ~ -sigma_t grad log p_t"]
    for sentence in old:
        assert any(p.search(sentence) for p in BANNED_SIGMA), sentence
    fine = [r"$p_\theta(x_{t-1} \mid x_t) = \mathcal N(\tilde\mu_t, \sigma_t^2 I)$", r"$\sigma_t^2 = \tilde\beta_t$",
            r"-\sqrt{1-\bar\alpha_t}\,\nabla_{x_t} \log p_t(x_t)"]
    for sentence in fine:
        assert not any(p.search(sentence) for p in BANNED_SIGMA), sentence
