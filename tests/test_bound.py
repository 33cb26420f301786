"""ddpm_lib.diffusion.bound (Ho et al. 2020, eqs. 3-5, 11-12) against independent references: torch.distributions,
improved-diffusion's log-variance form of the KL (written here from its formula), Monte Carlo, and the
weights of eq. 12 computed here from the betas in float64."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from ddpm_lib.diffusion import bound, forward
from ddpm_lib.diffusion.schedules import make_schedule
from ddpm_lib.diffusion.toy import GaussianMixtureDenoiser, three_blobs


def _rand(*shape, seed=0, low=None):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(*shape, generator=g, dtype=torch.float64)
    return x if low is None else x.abs() + low


def test_gaussian_kl_matches_torch_distributions_with_broadcasting():
    m1, m2 = _rand(5, 3, seed=1), _rand(1, 3, seed=2)
    v1, v2 = _rand(5, 3, seed=3, low=0.05), _rand(5, 1, seed=4, low=0.05)
    ref = kl_divergence(Normal(m1, v1.sqrt()), Normal(m2.expand(5, 3), v2.sqrt().expand(5, 3)))
    torch.testing.assert_close(bound.gaussian_kl(m1, v1, m2, v2), ref, rtol=1e-12, atol=1e-12)


def test_gaussian_kl_matches_improved_diffusions_log_variance_form():
    """improved-diffusion's normal_kl(mean1, logvar1, mean2, logvar2), written from its formula."""
    m1, m2, lv1, lv2 = _rand(50, seed=5), _rand(50, seed=6), _rand(50, seed=7), _rand(50, seed=8)
    ref = 0.5 * (-1.0 + lv2 - lv1 + torch.exp(lv1 - lv2) + (m1 - m2) ** 2 * torch.exp(-lv2))
    torch.testing.assert_close(bound.gaussian_kl(m1, lv1.exp(), m2, lv2.exp()), ref, rtol=1e-10, atol=1e-12)


def test_gaussian_kl_by_monte_carlo():
    g = torch.Generator().manual_seed(0)
    n = 200_000
    for m1, v1, m2, v2 in [(0.3, 0.5, -0.2, 1.3), (0.0, 2e-4, 0.01, 1e-4), (1.0, 1.0, 1.0, 1.0)]:
        x = m1 + math.sqrt(v1) * torch.randn(n, generator=g, dtype=torch.float64)
        ratio = Normal(m1, math.sqrt(v1)).log_prob(x) - Normal(m2, math.sqrt(v2)).log_prob(x)
        se = ratio.std() / math.sqrt(n)
        closed = bound.gaussian_kl(m1, v1, m2, v2)
        assert abs(ratio.mean() - closed) <= 5 * se + 1e-12, (m1, v1, m2, v2)


def test_gaussian_nll_is_minus_the_normal_log_density():
    x, m, v = _rand(20, seed=1), _rand(20, seed=2), _rand(20, seed=3, low=1e-3)
    torch.testing.assert_close(bound.gaussian_nll(x, m, v), -Normal(m, v.sqrt()).log_prob(x), rtol=1e-12, atol=1e-12)


def _abar64(name, T):
    betas = make_schedule(name, T).betas.double()  # the float32 betas, then everything in float64 here
    return betas, torch.cumprod(1 - betas, 0)


@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_prior_kl_is_the_closed_form_and_tiny(name):
    schedule = make_schedule(name, 1000)
    _, ab = _abar64(name, 1000)
    x0 = _rand(4, 1, 8, 8, seed=9).clamp(-1, 1)
    a = ab[-1]
    ref = kl_divergence(Normal(a.sqrt() * x0, (1 - a).sqrt()), Normal(torch.zeros_like(x0), 1.0)).flatten(1).sum(1)
    got = bound.prior_kl(schedule, x0)
    torch.testing.assert_close(got, ref, rtol=1e-3, atol=1e-9)
    assert got.max() < 1e-3 * 64  # L_T is tiny on both schedules: no parameters, nothing to learn


def _lambda_ref(name, T, variance):
    """eq. 12, lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)), from float64 betas (code index)."""
    b, ab = _abar64(name, T)
    ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
    bt = (1 - ab_prev) / (1 - ab) * b
    bt[0] = bt[1]  # the decoder's fixed_small variance: beta-tilde of paper t = 2
    sigma2 = bt if variance == "fixed_small" else b
    return b**2 / (2 * sigma2 * (1 - b) * (1 - ab))


@pytest.mark.parametrize("variance", bound.VARIANCES)
@pytest.mark.parametrize("name", ["linear", "cosine"])
def test_vlb_weights_match_eq_12(name, variance):
    torch.testing.assert_close(bound.vlb_weights(make_schedule(name, 1000), variance), _lambda_ref(name, 1000, variance),
                               rtol=2e-4, atol=0)


def _kl_vs_weighted_mse(weights, variance, schedule, den, seed=0):
    """Assert KL term (closed form, from the two means) = weights_t ||eps - eps*||^2 + C_t, per sample."""
    g = torch.Generator().manual_seed(seed)
    x0 = three_blobs().sample(400, g)[0].double()
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    t = torch.randint(0, schedule.num_timesteps, (400,), generator=g)
    terms = bound.vlb_terms(den, schedule, x0, eps, t, variance)
    sq = ((eps - den(forward.add_noise(schedule, x0, eps, t), t)) ** 2).sum(1)
    C = bound.vlb_constants(schedule, variance, dim=2)
    torch.testing.assert_close(terms, weights[t] * sq + C[t], rtol=1e-5, atol=1e-9)


@pytest.mark.parametrize("variance", bound.VARIANCES)
def test_each_term_is_the_weighted_eps_mse_plus_a_constant(variance):
    schedule = make_schedule("linear", 1000)
    den = GaussianMixtureDenoiser(three_blobs(), schedule)
    _kl_vs_weighted_mse(_lambda_ref("linear", 1000, variance), variance, schedule, den)


@pytest.mark.parametrize("wrong", ["no factor 2", "alpha_bar for alpha", "sigma instead of sigma^2"])
def test_the_assert_catches_a_wrong_weight(wrong):
    schedule = make_schedule("linear", 1000)
    den = GaussianMixtureDenoiser(three_blobs(), schedule)
    b, ab = _abar64("linear", 1000)
    lam = _lambda_ref("linear", 1000, "fixed_small")
    sigma2 = b**2 / (2 * lam * (1 - b) * (1 - ab))  # recover sigma_t^2 from the right weights
    bad = {"no factor 2": 2 * lam, "alpha_bar for alpha": lam * (1 - b) / ab,
           "sigma instead of sigma^2": b**2 / (2 * sigma2.sqrt() * (1 - b) * (1 - ab))}[wrong]
    with pytest.raises(AssertionError):
        _kl_vs_weighted_mse(bad, "fixed_small", schedule, den)


def test_fixed_small_constants_vanish_and_fixed_large_ones_do_not():
    schedule = make_schedule("linear", 1000)
    small, large = bound.vlb_constants(schedule, "fixed_small", 3), bound.vlb_constants(schedule, "fixed_large", 3)
    assert small[1:].abs().max() < 1e-9 and (large[1:] >= 0).all() and large[1] > 0.1
    torch.testing.assert_close(small[0], 1.5 * torch.log(2 * math.pi * schedule.posterior_variance[1].double()),
                               rtol=1e-6, atol=0)


@pytest.mark.parametrize("variance", bound.VARIANCES)
@pytest.mark.parametrize("t", [1, 10, 200])
def test_kl_terms_by_monte_carlo(t, variance):
    """E_q[log q(x_{t-1} | x_t, x0) - log p_theta(x_{t-1} | x_t)], sampled, against the closed form (paired)."""
    schedule = make_schedule("linear", 1000)
    den = GaussianMixtureDenoiser(three_blobs(), schedule)
    g = torch.Generator().manual_seed(t)
    n = 40_000
    x0 = three_blobs().sample(n, g)[0].double()
    eps = torch.randn(x0.shape, generator=g, dtype=torch.float64)
    x_t = forward.add_noise(schedule, x0, eps, t)
    b, ab = _abar64("linear", 1000)  # the posterior written here (eq. 7), not the library's
    mu_q = (ab[t - 1].sqrt() * b[t] * x0 + (1 - b[t]).sqrt() * (1 - ab[t - 1]) * x_t) / (1 - ab[t])
    var_q = (1 - ab[t - 1]) / (1 - ab[t]) * b[t]
    mu_p = (x_t - b[t] / (1 - ab[t]).sqrt() * den(x_t, t)) / (1 - b[t]).sqrt()
    var_p = var_q if variance == "fixed_small" else b[t]
    x_prev = mu_q + var_q.sqrt() * torch.randn(x0.shape, generator=g, dtype=torch.float64)
    sample = (Normal(mu_q, var_q.sqrt()).log_prob(x_prev) - Normal(mu_p, var_p.sqrt()).log_prob(x_prev)).sum(1)
    closed = bound.vlb_terms(den, schedule, x0, eps, t, variance)
    diff = sample - closed  # zero mean given (x0, x_t)
    assert abs(diff.mean()) < 4.5 * diff.std() / math.sqrt(n), (diff.mean(), diff.std() / math.sqrt(n))
    assert closed.mean() > 10 * closed.std() / math.sqrt(n)  # the terms are not ~0: the check has something to see


def test_decoder_term_is_the_gaussian_nll_of_x0():
    schedule = make_schedule("linear", 1000)
    den = GaussianMixtureDenoiser(three_blobs(), schedule)
    x0, eps = _rand(30, 2, seed=1) * 0.3, _rand(30, 2, seed=2)
    x1 = forward.add_noise(schedule, x0, eps, 0)
    b1 = schedule.betas[0].double()
    mu = (x1 - b1 / b1.sqrt() * den(x1, 0)) / (1 - b1).sqrt()  # eq. 11 at paper t = 1, where 1 - abar_1 = beta_1
    ref = -Normal(mu, b1.sqrt()).log_prob(x0).sum(1)
    torch.testing.assert_close(bound.vlb_terms(den, schedule, x0, eps, 0, "fixed_large"), ref, rtol=1e-5, atol=1e-6)


def test_eps_model_mean_is_eq_11():
    schedule = make_schedule("cosine", 50)
    x_t, eps = _rand(6, 3, seed=3), _rand(6, 3, seed=4)
    t = torch.tensor([0, 1, 5, 20, 40, 49])
    b, ab = _abar64("cosine", 50)
    ref = (x_t - (b[t] / (1 - ab[t]).sqrt())[:, None] * eps) / (1 - b[t]).sqrt()[:, None]
    torch.testing.assert_close(bound.eps_model_mean(schedule, x_t, eps, t), ref, rtol=1e-5, atol=1e-6)


def test_bad_variance_name():
    with pytest.raises(ValueError, match="variance must be one of"):
        bound.vlb_weights(make_schedule("linear", 100), "learned")
