"""The exact Gaussian-mixture denoiser, and samplers checked end to end with it (no training)."""

import math

import pytest
import torch

from ddpm_lib.diffusion.samplers import DDIMSampler, DDPMSampler, sample
from ddpm_lib.diffusion.schedules import make_schedule
from ddpm_lib.diffusion.toy import (
    GaussianMixture,
    GaussianMixtureDenoiser,
    component_statistics,
    energy_distance,
    three_blobs,
)

pytestmark = pytest.mark.usefixtures("one_thread")


# Well separated (>= 7 standard deviations between means), unequal weights, correlated covariances.
WEIGHTS = [0.5, 0.3, 0.2]
MEANS = [[-2.0, -1.0], [2.0, -1.0], [0.0, 2.0]]
COVS = [[[0.25, 0.1], [0.1, 0.2]], [[0.2, -0.1], [-0.1, 0.3]], [[0.3, 0.0], [0.0, 0.15]]]


def _reference_log_pt(x, alpha_bar):
    """log p_t written independently with torch.distributions (no eigendecomposition)."""
    comps = []
    for w, m, c in zip(WEIGHTS, MEANS, COVS):
        m, c = torch.tensor(m, dtype=torch.float64), torch.tensor(c, dtype=torch.float64)
        dist = torch.distributions.MultivariateNormal(math.sqrt(alpha_bar) * m, alpha_bar * c + (1 - alpha_bar) * torch.eye(2, dtype=torch.float64))
        comps.append(math.log(w) + dist.log_prob(x))
    return torch.logsumexp(torch.stack(comps, 1), 1)


def test_log_prob_score_and_denoiser_match_autograd():
    gm = GaussianMixture(WEIGHTS, MEANS, COVS)
    sched = make_schedule("linear", 1000)
    den = GaussianMixtureDenoiser(gm, sched)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 2, generator=g, dtype=torch.float64) * 2
    for t in [0, 10, 200, 999]:
        ab = sched.alpha_bars[t].double().item()
        xr = x.clone().requires_grad_(True)
        logp = _reference_log_pt(xr, ab)
        (score,) = torch.autograd.grad(logp.sum(), xr)
        torch.testing.assert_close(gm.log_prob(x, ab), logp.detach(), rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(gm.score(x, ab), score, rtol=1e-7, atol=1e-7)
        eps = den(x, torch.full((64,), t))
        # eps* = -sqrt(1 - abar) grad log p_t (Tweedie); float64 in, float64 out
        torch.testing.assert_close(eps, -math.sqrt(1 - ab) * score, rtol=1e-6, atol=1e-7)
    # per-sample timesteps and image-like shapes
    t = torch.tensor([0, 999] * 32)
    torch.testing.assert_close(den(x.reshape(64, 1, 2, 1), t).reshape(64, 2), den(x, t))


def test_denoiser_is_the_conditional_mean_of_the_noise():
    """Monte Carlo: E[eps | x_t] is what eps* returns; check E[eps - eps*(x_t)] = 0 and that eps* explains
    the predictable part (regressing eps on eps* gives slope 1), 5 standard errors."""
    gm = GaussianMixture(WEIGHTS, MEANS, COVS)
    sched = make_schedule("linear", 1000)
    den = GaussianMixtureDenoiser(gm, sched)
    g = torch.Generator().manual_seed(1)
    n = 40_000
    x0, _ = gm.sample(n, g)
    eps = torch.randn(n, 2, generator=g)
    t = 150
    ab = sched.alpha_bars[t]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    pred = den(xt, t).double()
    resid = eps.double() - pred
    assert resid.mean(0).abs().max() < 5 * resid.std(0).max() / math.sqrt(n)
    slope = (eps.double() * pred).sum(0) / (pred * pred).sum(0)
    assert torch.all((slope - 1).abs() < 5 * resid.std(0) / (pred * pred).sum(0).sqrt())


def test_mixture_sample_statistics_and_errors():
    gm = GaussianMixture(WEIGHTS, MEANS, COVS)
    x, comp = gm.sample(20_000, torch.Generator().manual_seed(2))
    assert x.shape == (20_000, 2) and comp.shape == (20_000,)
    _check_mixture_stats(x, gm, mean_allow=0.0, cov_allow=0.0)
    with pytest.raises(ValueError, match="covs must have shape"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0]]])
    with pytest.raises(ValueError, match="positive definite"):
        GaussianMixture([1.0], [[0.0, 0.0]], [[[1.0, 2.0], [2.0, 1.0]]])
    with pytest.raises(ValueError, match="weights"):
        GaussianMixture([0.0, 1.0], [[0.0], [1.0]], [[[1.0]], [[1.0]]])
    with pytest.raises(ValueError, match="2-D"):
        GaussianMixtureDenoiser(gm, make_schedule("linear", 10 * 10))(torch.zeros(3, 5), 0)
    assert GaussianMixtureDenoiser(gm, make_schedule("linear", 100)).null_class is None
    assert three_blobs().dim == 2


def _check_mixture_stats(x, gm, mean_allow, cov_allow):
    """Assign each sample to its most likely component under p_0, then compare with tolerances:

    - weight: |n_k/n - w_k| <= 4 sqrt(w_k (1 - w_k) / n)                     (binomial standard error)
    - mean (each coordinate d): |mean - mu_kd| <= 4 sqrt(Sigma_kdd / n_k) + mean_allow
    - covariance entries, relative to sqrt(Sigma_kdd Sigma_kee): <= 4 sqrt(2 / n_k) + cov_allow
      (sqrt(2/n) is the standard error of a Gaussian sample variance relative to the variance)

    ``mean_allow`` / ``cov_allow`` are the stated discretisation allowances of a sampler (0 for exact draws).
    """
    x = x.double()
    n = x.shape[0]
    comp = gm._terms(x, torch.ones(n, dtype=torch.float64))[0].argmax(1)
    for k in range(gm.num_components):
        xk = x[comp == k]
        nk = xk.shape[0]
        w = gm.weights[k].item()
        assert abs(nk / n - w) <= 4 * math.sqrt(w * (1 - w) / n), f"weight of component {k}: {nk / n} vs {w}"
        sd = gm.covs[k].diagonal().sqrt()
        assert torch.all((xk.mean(0) - gm.means[k]).abs() <= 4 * sd / math.sqrt(nk) + mean_allow), (
            f"mean of component {k}: {xk.mean(0).tolist()} vs {gm.means[k].tolist()}"
        )
        rel = (torch.cov(xk.T) - gm.covs[k]) / torch.outer(sd, sd)
        assert torch.all(rel.abs() <= 4 * math.sqrt(2 / nk) + cov_allow), f"covariance of component {k}: {rel.tolist()}"


N_SAMPLES = 4000


def test_ddpm_1000_steps_reproduces_the_mixture():
    """Ancestral DDPM, all 1000 steps of the linear schedule, fixed_small variance, no clipping (the data lie
    outside [-1, 1]): purely statistical tolerances (see _check_mixture_stats, allowances 0)."""
    gm = GaussianMixture(WEIGHTS, MEANS, COVS)
    sched = make_schedule("linear", 1000)
    x = sample(GaussianMixtureDenoiser(gm, sched), sched, (N_SAMPLES, 2), DDPMSampler(sched, clip_x0=False),
               generator=torch.Generator().manual_seed(0), progress=False)
    _check_mixture_stats(x, gm, mean_allow=0.0, cov_allow=0.0)


def test_ddim_50_steps_reproduces_the_mixture():
    """Deterministic DDIM (eta = 0), 50 leading steps. 50 Euler-like steps of the probability-flow ODE pull the
    components in by ~1-3 % of their separation, so besides the 4-standard-error bounds we allow
    0.05 absolute on means (the means are 3.6-4 apart) and 0.05 on relative covariance entries."""
    gm = GaussianMixture(WEIGHTS, MEANS, COVS)
    sched = make_schedule("linear", 1000)
    x = sample(GaussianMixtureDenoiser(gm, sched), sched, (N_SAMPLES, 2), DDIMSampler(sched, 50, eta=0.0, clip_x0=False),
               generator=torch.Generator().manual_seed(0), progress=False)
    _check_mixture_stats(x, gm, mean_allow=0.05, cov_allow=0.05)


def test_conditional_denoiser_and_guidance():
    """Label k gives component k alone; guidance_scale 0 with the null label gives the whole mixture."""
    gm = GaussianMixture(WEIGHTS, MEANS, COVS)
    sched = make_schedule("cosine", 100)
    den = GaussianMixtureDenoiser(gm, sched, conditional=True)
    assert den.null_class == 3
    x = sample(den, sched, (600, 2), "ddim", num_steps=50, labels=1, clip_x0=False, generator=torch.Generator().manual_seed(0), progress=False)
    assert (x.double().mean(0) - gm.means[1]).abs().max() < 0.1
    x = sample(den, sched, (600, 2), "ddim", num_steps=20, guidance_scale=0.0, clip_x0=False, generator=torch.Generator().manual_seed(0), progress=False)
    comp = gm._terms(x.double(), torch.ones(600, dtype=torch.float64))[0].argmax(1)
    assert comp.bincount(minlength=3).min() > 60


def test_component_statistics_and_energy_distance():
    gm = three_blobs()
    g = torch.Generator().manual_seed(3)
    x, comp = gm.sample(3000, g)
    stats = component_statistics(x, gm)
    # well separated: the assignment recovers the true components (but for a rare tail point or two)
    assert (stats["counts"] - torch.bincount(comp, minlength=3)).abs().max() <= 3
    torch.testing.assert_close(stats["means"][1], x[comp == 1].double().mean(0), rtol=0, atol=2e-3)
    torch.testing.assert_close(stats["weights"].sum().item(), 1.0)
    y, _ = gm.sample(3000, g)
    same = energy_distance(x, y)
    shifted = energy_distance(x, y + 0.1)
    assert abs(same) < 0.01 and shifted > 5 * abs(same)
    # hand-computed: one point each at 0 and 3 in 1-D -> 2*3 - 0 - 0 (the within terms are over pairs i != j)
    assert abs(energy_distance(torch.tensor([[0.0], [0.0]]), torch.tensor([[3.0], [3.0]])) - 6.0) < 1e-12
