"""No checker prints the solution (issue 24 item 6).

Every checker of ``ddpm_lib.course.exercises`` is given a wrong answer (its own reference with the result nudged,
so that the answer has the right type and shape and reaches the value comparison, where a "got X,
expected Y" fallback lives). Everything the student would see (stdout, stderr and the ExerciseError's
message) must not contain a line of any exercise's solution in the instructor notebooks, nor a code line
of the checker's reference implementation.
"""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError, load_all

ROOT = Path(__file__).resolve().parent.parent
CHECKERS = load_all()
MIN_LEN = 14  # shorter lines ("return x", "half = dim // 2") are too generic to identify a solution


def _code_lines(text: str) -> set[str]:
    out = set()
    for line in text.splitlines():
        line = line.split("  #")[0].strip()
        if len(line) >= MIN_LEN and not line.startswith(("#", '"""', "def ", "@", "with ", "for ", "if ", "return (")) \
                and re.search(r"[=(\[]", line):
            out.add(line)
    return out


def _notebook_solution_lines() -> set[str]:
    lines: set[str] = set()
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"])
            for block in re.findall(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", src, flags=re.S):
                lines |= _code_lines(block)
    return lines


SOLUTION_LINES = _notebook_solution_lines()


def _reference_lines(checker) -> set[str]:
    src = inspect.getsource(checker.reference)
    body = src.split('"""')[-1] if src.count('"""') >= 2 else src  # drop the docstring
    return _code_lines(body)


def _nudge(value):
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            return value * 1.1 + 0.01
        return torch.zeros_like(value)  # e.g. labels: wrong class indices
    if isinstance(value, np.ndarray):
        return value * 1.1 + 0.01
    if isinstance(value, float):
        return value * 1.1 + 0.01
    if isinstance(value, tuple):
        return tuple(_nudge(v) for v in value)
    return value


def _wrong_answer(checker):
    ref = checker.reference

    def wrong(*args, **kwargs):
        out = ref(*args, **kwargs)
        if out is None:  # an in-place update (the EMA): nudge what it changed
            with torch.no_grad():
                for tensor in args[0]:
                    tensor.mul_(1.1).add_(0.01)
            return None
        return _nudge(out)

    wrong.__name__ = f"{checker.exercise}_wrong"
    return wrong


def test_the_solution_lines_were_found():
    assert len(SOLUTION_LINES) > 30, SOLUTION_LINES  # the notebooks' solutions were parsed, not an empty set
    assert "ab = alpha_bars[t].reshape(-1, 1, 1, 1)" in SOLUTION_LINES  # 04's loss, the line issue 24 saw printed


@pytest.mark.parametrize("name", sorted(CHECKERS))
def test_wrong_answer_never_shows_the_solution(name, capsys):
    checker = CHECKERS[name]
    with pytest.raises(ExerciseError) as info:
        checker(_wrong_answer(checker))
    captured = capsys.readouterr()
    shown = "\n".join([captured.out, captured.err, str(info.value), *info.value._render_traceback_()])
    leaked = sorted(line for line in SOLUTION_LINES | _reference_lines(checker) if line in shown)
    assert not leaked, f"check_{name} shows solution code: {leaked}\n---\n{shown}"
