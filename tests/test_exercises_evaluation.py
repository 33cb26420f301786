"""Notebook 07's checkers (FID, KID, IS): the references agree with outside oracles (scipy, torchmetrics), correct
variants written here pass, each named mistake gets its own hint, and an unanswered exercise hands back the reference."""

import math

import numpy as np
import pytest
import scipy.linalg
import scipy.special
import scipy.stats
import torch
from torchmetrics.image.kid import poly_mmd

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.evaluation import (
    check_fid,
    check_inception_score,
    check_kid,
    reference_fid,
    reference_inception_score,
    reference_kid,
)

# --- correct variants (written independently of the checker) ---------------------------------------


def fid_sqrtm(f1, f2):
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def fid_torch_eigh(f1, f2):
    a, b = torch.from_numpy(f1), torch.from_numpy(f2)
    s1, s2 = torch.cov(a.T), torch.cov(b.T)
    lam, v = torch.linalg.eigh(s1)
    root = v @ torch.diag(lam.clamp(min=0).sqrt()) @ v.T
    tr = torch.linalg.eigvalsh(root @ s2 @ root).clamp(min=0).sqrt().sum()
    return (a.mean(0) - b.mean(0)).pow(2).sum() + s1.trace() + s2.trace() - 2 * tr  # a 0-d float64 tensor


def kid_loops(x, y):
    d = x.shape[1]

    def k(a, b):
        return (a @ b / d + 1) ** 3

    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def kid_torch_float32(x, y):
    a, b = torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    d = a.shape[1]
    kxx, kyy, kxy = ((a @ a.T) / d + 1) ** 3, ((b @ b.T) / d + 1) ** 3, ((a @ b.T) / d + 1) ** 3
    m, n = len(a), len(b)
    return (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1)) \
        - 2 * kxy.mean()


def is_entropy_form(p):
    # exp(H(p(y)) - mean_x H(p(y|x))): the same quantity, rearranged
    py = p.mean(0)
    return math.exp(scipy.stats.entropy(py) - np.mean([scipy.stats.entropy(row) for row in p]))


def is_log2(p):
    py = p.mean(0, keepdims=True)
    kl = (scipy.special.xlogy(p, p) / math.log(2) - p * np.log2(py)).sum(1)
    return 2 ** kl.mean()


# --- the references against outside oracles ---------------------------------------------------------


def test_references_agree_with_scipy_and_torchmetrics():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
    assert reference_fid(a, b) == pytest.approx(fid_sqrtm(a, b), rel=1e-8)
    # one dimension: (m1 - m2)^2 + (sd1 - sd2)^2 for the sample mean and sd (ddof=1)
    x, y = rng.normal(size=(50, 1)), 2 + 3 * rng.normal(size=(60, 1))
    closed = (x.mean() - y.mean()) ** 2 + (x.std(ddof=1) - y.std(ddof=1)) ** 2
    assert reference_fid(x, y) == pytest.approx(closed, rel=1e-10)
    x, y = rng.normal(size=(40, 5)), rng.normal(size=(40, 5)) + 0.3
    assert reference_kid(x, y) == pytest.approx(float(poly_mmd(torch.tensor(x), torch.tensor(y))), rel=1e-10)
    p = scipy.special.softmax(rng.normal(size=(30, 7)) * 2, axis=1)
    oracle = math.exp(np.mean([scipy.stats.entropy(row, p.mean(0)) for row in p]))
    assert reference_inception_score(p) == pytest.approx(oracle, rel=1e-10)
    # bounds: one-hot and balanced -> K; all rows equal -> 1
    assert reference_inception_score(np.eye(7)) == pytest.approx(7.0)
    assert reference_inception_score(np.tile(p[:1], (5, 1))) == pytest.approx(1.0)


@pytest.mark.parametrize("checker, fn", [
    (check_fid, fid_sqrtm), (check_fid, fid_torch_eigh), (check_fid, reference_fid),
    (check_kid, kid_loops), (check_kid, kid_torch_float32),
    (check_inception_score, is_entropy_form), (check_inception_score, is_log2),
])
def test_correct_variants_pass_and_are_returned(checker, fn, capsys):
    assert checker(fn) is fn
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("checker, reference", [
    (check_fid, reference_fid), (check_kid, reference_kid), (check_inception_score, reference_inception_score),
])
def test_not_done_prints_one_line_and_returns_the_reference(checker, reference, capsys):
    def mine(*args):
        raise NotImplementedError("your code here")

    assert checker(mine) is reference
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["mine: not done yet: the rest of the notebook uses the reference solution"]


# --- FID mistakes -------------------------------------------------------------------------------------


def _stats(f, ddof=1):
    return f.mean(0), np.cov(f, rowvar=False, ddof=ddof)


def _fid(mu1, s1, mu2, s2, cross=None, mean_sq=True):
    cross = 2 * np.trace(scipy.linalg.sqrtm(s1 @ s2).real) if cross is None else cross
    m = ((mu1 - mu2) ** 2).sum()
    return (m if mean_sq else math.sqrt(m)) + np.trace(s1) + np.trace(s2) - cross


def fid_biased_cov(f1, f2):
    return _fid(*_stats(f1, 0), *_stats(f2, 0))


def fid_transposed_cov(f1, f2):
    mu1, mu2, s1, s2 = f1.mean(0), f2.mean(0), np.cov(f1), np.cov(f2)
    return _fid(mu1, s1, mu2, s2)


def fid_no_two(f1, f2):
    (mu1, s1), (mu2, s2) = _stats(f1), _stats(f2)
    return _fid(mu1, s1, mu2, s2, cross=np.trace(scipy.linalg.sqrtm(s1 @ s2).real))


def fid_no_sqrt(f1, f2):
    (mu1, s1), (mu2, s2) = _stats(f1), _stats(f2)
    return _fid(mu1, s1, mu2, s2, cross=2 * np.trace(s1 @ s2))


def fid_product_of_roots(f1, f2):
    (mu1, s1), (mu2, s2) = _stats(f1), _stats(f2)
    return _fid(mu1, s1, mu2, s2, cross=2 * np.trace(scipy.linalg.sqrtm(s1).real @ scipy.linalg.sqrtm(s2).real))


def fid_elementwise_sqrt(f1, f2):
    (mu1, s1), (mu2, s2) = _stats(f1), _stats(f2)
    with np.errstate(invalid="ignore"):  # negative entries of S1 S2 give NaN, as they would for the student
        return _fid(mu1, s1, mu2, s2, cross=2 * np.trace(np.sqrt(s1 @ s2)))


def fid_diagonal(f1, f2):
    (mu1, s1), (mu2, s2) = _stats(f1), _stats(f2)
    return ((mu1 - mu2) ** 2).sum() + ((np.sqrt(np.diag(s1)) - np.sqrt(np.diag(s2))) ** 2).sum()


def fid_mean_not_squared(f1, f2):
    return _fid(*_stats(f1), *_stats(f2), mean_sq=False)


def fid_complex(f1, f2):
    (mu1, s1), (mu2, s2) = _stats(f1), _stats(f2)
    return ((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2)) + 0j


@pytest.mark.parametrize("wrong, hint", [
    (fid_biased_cov, "N - 1"),
    (fid_transposed_cov, "rowvar=False"),
    (fid_no_two, "factor 2"),
    (fid_no_sqrt, "not tr\\(S1 S2\\) itself"),
    (fid_product_of_roots, "commute"),
    (fid_elementwise_sqrt, "element by element"),
    (fid_diagonal, "diagonal covariances"),
    (fid_mean_not_squared, "SQUARED"),
    (fid_complex, "complex"),
    (lambda f1, f2: [1.0, 2.0], "one number"),
])
def test_fid_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_fid(wrong)


# --- KID mistakes -------------------------------------------------------------------------------------


def _k(a, b, d, degree=3, coef=1.0, scale=True):
    return ((a @ b.T) / (d if scale else 1) + coef) ** degree


def _kid(x, y, dx=None, dy=None, two=2.0, **kw):
    d = x.shape[1]
    kxx, kyy, kxy = _k(x, x, d, **kw), _k(y, y, d, **kw), _k(x, y, d, **kw)
    m, n = len(x), len(y)
    dx = m * (m - 1) if dx is None else dx
    dy = n * (n - 1) if dy is None else dy
    return (kxx.sum() - np.trace(kxx)) / dx + (kyy.sum() - np.trace(kyy)) / dy - two * kxy.mean()


def kid_biased(x, y):
    d = x.shape[1]
    return _k(x, x, d).mean() + _k(y, y, d).mean() - 2 * _k(x, y, d).mean()


@pytest.mark.parametrize("wrong, hint", [
    (kid_biased, "BIASED"),
    (lambda x, y: _kid(x, y, dx=len(x) ** 2, dy=len(y) ** 2), r"m\(m - 1\)"),
    (lambda x, y: _kid(x, y, dy=len(x) * (len(x) - 1)), "SECOND set"),
    (lambda x, y: _kid(x, y, two=1.0), "factor 2"),
    (lambda x, y: _kid(x, y, scale=False), "1/D"),
    (lambda x, y: _kid(x, y, degree=2), "CUBIC"),
    (lambda x, y: _kid(x, y, coef=0.0), r"\+ 1 is missing"),
    (lambda x, y: math.sqrt(_kid(x, y)), "square root"),
])
def test_kid_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_kid(wrong)


# --- IS mistakes --------------------------------------------------------------------------------------


def _kl(p, q):
    return (scipy.special.xlogy(p, p) - p * np.log(q)).sum(1)


def is_no_exp(p):
    return _kl(p, p.mean(0, keepdims=True)).mean()


def is_exp_inside(p):
    return np.exp(_kl(p, p.mean(0, keepdims=True))).mean()


def is_sum(p):
    return np.exp(_kl(p, p.mean(0, keepdims=True)).sum())


def is_uniform_marginal(p):
    return np.exp(_kl(p, np.full((1, p.shape[1]), 1 / p.shape[1])).mean())


def is_reversed(p):
    py = p.mean(0, keepdims=True)
    return np.exp((py * (np.log(py) - np.log(p))).sum(1).mean())


def is_log2_with_exp(p):
    py = p.mean(0, keepdims=True)
    return np.exp(((scipy.special.xlogy(p, p) - p * np.log(py)) / math.log(2)).sum(1).mean())


def is_softmax_again(p):
    return reference_inception_score(scipy.special.softmax(p, axis=1))


def is_nan_at_zeros(p):
    py = p.mean(0, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.exp((p * np.log(p / py)).sum(1).mean())


@pytest.mark.parametrize("wrong, hint", [
    (is_no_exp, "take its exp"),
    (is_exp_inside, "not mean_x exp"),
    (is_sum, "don't sum"),
    (is_uniform_marginal, "MARGINAL"),
    (is_reversed, "other way"),
    (is_log2_with_exp, "natural log"),
    (is_softmax_again, "softmax again"),
    (is_nan_at_zeros, "exactly 0"),
])
def test_inception_score_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_inception_score(wrong)
