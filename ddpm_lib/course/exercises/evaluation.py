"""Checkers for notebook 07 (evaluation): FID, KID and the Inception Score, each from its formula.

- ``check_fid(fn)``: ``fn(features1 (N1, D), features2 (N2, D)) -> float``, the Fréchet distance between the
  Gaussians fitted to two feature sets (Heusel et al. 2017, eq. 6):
  ``|mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1 S2)^{1/2})`` with unbiased covariances (divide by N - 1).
- ``check_kid(fn)``: ``fn(features1 (m, D), features2 (n, D)) -> float``, the unbiased estimate of the squared
  MMD (Gretton et al. 2012, eq. 3) with the cubic polynomial kernel ``k(x, y) = (x.y / D + 1)^3``
  (Bińkowski et al. 2018, KID), on the whole sets (no random subsets).
- ``check_inception_score(fn)``: ``fn(probs (N, K)) -> float``, ``exp(mean_x KL(p(y|x) || p(y)))`` with
  ``p(y) = mean_x p(y|x)`` (Salimans et al. 2016, sec. 4), one split, ``0 log 0 = 0``.

The inputs are NumPy float64 arrays. The references below are written out here, independently of
:mod:`ddpm_lib.evaluation.metrics` (the trace of the matrix square root comes from the eigenvalues of the
non-symmetric product S1 S2, which are real and non-negative because it is similar to a PSD matrix; the
library uses a symmetric square root instead). A wrong answer is compared with the usual mistakes,
evaluated on the same inputs, and the one it matches is named.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from ddpm_lib.course.exercises import ExerciseError, call_student, exercise, passed

__all__ = [
    "check_fid",
    "check_kid",
    "check_inception_score",
    "reference_fid",
    "reference_kid",
    "reference_inception_score",
]


def _array(x: Any) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _number(name: str, got: Any) -> float:
    """The student's result as a Python float, or an ExerciseError saying what came back instead."""
    if isinstance(got, torch.Tensor):
        if got.numel() != 1:
            raise ExerciseError(f"{name}: return one number, got a tensor of shape {tuple(got.shape)}.")
        got = got.detach().cpu().reshape(()).item()
    if isinstance(got, np.ndarray):
        if got.size != 1:
            raise ExerciseError(f"{name}: return one number, got an array of shape {got.shape}.")
        got = got.reshape(()).item()
    if isinstance(got, complex) or np.iscomplexobj(got):
        raise ExerciseError(f"{name}: you returned a complex number ({got!r}). A general matrix square root "
                            "(scipy.linalg.sqrtm) can pick up tiny imaginary parts from round-off: keep the real "
                            "part, or use the symmetric eigenvalue route of the text (only real numbers).")
    try:
        return float(got)
    except (TypeError, ValueError):
        raise ExerciseError(f"{name}: return one number (a float), got {type(got).__name__}.") from None


def _close(a: float, b: float, tol: float) -> bool:
    return math.isfinite(a) and math.isfinite(b) and abs(a - b) <= tol


def _judge(name: str, value: float, right: float, tol: float, mistakes: Iterable[tuple[str, float]], formula: str) -> None:
    """Return if ``value`` is right; else raise the hint of the first mistake it equals, or a generic hint."""
    if _close(value, right, tol):
        return
    for hint, wrong in mistakes:
        if _close(value, wrong, tol) and not _close(wrong, right, tol):
            raise ExerciseError(f"{name}: not quite. {hint}")
    raise ExerciseError(f"{name}: got {value!r}, expected {right:.6g}. {formula}")


# --- FID ------------------------------------------------------------------------------------------


def _mean_cov(f: np.ndarray, ddof: int = 1) -> tuple[np.ndarray, np.ndarray]:
    mu = f.mean(axis=0)
    c = f - mu
    return mu, c.T @ c / (len(f) - ddof)


def _trace_sqrt_product(s1: np.ndarray, s2: np.ndarray) -> float:
    """tr (S1 S2)^{1/2} = sum_i sqrt(lambda_i(S1 S2)); the eigenvalues are real and >= 0 up to round-off."""
    lam = np.linalg.eigvals(s1 @ s2).real
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def _psd_sqrt(s: np.ndarray) -> np.ndarray:
    lam, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(lam, 0.0, None))) @ v.T


def _frechet(mu1, s1, mu2, s2) -> float:
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2.0 * _trace_sqrt_product(s1, s2))


def reference_fid(features1: Any, features2: Any) -> float:
    """FID of two feature sets (N1, D), (N2, D): Fréchet distance of their Gaussians (Heusel et al. eq. 6)."""
    return _frechet(*_mean_cov(_array(features1)), *_mean_cov(_array(features2)))


def _fid_mistakes(f1: np.ndarray, f2: np.ndarray):
    mu1, s1 = _mean_cov(f1)
    mu2, s2 = _mean_cov(f2)
    mean_term = float(((mu1 - mu2) ** 2).sum())
    tr12 = _trace_sqrt_product(s1, s2)
    yield ("Use the unbiased covariance, dividing by N - 1 (np.cov(f, rowvar=False) does), the convention of "
           "pytorch-fid and torchmetrics; you divided by N.", _frechet(*_mean_cov(f1, 0), *_mean_cov(f2, 0)))
    if len(f1) == len(f2):
        t1, t2 = np.cov(f1), np.cov(f2)  # (N, N): the covariance of the images, not of the features
        yield ("Your covariances are (N, N), across images. The rows of `features` are images and the columns "
               "features: np.cov(f, rowvar=False) (or f.T) gives the (D, D) covariance.",
               mean_term + float(np.trace(t1) + np.trace(t2)) - 2.0 * _trace_sqrt_product(t1, t2))
    yield ("The cross term is -2 tr((S1 S2)^{1/2}): the factor 2 is missing.",
           mean_term + float(np.trace(s1) + np.trace(s2)) - tr12)
    yield ("Take the square root of S1 S2 (a matrix square root: the square roots of its eigenvalues), not "
           "tr(S1 S2) itself.", mean_term + float(np.trace(s1) + np.trace(s2)) - 2.0 * float(np.trace(s1 @ s2)))
    yield ("(S1 S2)^{1/2} is not S1^{1/2} S2^{1/2} (they agree only when S1 and S2 commute). Use the eigenvalues "
           "of S1 S2, or of A S2 A with A = S1^{1/2}.",
           mean_term + float(np.trace(s1) + np.trace(s2)) - 2.0 * float(np.trace(_psd_sqrt(s1) @ _psd_sqrt(s2))))
    with np.errstate(invalid="ignore"):
        yield ("np.sqrt works element by element; (S1 S2)^{1/2} is a MATRIX square root: take the square roots "
               "of the eigenvalues of S1 S2.",
               mean_term + float(np.trace(s1) + np.trace(s2)) - 2.0 * float(np.sqrt(np.diag(s1 @ s2)).sum()))
    yield ("That is the distance with diagonal covariances (per-feature variances only). FID uses the full "
           "(D, D) covariance matrices.",
           mean_term + float(((np.sqrt(np.diag(s1)) - np.sqrt(np.diag(s2))) ** 2).sum()))
    yield ("The mean term is the SQUARED distance |mu1 - mu2|^2.",
           math.sqrt(mean_term) + float(np.trace(s1) + np.trace(s2)) - 2.0 * tr12)


def _fid_cases():
    rng = np.random.default_rng(7)
    # equal N (so a transposed covariance still runs), unequal N, and fewer images than features (singular)
    for n1, n2, d in ((40, 40, 6), (300, 200, 5), (12, 15, 16)):
        a = rng.normal(size=(n1, d)) @ rng.normal(size=(d, d))
        b = rng.normal(size=(n2, d)) @ rng.normal(size=(d, d)) * 0.7 + rng.normal(size=d)
        yield a, b


@exercise(reference=reference_fid, library=('ddpm_lib.evaluation.metrics.fid_from_features', 'ddpm_lib.evaluation.metrics.frechet_distance', 'ddpm_lib.evaluation.metrics.feature_statistics'))
def check_fid(fn: Callable) -> None:
    """Check ``fn(features1, features2) -> float`` (NumPy float64 (N, D) arrays) against FID's formula."""
    name = "fid"
    for f1, f2 in _fid_cases():
        got = _number(name, call_student(name, fn, f1.copy(), f2.copy()))
        if math.isnan(got):
            raise ExerciseError(f"{name}: got NaN. A square root of a negative number? np.sqrt works element by "
                                "element; tr((S1 S2)^{1/2}) needs the square roots of the EIGENVALUES of S1 S2 "
                                "(clip tiny negative round-off to 0 first).")
        right = reference_fid(f1, f2)
        _judge(name, got, right, 1e-6 * max(1.0, abs(right)), _fid_mistakes(f1, f2),
               "FID = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^{1/2}), with mu, S the mean and unbiased "
               "covariance of each set's rows.")
    passed(name, "Heusel et al. 2017, eq. 6, from features.")


# --- KID ------------------------------------------------------------------------------------------


def _kernels(x: np.ndarray, y: np.ndarray, degree: int = 3, scale: bool = True, coef0: float = 1.0):
    d = x.shape[1]
    gamma = 1.0 / d if scale else 1.0
    return tuple((gamma * (a @ b.T) + coef0) ** degree for a, b in ((x, x), (y, y), (x, y)))


def _off_diagonal_mean(k: np.ndarray, denominator: float | None = None) -> float:
    m = k.shape[0]
    return float((k.sum() - np.trace(k)) / (denominator if denominator is not None else m * (m - 1)))


def reference_kid(features1: Any, features2: Any) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3 (Bińkowski et al. 2018; Gretton et al. 2012, eq. 3)."""
    kxx, kyy, kxy = _kernels(_array(features1), _array(features2))
    return _off_diagonal_mean(kxx) + _off_diagonal_mean(kyy) - 2.0 * float(kxy.mean())


def _kid_mistakes(x: np.ndarray, y: np.ndarray):
    m, n = len(x), len(y)
    kxx, kyy, kxy = _kernels(x, y)
    right = reference_kid(x, y)

    def mmd(kk):
        a, b, c = kk
        return _off_diagonal_mean(a) + _off_diagonal_mean(b) - 2.0 * float(c.mean())

    yield ("That is the BIASED estimate (the diagonal k(x_i, x_i) included, divided by m^2). The unbiased one "
           "leaves out i = j in the k_xx and k_yy sums and divides by m(m - 1) and n(n - 1).",
           float(kxx.mean() + kyy.mean() - 2.0 * kxy.mean()))
    yield ("You left out the diagonal, so divide by the number of pairs left: m(m - 1) (and n(n - 1)), not m^2.",
           _off_diagonal_mean(kxx, m * m) + _off_diagonal_mean(kyy, n * n) - 2.0 * float(kxy.mean()))
    yield ("The two sets have different sizes: the k_yy sum is over the n(n - 1) pairs of the SECOND set.",
           _off_diagonal_mean(kxx) + _off_diagonal_mean(kyy, m * (m - 1)) - 2.0 * float(kxy.mean()))
    yield ("The cross term is -2 mean(k(x_i, y_j)): the factor 2 is missing.",
           _off_diagonal_mean(kxx) + _off_diagonal_mean(kyy) - float(kxy.mean()))
    yield ("Scale the dot product by 1/D (D = the feature dimension): k(x, y) = (x.y / D + 1)^3.",
           mmd(_kernels(x, y, scale=False)))
    yield ("The KID kernel is CUBIC: (x.y / D + 1)^3.", mmd(_kernels(x, y, degree=2)))
    yield ("The kernel is (x.y / D + 1)^3: the + 1 is missing.", mmd(_kernels(x, y, coef0=0.0)))
    if right > 0:
        yield ("KID is the squared MMD itself; don't take the square root.", math.sqrt(right))


def _kid_cases():
    rng = np.random.default_rng(11)
    for m, n, d, shift in ((30, 45, 8, 0.8), (25, 25, 6, 0.5)):
        x = rng.normal(size=(m, d))
        y = rng.normal(size=(n, d)) * 1.3 + shift
        yield x, y


@exercise(reference=reference_kid, library=('ddpm_lib.evaluation.metrics.kernel_inception_distance',))
def check_kid(fn: Callable) -> None:
    """Check ``fn(features1 (m, D), features2 (n, D)) -> float`` against the unbiased MMD^2 with the cubic kernel."""
    name = "kid"
    for x, y in _kid_cases():
        got = _number(name, call_student(name, fn, x.copy(), y.copy()))
        right = reference_kid(x, y)
        scale = float(np.abs(_kernels(x, y)[2]).mean())
        _judge(name, got, right, 1e-6 * scale, _kid_mistakes(x, y),
               "KID = sum_{i != j} k(x_i, x_j) / (m(m-1)) + sum_{i != j} k(y_i, y_j) / (n(n-1)) "
               "- 2 sum_{i, j} k(x_i, y_j) / (m n), with k(x, y) = (x.y / D + 1)^3.")
    passed(name, "Unbiased MMD^2 with the cubic kernel (Bińkowski et al. 2018).")


# --- Inception Score ------------------------------------------------------------------------------


def _kl_rows(p: np.ndarray, q: np.ndarray, log=np.log) -> np.ndarray:
    """KL(p_i || q) for each row p_i (0 log 0 = 0)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (log(np.where(p > 0, p, 1.0)) - log(np.broadcast_to(q, p.shape))), 0.0)
    return terms.sum(axis=1)


def reference_inception_score(probs: Any) -> float:
    """exp(mean_x KL(p(y|x) || p(y))), p(y) the mean of the rows of ``probs`` (N, K) (Salimans et al. 2016)."""
    p = _array(probs)
    return math.exp(float(_kl_rows(p, p.mean(axis=0, keepdims=True)).mean()))


def _is_mistakes(p: np.ndarray):
    py = p.mean(axis=0, keepdims=True)
    kl = _kl_rows(p, py)
    k = p.shape[1]
    yield "IS = exp(mean KL): you returned the mean KL itself; take its exp.", float(kl.mean())
    yield ("Average the KL over the samples first, then take exp: exp(mean_x KL), not mean_x exp(KL).",
           float(np.exp(kl).mean()))
    yield "Average the KL over the samples (mean over x), don't sum it.", float(np.exp(kl.sum()))
    yield ("p(y) is the MARGINAL class distribution of your samples, the mean of p(y|x) over x, not the "
           "uniform 1/K.", math.exp(float(_kl_rows(p, np.full((1, k), 1.0 / k)).mean())))
    with np.errstate(divide="ignore"):
        reverse = (py * (np.log(py) - np.log(p))).sum(axis=1)
    if np.all(np.isfinite(reverse)):
        yield ("The KL runs the other way: KL(p(y|x) || p(y)) = sum_y p(y|x) log(p(y|x) / p(y)).",
               math.exp(float(reverse.mean())))
    yield ("Use the natural log (np.log) with exp, or log2 with 2 ** (...): the base of the log and of the "
           "power must match.", math.exp(float(_kl_rows(p, py, np.log2).mean())))
    soft = np.exp(p) / np.exp(p).sum(axis=1, keepdims=True)
    yield ("The inputs already are probabilities p(y|x) (rows summing to 1): don't apply softmax again.",
           reference_inception_score(soft))


def _is_cases():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(40, 10)) * 2.0 + np.eye(10)[rng.integers(0, 10, 40)] * 3.0
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    yield p / p.sum(axis=1, keepdims=True), False
    # a confident classifier: some probabilities are exactly 0 (softmax underflow), where 0 log 0 = 0
    q = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.5, 0.5, 0.0], [0.2, 0.3, 0.5], [0.0, 0.0, 1.0]])
    yield q, True


@exercise(reference=reference_inception_score, library=('ddpm_lib.evaluation.metrics.inception_score',))
def check_inception_score(fn: Callable) -> None:
    """Check ``fn(probs (N, K)) -> float`` against exp(mean_x KL(p(y|x) || p(y)))."""
    name = "inception_score"
    for p, has_zeros in _is_cases():
        got = _number(name, call_student(name, fn, p.copy()))
        if math.isnan(got):
            extra = (" Some p(y|x) here are exactly 0 (a confident classifier); the term p log p is 0 there: "
                     "use np.where(p > 0, p * (np.log(p) - np.log(p_y)), 0) or scipy.special.xlogy." if has_zeros else "")
            raise ExerciseError(f"{name}: got NaN (0 * log 0 or log of a negative?).{extra}")
        right = reference_inception_score(p)
        _judge(name, got, right, 1e-6 * right, _is_mistakes(p),
               "IS = exp(mean_x sum_y p(y|x) (log p(y|x) - log p(y))), with p(y) = mean_x p(y|x).")
    passed(name, "Salimans et al. 2016: between 1 (no confidence or no diversity) and K.")
