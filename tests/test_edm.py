"""EDM's sampler and the sigma / score conversions against diffusers' HeunDiscreteScheduler and
EulerDiscreteScheduler (test-only oracles, ``use_karras_sigmas=True``) and against closed forms on Gaussian data.

diffusers computes its sigmas in float32 (sigma_min = sqrt((1 - abar_0) / abar_0) loses ~3 digits), so its
Karras levels agree with ours to ~1e-4 relative; the step formulas are compared to 1e-5 on diffusers' own levels.
"""

import math

import numpy as np
import pytest
import torch
from diffusers import EulerDiscreteScheduler, HeunDiscreteScheduler

from ddpm_lib.diffusion import edm
from ddpm_lib.diffusion.samplers import DDIMSampler, EDMSampler, build_sampler, sample
from ddpm_lib.diffusion.schedules import make_schedule
from ddpm_lib.diffusion.toy import (
    GaussianMixture,
    GaussianMixtureDenoiser,
    energy_distance,
    three_blobs,
)

T = 1000
SCHED = make_schedule("linear", T)


def _reference(cls, n, clip=False):
    kw = {"clip_sample": clip} if cls is HeunDiscreteScheduler else {}
    ref = cls(num_train_timesteps=T, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", use_karras_sigmas=True,
              timestep_spacing="linspace", prediction_type="epsilon", **kw)
    ref.set_timesteps(n)
    return ref


def _mixture_model(schedule=SCHED, mixture=None):
    den = GaussianMixtureDenoiser(mixture or three_blobs(), schedule)
    return lambda x, t: den(x, torch.as_tensor(t, dtype=torch.float64).reshape(-1).expand(x.shape[0]))


def _run_ours(sampler, model, x_sigma):
    """Our sampler from diffusers' starting x_sigma (ours steps x_t = x_sigma / sqrt(1 + sigma^2))."""
    y = x_sigma / math.sqrt(1.0 + sampler.sigmas[0] ** 2)
    for t in sampler.timesteps:
        y = sampler.step(model(y, t), t, y)
    return y


def _run_diffusers(ref, model, x_sigma):
    x = x_sigma.clone()
    for t in ref.timesteps:
        x = ref.step(model(ref.scale_model_input(x, t), t), t, x).prev_sample
    return x


def test_conversions_are_inverse_and_match_the_schedule():
    ab = SCHED.alpha_bars.double()
    sig = edm.sigma_from_alpha_bar(ab)
    assert torch.allclose(edm.alpha_bar_from_sigma(sig), ab, rtol=1e-12)
    assert np.allclose(edm.schedule_sigmas(SCHED), sig.numpy(), rtol=2e-4)  # float32 table vs float64 betas
    assert edm.schedule_sigmas(SCHED)[0] == pytest.approx(math.sqrt(1e-4 / (1 - 1e-4)), rel=1e-6)  # beta_1 = 1e-4
    # sigma^-2 is the SNR (docs/notation.md)
    assert np.allclose(edm.schedule_sigmas(SCHED) ** -2, SCHED.snr.double().numpy(), rtol=1e-4)
    t = np.array([0.0, 0.3, 17.5, 500.25, 998.9, 999.0])
    assert np.allclose(edm.sigma_to_timestep(edm.timestep_to_sigma(t, SCHED), SCHED), t, atol=1e-9)
    ts = np.arange(T, dtype=np.float64)
    assert np.allclose(edm.timestep_to_sigma(ts, SCHED), edm.schedule_sigmas(SCHED), rtol=1e-12)
    # score <-> eps: the Gaussian N(0, 1) noised: p_t = N(0, 1) exactly, score = -x, eps* = sqrt(1 - abar) x
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    for a in (0.9, 0.3):
        assert torch.allclose(edm.score_from_eps(math.sqrt(1 - a) * x, a), -x)
        assert torch.allclose(edm.eps_from_score(-x, a), math.sqrt(1 - a) * x)


def test_karras_sigmas_formula_and_diffusers_levels():
    s = edm.karras_sigmas(5, 0.002, 80.0, 7.0)  # Karras et al. eq. 5 by hand
    ref = [(80 ** (1 / 7) + i / 4 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7 for i in range(5)]
    assert np.allclose(s, ref, rtol=1e-12) and s[0] == pytest.approx(80) and s[-1] == pytest.approx(0.002)
    for n in (2, 5, 18, 50):
        for cls in (HeunDiscreteScheduler, EulerDiscreteScheduler):
            ref = _reference(cls, n)
            ours = EDMSampler(SCHED, num_steps=n, order=2 if cls is HeunDiscreteScheduler else 1)
            assert len(ours) == len(ref.timesteps) == (2 * n - 1 if cls is HeunDiscreteScheduler else n)
            assert np.allclose(ours.sigmas, ref.sigmas.double().unique_consecutive().numpy(), rtol=1e-3)
            assert torch.allclose(ours.timesteps, ref.timesteps.float(), atol=0.01)


@pytest.mark.parametrize("cls", [HeunDiscreteScheduler, EulerDiscreteScheduler])
@pytest.mark.parametrize("n", [5, 18, 50])
def test_steps_match_diffusers(cls, n):
    ref = _reference(cls, n)
    model = _mixture_model()
    x_sigma = torch.randn(256, 2, generator=torch.Generator().manual_seed(n), dtype=torch.float64) * ref.init_noise_sigma.double()
    levels = ref.sigmas.double().unique_consecutive()[:-1].numpy()  # diffusers' own levels, the formulas compared
    ours = EDMSampler(SCHED, order=2 if cls is HeunDiscreteScheduler else 1, clip_x0=False, sigmas=levels)
    expected = _run_diffusers(ref, model, x_sigma)
    assert torch.allclose(_run_ours(ours, model, x_sigma), expected, atol=1e-5, rtol=1e-5)
    # and on our own (float64) levels, within diffusers' float32 sigma rounding
    ours = EDMSampler(SCHED, num_steps=n, order=2 if cls is HeunDiscreteScheduler else 1, clip_x0=False)
    assert torch.allclose(_run_ours(ours, model, x_sigma), expected, atol=1e-4)


def test_clipping_matches_diffusers_heun():
    n = 10
    ref = _reference(HeunDiscreteScheduler, n, clip=True)
    levels = ref.sigmas.double().unique_consecutive()[:-1].numpy()
    model = _mixture_model()
    x_sigma = torch.randn(64, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * ref.init_noise_sigma.double()
    got = _run_ours(EDMSampler(SCHED, sigmas=levels, clip_x0=True), model, x_sigma)
    assert torch.allclose(got, _run_diffusers(ref, model, x_sigma), atol=1e-5)


def _gaussian_case(s=0.5, dim=4):
    """Data N(0, s^2 I): the probability-flow ODE d x/d sigma = sigma x / (s^2 + sigma^2) is solved by
    x(sigma) = x(sigma_max) sqrt((s^2 + sigma^2) / (s^2 + sigma_max^2)): x_0 in closed form."""
    mix = GaussianMixture([1.0], [[0.0] * dim], (np.eye(dim) * s**2)[None])
    return mix, _mixture_model(SCHED, mix)


class _WrongCorrection(EDMSampler):
    """A deliberately wrong Heun step: the correction uses the new slope alone instead of the average."""

    def step(self, model_output, t, x_t, generator=None, prediction_type="epsilon"):
        k = self._t_int(t)
        if self._plan[k][1] == 2:
            x_start, _, dt = self._saved
            self._saved = (x_start, None, dt)
            sigma = float(self._eval_sigmas[k])
            d = model_output  # for an eps-model without clipping, (x_sigma - D) / sigma = eps
            self._call += 1
            return (x_start + dt * d) / math.sqrt(1.0 + sigma**2)
        return super().step(model_output, t, x_t, generator, prediction_type)


def _closed_form_error(sampler_cls, n, order):
    s = 0.5
    _, model = _gaussian_case(s)
    samp = sampler_cls(SCHED, num_steps=n, order=order, clip_x0=False)
    z = torch.randn(512, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    smax = samp.sigmas[0]
    x0 = sample(model, SCHED, (512, 4), sampler=samp, x_T=z, progress=False).double()
    exact = z * math.sqrt(1 + smax**2) * s / math.sqrt(s**2 + smax**2)  # x_T -> x_sigma, then the ODE's solution
    return (x0 - exact).abs().max().item()


def test_heun_is_second_order_on_gaussian_data_and_a_wrong_correction_is_caught():
    heun = [_closed_form_error(EDMSampler, n, 2) for n in (16, 32, 64)]
    euler = [_closed_form_error(EDMSampler, n, 1) for n in (16, 32, 64)]
    wrong = [_closed_form_error(_WrongCorrection, n, 2) for n in (16, 32, 64)]
    # halving the step: Heun's error falls ~4x (order 2), Euler's ~2x (order 1)
    assert heun[1] / heun[2] > 3.0 and euler[1] / euler[2] < 2.6
    assert heun[2] < 0.1 * euler[2]
    # the wrong correction is a first-order method: it fails the order-2 check
    assert not (wrong[1] / wrong[2] > 3.0 and wrong[2] < 0.1 * euler[2])


def test_euler_on_ddim_timesteps_is_ddim_eta0():
    model = _mixture_model()
    ddim = DDIMSampler(SCHED, num_steps=10, eta=0.0, clip_x0=False)
    ts = ddim.timesteps.numpy()
    euler = EDMSampler(SCHED, order=1, clip_x0=False, sigmas=edm.schedule_sigmas(SCHED)[ts])
    assert torch.allclose(euler.timesteps, ddim.timesteps.float(), atol=1e-3)
    z = torch.randn(128, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    a = sample(model, SCHED, (128, 2), sampler=ddim, x_T=z, progress=False)
    b = sample(model, SCHED, (128, 2), sampler=euler, x_T=z, progress=False)
    assert torch.allclose(a, b, atol=1e-5)


def test_heun_samples_the_mixture_with_few_calls():
    mix = three_blobs()
    den = GaussianMixtureDenoiser(mix, SCHED)
    g = torch.Generator().manual_seed(0)
    x = sample(den, SCHED, (2000, 2), sampler="heun", num_steps=12, generator=g, progress=False, clip_x0=False)
    ref, _ = mix.sample(2000, torch.Generator().manual_seed(1))
    bad = sample(den, SCHED, (2000, 2), sampler=EDMSampler(SCHED, num_steps=2, order=1, clip_x0=False),
                 generator=torch.Generator().manual_seed(0), progress=False)
    assert energy_distance(x, ref) < 0.01 < energy_distance(bad, ref)


def test_api_and_errors():
    s = build_sampler(SCHED, "heun", num_steps=4)
    assert isinstance(s, EDMSampler) and len(s) == 7 and s.timesteps.dtype == torch.float32
    assert s.timesteps[0] == pytest.approx(T - 1) and s.timesteps[-1] == pytest.approx(0.0, abs=1e-3)
    with pytest.raises(ValueError, match="order"):
        EDMSampler(SCHED, order=3)
    with pytest.raises(ValueError, match="sigmas"):
        EDMSampler(SCHED, sigmas=[1.0, 2.0])
    with pytest.raises(ValueError, match="eta"):
        build_sampler(SCHED, "heun", eta=0.5)
    x = torch.zeros(2, 2)
    with pytest.raises(ValueError, match="next one"):
        s.step(torch.zeros(2, 2), float(s.timesteps[1]) + 5, x)
