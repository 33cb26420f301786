"""Flow matching: the interpolation and target against their definitions, the Euler sampler against diffusers'
FlowMatchEulerDiscreteScheduler (test-only oracle), and the loss and the ODE against closed forms on Gaussian
data N(0, s^2 I), where the optimal velocity is known:

    x_t = (1 - t) x_0 + t eps,  V_t = Var x_t = (1 - t)^2 s^2 + t^2,  v*(x, t) = E[eps - x_0 | x_t = x] = (t - (1 - t) s^2) / V_t x,

and the ODE dx/dt = v* carries x_1 to x_0 = s x_1 (x(t) = x_1 sqrt(V_t)).
"""

import math

import numpy as np
import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler
from torch.utils.data import TensorDataset

from ddpm_lib.diffusion import flow_matching as fm
from ddpm_lib.training.trainer import TrainConfig, Trainer

S = 0.5


def v_star(x, t_in, s=S):
    t = (torch.as_tensor(t_in, dtype=torch.float64) / fm.TIME_SCALE).reshape(-1, *([1] * (x.ndim - 1)))
    return ((t - (1 - t) * s**2) / ((1 - t) ** 2 * s**2 + t**2) * x.double()).to(x.dtype)


def test_interpolation_and_target_are_the_path_and_its_derivative():
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(5, 3, generator=g, dtype=torch.float64), torch.randn(5, 3, generator=g, dtype=torch.float64)
    t = torch.rand(5, generator=g, dtype=torch.float64) * 0.98 + 0.01
    assert torch.equal(fm.interpolate(x0, eps, torch.zeros(5, dtype=torch.float64)), x0)
    assert torch.equal(fm.interpolate(x0, eps, torch.ones(5, dtype=torch.float64)), eps)
    h = 1e-6
    deriv = (fm.interpolate(x0, eps, t + h) - fm.interpolate(x0, eps, t - h)) / (2 * h)
    assert torch.allclose(fm.velocity_target(x0, eps), deriv, atol=1e-8)


@pytest.mark.parametrize("n", [1, 4, 10, 50])
def test_euler_sampler_matches_diffusers(n):
    def model(x, t):
        t = torch.as_tensor(t, dtype=torch.float64).reshape(-1, 1)
        return torch.sin(3 * x) * (1 + t / 1000) + 0.3 * x

    ours = fm.FlowMatchEulerSampler(n)
    ref = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000)
    ref.set_timesteps(sigmas=ours.sigmas[:-1].tolist())
    assert torch.allclose(ref.timesteps, ours.timesteps) and len(ours) == n
    z = torch.randn(64, 2, generator=torch.Generator().manual_seed(n), dtype=torch.float64)
    x, y = z.clone(), z.clone()
    for t in ref.timesteps:
        x = ref.step(model(x, t), t, x).prev_sample
    for t in ours.timesteps:
        y = ours.step(model(y, t), t, y)
    assert torch.allclose(x, y, atol=1e-5, rtol=1e-5)


def _min_loss(s=S, dim=4):
    """E_t E || v* - (eps - x_0) ||^2 = dim * E_t [ 1 + s^2 - (t - (1 - t) s^2)^2 / V_t ] (t ~ U(0, 1))."""
    t = (np.arange(200_000) + 0.5) / 200_000
    V = (1 - t) ** 2 * s**2 + t**2
    return dim * float(np.mean(1 + s**2 - (t - (1 - t) * s**2) ** 2 / V))


def _mc_loss(model, n=200_000, dim=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = S * torch.randn(n, dim, generator=g, dtype=torch.float64)
    return float(fm.flow_matching_loss(model, x0.float(), generator=g)) * dim


def test_loss_is_minimised_by_the_true_velocity_and_a_wrong_target_is_caught(monkeypatch):
    lo = _min_loss()
    assert _mc_loss(v_star) == pytest.approx(lo, rel=0.02)  # the minimum, in closed form
    assert _mc_loss(lambda x, t: 0.8 * v_star(x, t)) > _mc_loss(v_star) + 0.01  # another velocity does worse (same draws)
    # a wrong target (x_0 - eps, the reversed direction) makes v* look bad: the closed-form check fails
    monkeypatch.setattr(fm, "velocity_target", lambda x0, noise: x0 - noise)
    assert _mc_loss(v_star) > 2 * lo


def test_euler_on_the_true_velocity_reaches_the_data_and_converges_first_order():
    z = torch.randn(256, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    errs = [(fm.sample_flow(v_star, z.shape, num_steps=n, x_1=z.double()).double() - S * z).abs().max().item()
            for n in (25, 50, 100)]
    assert errs[2] < 0.05 and 1.6 < errs[1] / errs[2] < 2.6  # Euler: halving the step halves the error


def test_sample_flow_api_and_errors():
    g = torch.Generator().manual_seed(0)
    x = fm.sample_flow(v_star, (8, 2), num_steps=3, generator=g)
    assert x.shape == (8, 2) and torch.isfinite(x).all()
    with pytest.raises(ValueError, match="num_steps"):
        fm.FlowMatchEulerSampler(0)
    with pytest.raises(ValueError, match="sigmas"):
        fm.FlowMatchEulerSampler(sigmas=[0.5, 0.8])
    with pytest.raises(ValueError, match="not in this sampler"):
        fm.FlowMatchEulerSampler(4).step(torch.zeros(2), 123.0, torch.zeros(2))
    with pytest.raises(ValueError, match="shape"):
        fm.interpolate(torch.zeros(2, 3), torch.zeros(2, 2), torch.zeros(2))


def test_trainer_runs_the_flow_matching_objective(tmp_path):
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.rand(16, 1, 16, 16, generator=g) * 2 - 1, torch.zeros(16, dtype=torch.long))
    cfg = TrainConfig(preset="tiny", unet={"image_size": 16}, num_timesteps=50, batch_size=8, steps=3, lr=1e-3,
                      warmup_steps=1, checkpoint_every=3, log_every=1, out_dir=str(tmp_path / "run"), device="cpu",
                      progress=False, seed=0, mixed_precision="no", tensorboard=False)
    calls = []

    def loss_fn(model, x0, labels):
        calls.append(x0.shape)
        return fm.flow_matching_loss(model, x0)

    out = Trainer(cfg, dataset=data, loss_fn=loss_fn).fit()
    assert len(calls) == 3 and math.isfinite(out["smoothed_loss"])
    with pytest.raises(ValueError, match="sample_every"):
        Trainer(TrainConfig(**{**cfg.to_dict(), "sample_every": 2, "out_dir": str(tmp_path / "r2")}), dataset=data,
                loss_fn=loss_fn)
