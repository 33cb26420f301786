"""The forward process: diffusers as oracle, Monte-Carlo against the closed form, Bayes on a grid."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from ddpm_lib.diffusion import forward as F
from ddpm_lib.diffusion.schedules import make_schedule


def test_add_noise_matches_diffusers():
    s = make_schedule("linear", 1000)
    ref = DDPMScheduler(num_train_timesteps=1000)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(8, 3, 16, 16, generator=g) * 2 - 1
    noise = torch.randn(8, 3, 16, 16, generator=g)
    t = torch.tensor([0, 1, 10, 100, 500, 900, 998, 999])
    torch.testing.assert_close(F.add_noise(s, x0, noise, t), ref.add_noise(x0, noise, t), rtol=0, atol=1e-5)
    torch.testing.assert_close(s.add_noise(x0, noise, t), ref.add_noise(x0, noise, t), rtol=0, atol=1e-5)


N_MC = 200_000


@pytest.mark.parametrize("t", [0, 50, 300, 999])
def test_add_noise_monte_carlo(t):
    """x_t | x_0 ~ N(sqrt(ab) x0, 1 - ab): the sample mean is within 5 standard errors sqrt((1-ab)/N),
    the sample variance within 5 standard errors (1-ab) sqrt(2/(N-1)) (Gaussian data)."""
    s = make_schedule("cosine", 1000)
    g = torch.Generator().manual_seed(t)
    x0 = torch.full((N_MC, 1), 0.7, dtype=torch.float64)
    xt = F.add_noise(s, x0, torch.randn(N_MC, 1, generator=g, dtype=torch.float64), t)
    ab = float(np.prod(1 - s.betas.double().numpy()[: t + 1]))
    var = 1 - ab
    assert abs(xt.mean().item() - math.sqrt(ab) * 0.7) < 5 * math.sqrt(var / N_MC)
    assert abs(xt.var().item() - var) < 5 * var * math.sqrt(2 / (N_MC - 1))


@pytest.mark.parametrize("t", [1, 10, 60])
def test_iterated_q_step_matches_marginal(t):
    """Running the one-step kernel q(x_s | x_{s-1}) (eq. 2) for s = 0..t-1 lands on q(x_{t-1} | x_0);
    same 5-standard-error tolerances as above, with x0 itself random (uniform) to test the mean map too."""
    s = make_schedule("linear", 1000)
    g = torch.Generator().manual_seed(100 + t)
    n = 50_000
    x0 = torch.rand(n, 1, generator=g, dtype=torch.float64) * 2 - 1
    x = x0.clone()
    for step in range(t):
        x = F.q_step(s, x, torch.randn(n, 1, generator=g, dtype=torch.float64), step)
    ab = float(np.prod(1 - s.betas.double().numpy()[:t]))
    resid = x - math.sqrt(ab) * x0  # should be N(0, 1 - ab), independent of x0
    var = 1 - ab
    assert abs(resid.mean().item()) < 5 * math.sqrt(var / n)
    assert abs(resid.var().item() - var) < 5 * var * math.sqrt(2 / (n - 1))
    assert abs(torch.corrcoef(torch.cat([resid, x0], 1).T)[0, 1].item()) < 5 / math.sqrt(n)


def test_conversions_round_trip_and_formulas():
    s = make_schedule("cosine", 100)
    g = torch.Generator().manual_seed(1)
    x0 = torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64)
    eps = torch.randn(6, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 5, 30, 60, 90, 99])
    ab = torch.cumprod(1 - s.betas.double(), 0)[t].reshape(-1, 1, 1, 1)
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    v = ab.sqrt() * eps - (1 - ab).sqrt() * x0  # Salimans & Ho 2022 sec. 4, written out
    tol = dict(rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(F.x0_from_eps(s, xt, eps, t), x0, **tol)
    torch.testing.assert_close(F.eps_from_x0(s, xt, x0, t), eps, **tol)
    torch.testing.assert_close(F.v_from_eps_x0(s, x0, eps, t), v, **tol)
    torch.testing.assert_close(F.x0_from_v(s, xt, v, t), x0, **tol)
    torch.testing.assert_close(F.eps_from_v(s, xt, v, t), eps, **tol)
    for ptype, out in [("epsilon", eps), ("x0", x0), ("v", v)]:
        e, x = F.eps_and_x0(s, xt, out, t, ptype)
        torch.testing.assert_close(e, eps, **tol)
        torch.testing.assert_close(x, x0, **tol)
    torch.testing.assert_close(F.training_target(s, x0, eps, t, "v"), v, **tol)
    assert F.training_target(s, x0, eps, t, "x0") is x0 and F.training_target(s, x0, eps, t, "epsilon") is eps
    with pytest.raises(ValueError, match="prediction_type"):
        F.eps_and_x0(s, xt, eps, t, "score")


@pytest.mark.parametrize("t", [1, 3, 40, 99])
def test_q_posterior_matches_bayes_on_a_grid(t):
    """q(x_{t-1} | x_t, x_0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x_0): multiply the two Gaussian densities on a
    fine grid and take the numerical mean and variance (no formula of eq. 7 used)."""
    s = make_schedule("linear", 100)
    b = s.betas.double().numpy()
    ab_prev = float(np.prod(1 - b[:t]))
    x0_val, xt_val = 0.3, -0.4
    prior_m, prior_v = math.sqrt(ab_prev) * x0_val, 1 - ab_prev
    grid = np.linspace(-4, 4, 400_001)
    log_dens = -((xt_val - math.sqrt(1 - b[t]) * grid) ** 2) / (2 * b[t]) - (grid - prior_m) ** 2 / (2 * prior_v)
    w = np.exp(log_dens - log_dens.max())
    w /= w.sum()
    mean_num = float((w * grid).sum())
    var_num = float((w * (grid - mean_num) ** 2).sum())
    mean, var, logvar = F.q_posterior(s, torch.tensor([[x0_val]]), torch.tensor([[xt_val]]), t)
    assert abs(mean.item() - mean_num) < 1e-5
    assert abs(var.item() - var_num) < 1e-5 * var_num + 1e-9
    assert abs(logvar.item() - math.log(var_num)) < 1e-4


def test_q_posterior_at_t0_is_x0():
    s = make_schedule("linear", 100)
    x0, xt = torch.randn(3, 2), torch.randn(3, 2)
    mean, var, _ = F.q_posterior(s, x0, xt, 0)
    torch.testing.assert_close(mean, x0)
    assert torch.all(var == 0)


def test_extract_errors_and_shapes():
    s = make_schedule("linear", 100)
    x = torch.zeros(4, 1, 2, 2)
    assert F.extract(s.betas, torch.tensor([0, 1, 2, 3]), x).shape == (4, 1, 1, 1)
    assert F.extract(s.betas, 5, torch.zeros(3, 7)).shape == (3, 1)
    with pytest.raises(ValueError, match="timestep out of range"):
        F.extract(s.betas, torch.tensor([0, 100, 0, 0]), x)
    with pytest.raises(ValueError, match="noise must have the shape"):
        F.add_noise(s, x, torch.zeros(4, 1, 2, 3), 0)
