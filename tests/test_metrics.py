"""ddpm_lib.evaluation.metrics against closed forms and torchmetrics (a test-only oracle)."""

import numpy as np
import pytest
import torch

from ddpm_lib.evaluation.metrics import (
    feature_statistics,
    fid_from_features,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
)


class _Identity(torch.nn.Module):
    """A 'feature extractor' that returns its input: lets torchmetrics see exactly our features."""

    def __init__(self, dim):
        super().__init__()
        self.num_features = dim

    def forward(self, x):
        return x


def _rng(seed=0):
    return np.random.default_rng(seed)


def test_fd_of_identical_statistics_is_zero():
    f = _rng().normal(size=(200, 16))
    mu, sigma = feature_statistics(f)
    assert frechet_distance(mu, sigma, mu, sigma) == pytest.approx(0.0, abs=1e-9)
    assert fid_from_features(f, f.copy()) == pytest.approx(0.0, abs=1e-9)


def test_feature_statistics_match_numpy():
    f = _rng(1).normal(size=(50, 5))
    mu, sigma = feature_statistics(torch.from_numpy(f).float())
    np.testing.assert_allclose(mu, f.mean(0), atol=1e-6)
    np.testing.assert_allclose(sigma, np.cov(f, rowvar=False), atol=1e-6)


def test_fd_matches_closed_form_for_diagonal_covariances():
    rng = _rng(2)
    mu1, mu2 = rng.normal(size=8), rng.normal(size=8)
    s1, s2 = rng.uniform(0.1, 3.0, size=8), rng.uniform(0.1, 3.0, size=8)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(s1) - np.sqrt(s2)) ** 2)
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-10)


def test_fd_matches_closed_form_for_commuting_covariances():
    # same eigenvectors, different eigenvalues: tr sqrt(S1 S2) = sum sqrt(l1 l2)
    rng = _rng(3)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    l1, l2 = rng.uniform(0.0, 2.0, size=6), rng.uniform(0.0, 2.0, size=6)
    l1[0] = 0.0  # singular
    s1, s2 = q @ np.diag(l1) @ q.T, q @ np.diag(l2) @ q.T
    mu1, mu2 = np.zeros(6), np.ones(6)
    expected = 6.0 + np.sum((np.sqrt(l1) - np.sqrt(l2)) ** 2)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-8)


def test_fd_stable_when_fewer_samples_than_dimensions():
    rng = _rng(4)
    d = 64
    a, b = rng.normal(size=(20, d)), rng.normal(size=(20, d)) + 0.5  # rank-19 covariances
    fd = fid_from_features(a, b)
    assert np.isfinite(fd) and fd > 0
    # against an independent formula: tr sqrt(S1 S2) from the singular values of X1^T X2
    # (S_i = X_i^T X_i / (n-1) with X_i centred => sqrt(S1 S2) has trace = nuclear norm of X1 X2^T / (n-1))
    xa, xb = a - a.mean(0), b - b.mean(0)
    tr_sqrt = np.linalg.svd(xa @ xb.T, compute_uv=False).sum() / 19
    expected = (
        np.sum((a.mean(0) - b.mean(0)) ** 2)
        + np.trace(np.cov(a, rowvar=False))
        + np.trace(np.cov(b, rowvar=False))
        - 2 * tr_sqrt
    )
    # sqrt() of the ~1e-15 round-off eigenvalues of the null space costs a few 1e-8 (relative)
    assert fd == pytest.approx(expected, rel=1e-7)


def test_fd_agrees_with_torchmetrics():
    fid_mod = pytest.importorskip("torchmetrics.image.fid")
    rng = _rng(5)
    real = torch.from_numpy(rng.normal(size=(300, 12)))
    fake = torch.from_numpy(rng.normal(size=(250, 12)) * 1.3 + 0.2)
    metric = fid_mod.FrechetInceptionDistance(feature=_Identity(12))
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ours = fid_from_features(real, fake)
    assert ours == pytest.approx(float(metric.compute()), rel=1e-6)


def test_kid_near_zero_for_same_distribution_and_positive_when_shifted():
    rng = _rng(6)
    a, b = rng.normal(size=(600, 8)), rng.normal(size=(600, 8))
    mean_same, std_same = kernel_inception_distance(a, b, subsets=20, subset_size=200)
    # unbiased estimator: mean over 20 subsets is within a few stds of 0 (std here ~1e-3)
    assert abs(mean_same) < 5e-3
    assert abs(mean_same) < 4 * std_same + 1e-4
    mean_shift, _ = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=200)
    assert mean_shift > 0.1
    assert mean_shift > 50 * abs(mean_same)


def test_kid_agrees_with_torchmetrics_on_full_sets():
    kid_mod = pytest.importorskip("torchmetrics.image.kid")
    rng = _rng(7)
    real = torch.from_numpy(rng.normal(size=(120, 10)))
    fake = torch.from_numpy(rng.normal(size=(120, 10)) + 0.3)
    # one subset of every row: the (unbiased) MMD^2 is then the same whatever the permutation
    metric = kid_mod.KernelInceptionDistance(feature=_Identity(10), subsets=1, subset_size=120)
    metric.update(real, real=True)
    metric.update(fake, real=False)
    ref_mean, _ = metric.compute()
    ours, std = kernel_inception_distance(real, fake, subsets=1, subset_size=120)
    assert ours == pytest.approx(float(ref_mean), rel=1e-6)
    assert std == 0.0


def test_kid_matches_explicit_double_sum():
    rng = _rng(8)
    x, y = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))

    def k(u, v):
        return (u @ v / 3 + 1) ** 3

    m = 7
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    ours, _ = kernel_inception_distance(x, y, subsets=1, subset_size=7)
    assert ours == pytest.approx(xx + yy - 2 * xy, rel=1e-10)


def test_inception_score_closed_forms_and_torchmetrics():
    # uniform predictions: no confidence -> IS = 1
    assert inception_score(np.full((40, 5), 0.2), splits=4)[0] == pytest.approx(1.0)
    # confident and evenly spread over K classes -> IS = K
    onehot = np.eye(5)[np.arange(50) % 5]
    mean, std = inception_score(onehot, splits=2)
    assert mean == pytest.approx(5.0) and std == pytest.approx(0.0, abs=1e-12)
    # confident but all one class: no diversity -> IS = 1
    assert inception_score(np.eye(5)[np.zeros(30, int)], splits=1)[0] == pytest.approx(1.0)

    is_mod = pytest.importorskip("torchmetrics.image.inception")
    logits = torch.from_numpy(_rng(9).normal(size=(200, 10)) * 3)
    metric = is_mod.InceptionScore(feature=_Identity(10), splits=1)
    metric.update(logits)
    ref_mean, _ = metric.compute()
    ours, _ = inception_score(logits, splits=1, kind="logits")
    assert ours == pytest.approx(float(ref_mean), rel=1e-6)
    # probabilities in give the same answer as logits in
    assert inception_score(torch.softmax(logits, 1), splits=1)[0] == pytest.approx(ours, rel=1e-9)


def test_inputs_are_validated_with_clear_errors():
    mu, sigma = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match="sigma2"):
        frechet_distance(mu, sigma, mu, np.eye(4))
    with pytest.raises(ValueError, match="different dimensions"):
        frechet_distance(mu, sigma, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match="NaN"):
        frechet_distance(np.array([0, np.nan, 0]), sigma, mu, sigma)
    with pytest.raises(ValueError, match="symmetric"):
        frechet_distance(mu, np.triu(np.ones((3, 3))), mu, sigma)
    with pytest.raises(ValueError, match="2-D"):
        feature_statistics(np.zeros(5))
    with pytest.raises(ValueError, match="at least 2"):
        feature_statistics(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="subset_size"):
        kernel_inception_distance(np.zeros((10, 2)), np.zeros((5, 2)), subset_size=8)
    with pytest.raises(ValueError, match="splits"):
        inception_score(np.eye(3), splits=5)
    with pytest.raises(ValueError, match="kind"):
        inception_score(np.eye(3), kind="prob")
