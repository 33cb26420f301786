"""Noise schedules against diffusers' DDPMScheduler (test-only oracle) and closed forms in float64 numpy."""

import math

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler

from ddpm_lib.diffusion.schedules import SCHEDULE_NAMES, make_schedule

# ours name -> (diffusers beta_schedule, extra kwargs)
DIFFUSERS_NAMES = {"linear": "linear", "cosine": "squaredcos_cap_v2", "quadratic": "scaled_linear"}


@pytest.mark.parametrize("name", sorted(DIFFUSERS_NAMES))
def test_matches_diffusers_at_T1000(name):
    ours = make_schedule(name, 1000)
    ref = DDPMScheduler(num_train_timesteps=1000, beta_schedule=DIFFUSERS_NAMES[name])
    # diffusers builds its betas in float32 and multiplies alphas in float32; ours is float64 then
    # rounded, so the tolerance is a few float32 ulps relative.
    torch.testing.assert_close(ours.betas, ref.betas.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.alpha_bars, ref.alphas_cumprod.float(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("T", [100, 250])
def test_linear_rescaled_for_other_T_matches_diffusers(T):
    """Ho et al.'s 1e-4..0.02 at T=1000 becomes (1e-4, 0.02) * 1000/T (improved-diffusion's rule)."""
    ours = make_schedule("linear", T)
    ref = DDPMScheduler(num_train_timesteps=T, beta_start=1e-4 * 1000 / T, beta_end=0.02 * 1000 / T)
    torch.testing.assert_close(ours.betas, ref.betas.float(), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ours.alpha_bars, ref.alphas_cumprod.float(), rtol=1e-5, atol=1e-7)


def _closed_forms(betas: np.ndarray) -> dict:
    """Every derived quantity, written out from the paper's definitions with explicit loops."""
    T = len(betas)
    ab = np.empty(T)
    running = 1.0
    for t in range(T):
        running *= 1.0 - betas[t]
        ab[t] = running
    ab_prev = np.array([1.0] + list(ab[:-1]))
    post_var = np.array([betas[t] * (1 - ab_prev[t]) / (1 - ab[t]) for t in range(T)])
    return {
        "alphas": 1 - betas,
        "alpha_bars": ab,
        "alpha_bars_prev": ab_prev,
        "sqrt_alpha_bars": np.sqrt(ab),
        "sqrt_one_minus_alpha_bars": np.sqrt(1 - ab),
        "sqrt_recip_alpha_bars": 1 / np.sqrt(ab),
        "sqrt_recipm1_alpha_bars": np.sqrt(1 / ab - 1),
        "posterior_variance": post_var,
        "posterior_log_variance_clipped": np.log(np.array([post_var[1]] + list(post_var[1:]))),
        "posterior_mean_coef1": np.sqrt(ab_prev) * betas / (1 - ab),
        "posterior_mean_coef2": np.sqrt(1 - betas) * (1 - ab_prev) / (1 - ab),
        "snr": ab / (1 - ab),
        "log_snr": np.log(ab) - np.log1p(-ab),
    }


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_derived_fields_match_closed_forms(name):
    s = make_schedule(name, 200)
    betas = s.betas.double().numpy()  # the stored betas; everything else must follow from them
    for field, expected in _closed_forms(betas).items():
        got = getattr(s, field)
        assert got.dtype == torch.float32 and got.shape == (200,), field
        np.testing.assert_allclose(got.double().numpy(), expected, rtol=2e-5, atol=1e-7, err_msg=field)


def test_posterior_mean_equals_eq11_for_eps():
    """Ho et al. eq. 7 with x0 = (x_t - sqrt(1-ab) eps)/sqrt(ab) collapses to eq. 11's 1/sqrt(a) (x_t - b/sqrt(1-ab) eps)."""
    s = make_schedule("linear", 1000)
    b = s.betas.double()
    a = 1 - b
    ab = torch.cumprod(a, 0)  # float64 here: 1 - ab at t=0 would lose 4 digits from the float32 alpha_bars
    # coefficient of x_t after substituting x0: c1 / sqrt(ab) + c2 must equal 1 / sqrt(alpha)
    c1, c2 = s.posterior_mean_coef1.double(), s.posterior_mean_coef2.double()
    torch.testing.assert_close(c1 / ab.sqrt() + c2, 1 / a.sqrt(), rtol=1e-5, atol=0)
    # coefficient of eps: -c1 sqrt(1-ab)/sqrt(ab) must equal -b / (sqrt(alpha) sqrt(1-ab))
    torch.testing.assert_close(c1 * (1 - ab).sqrt() / ab.sqrt(), b / (a.sqrt() * (1 - ab).sqrt()), rtol=1e-5, atol=0)


@pytest.mark.parametrize("T", [50, 1000])
def test_sigmoid_and_cosine_alpha_bar_closed_form(T):
    """Both are discretised from a continuous alpha_bar(tau), so alpha_bar[t] = f((t+1)/T) / f(0) until the clip."""

    def sig(x):
        return 1 / (1 + math.exp(-x))

    def f_sigmoid(u, start=-3.0, end=3.0, tau=1.0):
        return (sig(end / tau) - sig((u * (end - start) + start) / tau)) / (sig(end / tau) - sig(start / tau))

    def f_cosine(u, s=0.008):
        return math.cos((u + s) / (1 + s) * math.pi / 2) ** 2

    for name, f in [("sigmoid", f_sigmoid), ("cosine", f_cosine)]:
        sched = make_schedule(name, T)
        expected = np.array([f((t + 1) / T) / f(0.0) for t in range(T)])
        got = sched.alpha_bars.double().numpy()
        # the last beta is clipped at 0.999 (alpha_bar(1) = 0); stop before it and where betas got clipped
        ok = np.array([1 - f((t + 1) / T) / f(t / T) < 0.999 for t in range(T)])
        upto = int(np.argmin(ok)) if not ok.all() else T
        np.testing.assert_allclose(got[:upto], expected[:upto], rtol=2e-5, atol=1e-8)
        assert abs(sched.betas[-1].item() - 0.999) < 1e-6  # the clip (Nichol & Dhariwal sec. 3.2)


def test_sigmoid_tau_sharpens():
    a = make_schedule("sigmoid", 100, tau=0.5).alpha_bars
    b = make_schedule("sigmoid", 100, tau=2.0).alpha_bars
    assert not torch.allclose(a, b)


@pytest.mark.parametrize("name", SCHEDULE_NAMES)
def test_monotone(name):
    s = make_schedule(name, 1000)
    assert torch.all(s.betas > 0) and torch.all(s.betas < 1)
    assert torch.all(torch.diff(s.alpha_bars.double()) < 0)
    assert torch.all(torch.diff(s.log_snr.double()) < 0)
    assert torch.all(s.posterior_variance[1:] <= s.betas[1:] * (1 + 1e-6))  # beta-tilde <= beta
    assert s.posterior_variance[0] == 0
    if name != "sigmoid":
        assert torch.all(torch.diff(s.betas.double()) >= -1e-12)


def test_to_device_keeps_values():
    s = make_schedule("cosine", 10)
    s2 = s.to("cpu")
    assert torch.equal(s.alpha_bars, s2.alpha_bars) and s2.num_timesteps == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(name="laplace"), "Unknown schedule name"),
        (dict(name="linear", num_timesteps=0), "num_timesteps"),
        (dict(name="linear", num_timesteps=2.5), "num_timesteps"),
        (dict(name="linear", num_timesteps=10), "strictly between 0 and 1"),  # beta_end * 100 = 2
        (dict(name="cosine", num_timesteps=100, gamma=2), "Bad keyword argument"),
        (dict(name="linear", num_timesteps=100, beta_start=-0.1), "strictly between 0 and 1"),
    ],
)
def test_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_schedule(**kwargs)
