"""Sample-quality metrics computed from features: FID, KID and the Inception Score.

All three compare images through a feature extractor (Inception-v3 for the published numbers, or the
course's small classifier, see :mod:`ddpm_lib.evaluation.features` and :mod:`ddpm_lib.evaluation.classifier`). This module
only sees the features, so it is independent of which network produced them:

- **Fréchet distance** (FID, Heusel et al. 2017, "GANs trained by a two time-scale update rule",
  eq. 6): fit a Gaussian to each feature set and compute the 2-Wasserstein distance between them,

  .. math:: d^2 = \\lVert \\mu_1 - \\mu_2 \\rVert^2
                 + \\operatorname{tr}\\big(\\Sigma_1 + \\Sigma_2 - 2 (\\Sigma_1 \\Sigma_2)^{1/2}\\big).

- **Kernel Inception Distance** (KID, Bińkowski et al. 2018, "Demystifying MMD GANs", eq. 4 with
  the cubic polynomial kernel :math:`k(x, y) = (\\gamma x^\\top y + c_0)^3`, :math:`\\gamma = 1/d`):
  the unbiased estimate of the squared maximum mean discrepancy, averaged over random subsets.
  Unlike FID it has no bias in the number of samples, so small-sample numbers can be compared.

- **Inception Score** (IS, Salimans et al. 2016, "Improved techniques for training GANs", sec. 4):
  :math:`\\exp\\big(\\mathbb{E}_x\\, \\mathrm{KL}(p(y|x) \\,\\|\\, p(y))\\big)` from class
  probabilities, averaged over ``splits`` chunks of the samples.

Every function takes numpy arrays or torch tensors, computes in float64 and returns Python floats.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

__all__ = [
    "as_float64",
    "feature_statistics",
    "frechet_distance",
    "fid_from_features",
    "kernel_inception_distance",
    "inception_score",
]


def as_float64(x: Any, name: str) -> np.ndarray:
    """``x`` (numpy array, torch tensor or nested list) as a float64 numpy array; rejects NaN/inf."""
    if isinstance(x, torch.Tensor):
        x = x.detach().to("cpu", torch.float64).numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array or tensor, got {type(x).__name__}.") from err
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf values: check the images/features you passed.")
    return arr


def _features_2d(features: Any, name: str, min_rows: int = 2) -> np.ndarray:
    f = as_float64(features, name)
    if f.ndim != 2:
        raise ValueError(f"{name} must be 2-D (num_samples, feature_dim), got shape {tuple(f.shape)}.")
    if f.shape[0] < min_rows:
        raise ValueError(f"{name} needs at least {min_rows} samples (rows), got {f.shape[0]}.")
    return f


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean (D,) and unbiased covariance (D, D) of features (N, D), N >= 2 - the Gaussian FID fits."""
    f = _features_2d(features, "features")
    mu = f.mean(axis=0)
    centred = f - mu
    sigma = centred.T @ centred / (f.shape[0] - 1)
    return mu, sigma


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix via eigh (negative round-off eigenvalues -> 0)."""
    vals, vecs = np.linalg.eigh(sigma)
    vals = np.clip(vals, 0.0, None)
    return (vecs * np.sqrt(vals)) @ vecs.T


def _check_stats(mu: Any, sigma: Any, which: str) -> tuple[np.ndarray, np.ndarray]:
    mu = as_float64(mu, f"mu{which}")
    sigma = as_float64(sigma, f"sigma{which}")
    if mu.ndim != 1:
        raise ValueError(f"mu{which} must be a 1-D mean vector, got shape {tuple(mu.shape)}.")
    if sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"sigma{which} must be a ({mu.shape[0]}, {mu.shape[0]}) covariance matching mu{which}, "
            f"got shape {tuple(sigma.shape)}."
        )
    scale = max(1.0, float(np.abs(sigma).max()))
    if not np.allclose(sigma, sigma.T, atol=1e-6 * scale, rtol=0):
        raise ValueError(f"sigma{which} is not symmetric: pass a covariance matrix (see feature_statistics).")
    return mu, (sigma + sigma.T) / 2


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2) (Heusel et al. 2017, eq. 6).

    ``d^2 = ||mu1 - mu2||^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^{1/2})``.

    The trace of the matrix square root is computed stably: with ``A = sigma1^{1/2}`` (the symmetric
    PSD root), ``sigma1 sigma2`` is similar to ``A sigma2 A``, which is symmetric PSD, so
    ``tr((sigma1 sigma2)^{1/2}) = sum(sqrt(eigvalsh(A sigma2 A)))``. Only real symmetric
    eigen-decompositions are used, so there are no imaginary parts to discard and no failure when the
    covariances are singular (fewer samples than feature dimensions); round-off eigenvalues below 0
    are clipped to 0. The result is clipped at 0 too (it can only be negative through round-off).
    """
    mu1, sigma1 = _check_stats(mu1, sigma1, "1")
    mu2, sigma2 = _check_stats(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(
            f"the two feature sets have different dimensions ({mu1.shape[0]} vs {mu2.shape[0]}): "
            "use the same feature extractor for both."
        )
    root1 = _psd_sqrt(sigma1)
    middle = root1 @ sigma2 @ root1
    eig = np.linalg.eigvalsh((middle + middle.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0.0, None)).sum())
    diff = mu1 - mu2
    d2 = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)
    return max(d2, 0.0)


def fid_from_features(features1: Any, features2: Any) -> float:
    """``frechet_distance`` of the Gaussians fitted to two feature sets (N1, D) and (N2, D)."""
    return frechet_distance(*feature_statistics(features1), *feature_statistics(features2))


def _poly_kernel(x: np.ndarray, y: np.ndarray, degree: int, gamma: float, coef0: float) -> np.ndarray:
    return (gamma * (x @ y.T) + coef0) ** degree


def _mmd2_unbiased(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD^2 (Gretton et al. 2012, eq. 3): diagonals of k_xx and k_yy are left out."""
    m, n = kxx.shape[0], kyy.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    sxy = kxy.sum() / (m * n)
    return float(sxx + syy - 2.0 * sxy)


def kernel_inception_distance(
    features1: Any,
    features2: Any,
    subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
    generator: torch.Generator | np.random.Generator | int | None = 0,
) -> tuple[float, float]:
    """KID (Bińkowski et al. 2018): mean and std of the unbiased MMD^2 over random subsets.

    Each of ``subsets`` rounds draws ``subset_size`` rows without replacement from each feature set
    and computes the unbiased MMD^2 with the polynomial kernel ``(gamma x.y + coef0)^degree``
    (``gamma`` defaults to 1 / feature_dim). The std is the population std over the rounds (as in
    torchmetrics). The estimate can be slightly negative when the two sets match. ``generator`` (a
    seed, numpy Generator or torch Generator) makes the subset choice reproducible.
    """
    f1 = _features_2d(features1, "features1")
    f2 = _features_2d(features2, "features2")
    if f1.shape[1] != f2.shape[1]:
        raise ValueError(
            f"features1 and features2 have different dimensions ({f1.shape[1]} vs {f2.shape[1]}): "
            "use the same feature extractor for both."
        )
    if not isinstance(subsets, int) or subsets < 1:
        raise ValueError(f"subsets must be a positive int, got {subsets!r}.")
    if not isinstance(subset_size, int) or subset_size < 2:
        raise ValueError(f"subset_size must be an int >= 2, got {subset_size!r}.")
    if subset_size > min(len(f1), len(f2)):
        raise ValueError(
            f"subset_size={subset_size} is larger than the smaller feature set "
            f"({len(f1)} and {len(f2)} rows): lower subset_size or pass more samples."
        )
    if not isinstance(degree, int) or degree < 1:
        raise ValueError(f"degree must be a positive int, got {degree!r}.")
    if gamma is None:
        gamma = 1.0 / f1.shape[1]
    elif not gamma > 0:
        raise ValueError(f"gamma must be > 0 or None (= 1/feature_dim), got {gamma!r}.")
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
        rng = np.random.default_rng(seed)
    else:
        rng = np.random.default_rng(generator)

    scores = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), subset_size, replace=False)]
        y = f2[rng.choice(len(f2), subset_size, replace=False)]
        scores[i] = _mmd2_unbiased(
            _poly_kernel(x, x, degree, gamma, coef0),
            _poly_kernel(y, y, degree, gamma, coef0),
            _poly_kernel(x, y, degree, gamma, coef0),
        )
    return float(scores.mean()), float(scores.std())


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def inception_score(scores: Any, splits: int = 10, kind: str = "auto") -> tuple[float, float]:
    """Inception Score (Salimans et al. 2016): mean and std over ``splits`` chunks of
    ``exp(mean_x KL(p(y|x) || p(y)))``, where p(y) is the chunk's mean prediction.

    ``scores`` (N, K) are class probabilities (``kind="probs"``) or logits (``kind="logits"``);
    ``"auto"`` treats them as probabilities when every row is non-negative and sums to 1. Chunks are
    taken in order (shuffle first if the order means something); std is the population std over
    chunks, as in the paper's code. IS lies between 1 (no confidence or no diversity) and K.
    """
    s = _features_2d(scores, "scores", min_rows=1)
    if kind not in ("auto", "probs", "logits"):
        raise ValueError(f"kind must be 'auto', 'probs' or 'logits', got {kind!r}.")
    if kind == "auto":
        looks_like_probs = bool(np.all(s >= 0) and np.allclose(s.sum(axis=1), 1.0, atol=1e-4))
        kind = "probs" if looks_like_probs else "logits"
    if kind == "probs":
        if np.any(s < 0) or not np.allclose(s.sum(axis=1), 1.0, atol=1e-4):
            raise ValueError("kind='probs' but the rows are not probability vectors (>= 0, summing to 1).")
        probs = s / s.sum(axis=1, keepdims=True)
        with np.errstate(divide="ignore"):
            log_probs = np.log(probs)
    else:
        log_probs = _log_softmax(s)
        probs = np.exp(log_probs)
    if not isinstance(splits, int) or not 1 <= splits <= len(s):
        raise ValueError(f"splits must be an int between 1 and the number of samples ({len(s)}), got {splits!r}.")

    values = []
    for idx in np.array_split(np.arange(len(s)), splits):
        p, logp = probs[idx], log_probs[idx]
        # p log p is 0 where p == 0 (the limit), not nan
        with np.errstate(invalid="ignore", divide="ignore"):
            log_py = np.log(p.mean(axis=0, keepdims=True))
            kl = np.where(p > 0, p * (logp - log_py), 0.0).sum(axis=1).mean()
        values.append(math.exp(kl))
    arr = np.array(values)
    return float(arr.mean()), float(arr.std())
