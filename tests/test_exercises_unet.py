"""The timestep-embedding checker accepts a correct answer and names the usual mistakes."""

from __future__ import annotations

import math

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.unet import check_timestep_embedding
from ddpm_lib.models.embeddings import timestep_embedding


def correct(t, dim):
    # written independently of the checker: Vaswani's PE(t, 2i) = sin(t / 10000^(2i/dim)), sines first
    half = dim // 2
    rows = []
    for tv in t.tolist():
        angles = [tv / 10000 ** (2 * i / dim) for i in range(half)]
        rows.append([math.sin(a) for a in angles] + [math.cos(a) for a in angles])
    return torch.tensor(rows)


def _variant(order="sin_cos", exponent=lambda i, half, dim: i / half, base=10000.0):
    def fn(t, dim):
        half = dim // 2
        i = torch.arange(half, dtype=torch.float32)
        freqs = base ** (-exponent(i, half, dim))
        a = t.float()[:, None] * freqs
        if order == "cos_sin":
            return torch.cat([torch.cos(a), torch.sin(a)], 1)
        if order == "interleaved":
            return torch.stack([torch.sin(a), torch.cos(a)], 2).reshape(len(t), dim)
        return torch.cat([torch.sin(a), torch.cos(a)], 1)

    return fn


def test_accepts_ho_et_al_exponent_and_says_so(capsys):
    # Ho et al.'s code: emb = exp(-log(10000) * arange(half) / (half - 1)): a correct embedding too
    assert check_timestep_embedding(_variant(exponent=lambda i, half, dim: i / (half - 1))) is not None
    out = capsys.readouterr().out
    assert "Correct" in out and "i/(h-1)" in out


def test_rejects_switching_conventions():
    def mixed(t, dim):
        return _variant(exponent=(lambda i, half, d: i / (half - 1)) if dim == 6 else (lambda i, half, d: i / half))(t, dim)

    with pytest.raises(ExerciseError, match="switches"):
        check_timestep_embedding(mixed)


def test_accepts_correct_answers(capsys):
    check_timestep_embedding(correct)
    check_timestep_embedding(timestep_embedding)  # the library's version, too
    check_timestep_embedding(_variant())
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn,words",
    [
        (_variant(order="cos_sin"), "cosines first"),
        (_variant(order="interleaved"), "interleaved"),
        (_variant(exponent=lambda i, half, dim: i / dim), "-i/dim"),
        (_variant(base=math.e), "base e"),
        (_variant(base=1000.0), "frequencies are not"),
        (lambda t, dim: torch.sin(t.float()[:, None] * torch.ones(dim)), "row 0"),
        (lambda t, dim: correct(t, dim)[:, : dim // 2], "shape"),
        (lambda t, dim: torch.cat([correct(t, dim)] * 2, 1), "shape"),
        (lambda t, dim: correct(t, dim).long(), "float"),
        (lambda t, dim: correct(t, dim).tolist(), "torch.Tensor"),
    ],
)
def test_rejects_plausible_mistakes(fn, words):
    with pytest.raises(ExerciseError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_timestep_embedding(fn)


def test_unwritten_exercise():
    def todo(t, dim):
        raise NotImplementedError("your code here")

    assert check_timestep_embedding(todo) is check_timestep_embedding.reference  # not done: the reference is handed back
