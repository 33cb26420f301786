"""The exact denoiser of a finite training set, against Monte Carlo, autograd and brute force."""

import math

import pytest
import torch

from ddpm_lib.diffusion.empirical import EmpiricalDenoiser, nearest_neighbours
from ddpm_lib.diffusion.losses import training_loss
from ddpm_lib.diffusion.samplers import sample
from ddpm_lib.diffusion.schedules import make_schedule

pytestmark = pytest.mark.usefixtures("one_thread")


def test_conditional_mean_matches_monte_carlo_binning():
    """E[x_0 | x_t] in 1-D, estimated with no formula at all: draw (x_0, eps) pairs, bin x_t, average x_0."""
    data = torch.tensor([[-0.8], [0.1], [0.9]], dtype=torch.float64)
    sched = make_schedule("linear", 100)
    t = 20  # SNR ~ 1.8: the weights are neither one-hot nor uniform
    ab = sched.alpha_bars[t].double().item()
    g = torch.Generator().manual_seed(0)
    M = 2_000_000
    x0 = data[torch.randint(0, 3, (M,), generator=g), 0]
    x_t = math.sqrt(ab) * x0 + math.sqrt(1 - ab) * torch.randn(M, generator=g, dtype=torch.float64)
    den = EmpiricalDenoiser(data, sched)
    half_width = 0.005
    for q in (-0.9, -0.3, 0.0, 0.35, 0.8):
        in_bin = (x_t - q).abs() < half_width
        n = int(in_bin.sum())
        assert n > 2000
        mc_mean = x0[in_bin].mean().item()
        se = x0[in_bin].std().item() / math.sqrt(n)
        exact = den.x0_mean(torch.tensor([[q]], dtype=torch.float64), t).item()
        # 5 standard errors, plus the bias from averaging over the bin (slope of E[x0|x] <= ~10 here, times width^2)
        assert abs(mc_mean - exact) < 5 * se + 1e-3, (q, mc_mean, exact, se)
        # and the eps prediction is the same conditional mean, of eps = (x_t - sqrt(ab) x0) / sqrt(1 - ab)
        eps_mc = ((x_t[in_bin] - math.sqrt(ab) * x0[in_bin]) / math.sqrt(1 - ab)).mean().item()
        eps_exact = den(torch.tensor([[q]], dtype=torch.float64), t).item()
        assert abs(eps_mc - eps_exact) < 5 * se * math.sqrt(ab / (1 - ab)) + 0.01, (q, eps_mc, eps_exact)


def test_eps_matches_the_autograd_score_of_the_noised_point_mixture():
    """Tweedie: eps* = -sqrt(1 - abar) grad log p_t, with p_t written independently with torch.distributions."""
    g = torch.Generator().manual_seed(1)
    data = torch.rand(7, 3, generator=g, dtype=torch.float64) * 2 - 1
    sched = make_schedule("cosine", 200)
    den = EmpiricalDenoiser(data, sched)
    for t in (0, 20, 100, 199):
        # the schedule's sqrt(abar), sqrt(1 - abar), as add_noise uses them
        sa, s1a = sched.sqrt_alpha_bars[t].double(), sched.sqrt_one_minus_alpha_bars[t].double()
        x = torch.randn(5, 3, generator=g, dtype=torch.float64) * 0.8
        x.requires_grad_(True)
        comps = torch.distributions.Normal(sa * data[None], s1a)  # (1, N, D)
        log_p = torch.logsumexp(comps.log_prob(x[:, None]).sum(-1), dim=1) - math.log(len(data))
        (score,) = torch.autograd.grad(log_p.sum(), x)
        expected = -s1a * score
        got = den(x.detach(), torch.full((5,), t))
        assert torch.allclose(got, expected, rtol=1e-6, atol=1e-8), t
        w = den.posterior_weights(x.detach(), t)
        assert torch.allclose(w.sum(1), torch.ones(5, dtype=torch.float64))


def test_one_training_image_is_recovered_exactly():
    """With N = 1, x_t = sqrt(ab) y + sqrt(1 - ab) eps determines eps: the exact denoiser returns it."""
    g = torch.Generator().manual_seed(2)
    y = torch.rand(1, 1, 4, 4, generator=g) * 2 - 1
    sched = make_schedule("linear", 1000)
    den = EmpiricalDenoiser(y, sched)
    eps = torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([0, 10, 200, 500, 900, 999])
    x_t = sched.add_noise(y.expand(6, -1, -1, -1), eps, t)
    out = den(x_t, t)
    assert out.shape == x_t.shape and out.dtype == x_t.dtype
    assert torch.allclose(out, eps, atol=2e-4)
    assert torch.allclose(den.x0_mean(x_t, t), y.expand(6, -1, -1, -1), atol=1e-6)


def test_it_minimises_the_training_loss():
    """The Bayes optimum beats any other denoiser on the training set, here: sharper or blunter weights,
    and a network-like smoothed version (its weights computed at a noise level twice as large)."""
    g = torch.Generator().manual_seed(3)
    data = torch.rand(16, 1, 4, 4, generator=g) * 2 - 1
    sched = make_schedule("linear", 100)
    den = EmpiricalDenoiser(data, sched)

    def tempered(temp):
        def model(x_t, t):
            x, (sa, s1a) = den._prep(x_t, t)
            w = torch.softmax(den._log_weights(x, (sa, s1a)) / temp, dim=1)
            eps = (x - sa * (w @ den.data)) / s1a
            return eps.to(x_t.dtype).reshape(x_t.shape)
        return model

    M = 20_000
    x0 = data[torch.randint(0, 16, (M,), generator=g)]
    t = torch.randint(0, 100, (M,), generator=g)
    noise = torch.randn(x0.shape, generator=g)
    best = training_loss(den, sched, x0, t=t, noise=noise).item()
    for temp in (0.7, 1.5, 3.0):
        other = training_loss(tempered(temp), sched, x0, t=t, noise=noise).item()
        assert best < other, (temp, best, other)
    assert training_loss(tempered(1.0), sched, x0, t=t, noise=noise).item() == pytest.approx(best, rel=1e-5)


@pytest.mark.parametrize("sampler", ["ddpm", "ddim"])
def test_sampling_with_it_only_reproduces_training_items(sampler):
    g = torch.Generator().manual_seed(4)
    data = torch.rand(5, 8, generator=g) * 2 - 1
    sched = make_schedule("linear", 100)
    den = EmpiricalDenoiser(data, sched)
    xs = sample(den, sched, (200, 8), sampler, num_steps=None if sampler == "ddpm" else 20, generator=g, progress=False)
    dist, idx = nearest_neighbours(xs, data)
    typical = torch.cdist(data, data)[~torch.eye(5, dtype=torch.bool)].min().item()  # closest pair of training items
    assert dist.max() < 1e-3 * typical
    assert len(idx.unique()) == 5  # and it finds all of them


def test_nearest_neighbours_matches_brute_force():
    g = torch.Generator().manual_seed(5)
    data, x = torch.randn(50, 2, 3, 3, generator=g), torch.randn(12, 2, 3, 3, generator=g)
    dist, idx = nearest_neighbours(x, data)
    ref = torch.cdist(x.flatten(1).double(), data.flatten(1).double())
    assert torch.equal(idx, ref.argmin(1))
    assert torch.allclose(dist, ref.min(1).values, atol=1e-9)


def test_bad_inputs_name_the_problem():
    sched = make_schedule("cosine", 10)
    data = torch.zeros(3, 1, 2, 2)
    with pytest.raises(ValueError, match="data must be a batch"):
        EmpiricalDenoiser(torch.zeros(4), sched)
    with pytest.raises(ValueError, match="NaN"):
        EmpiricalDenoiser(torch.full((2, 3), float("nan")), sched)
    with pytest.raises(ValueError, match="schedule must be a NoiseSchedule"):
        EmpiricalDenoiser(data, "linear")
    den = EmpiricalDenoiser(data, sched)
    with pytest.raises(ValueError, match="x_t holds 9 numbers"):
        den(torch.zeros(2, 1, 3, 3), 0)
    with pytest.raises(ValueError, match="t must lie in 0..9"):
        den(torch.zeros(2, 1, 2, 2), 10)
    with pytest.raises(ValueError, match="one timestep per sample"):
        den(torch.zeros(2, 1, 2, 2), torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="x holds 4 numbers per item but data holds 9"):
        nearest_neighbours(torch.zeros(2, 4), torch.zeros(3, 9))
