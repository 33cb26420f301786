"""Samplers against diffusers' schedulers (test-only oracle) and against the papers' formulas.

diffusers computes in float32; where its own rounding dominates (1 - abar_t / abar_prev near t = 0 loses
~3 digits in float32) we also run diffusers' algorithm in float64 by giving it float64 alpha_bars, and
compare to 1e-6. Same-seed generators reproduce the stochastic parts draw for draw.
"""

import math

import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler

from ddpm_lib.diffusion.samplers import (
    DDIMSampler,
    DDPMSampler,
    DPMSolverSampler,
    guided_output,
    make_timesteps,
    sample,
)
from ddpm_lib.diffusion.schedules import make_schedule

T = 1000
SCHED = make_schedule("linear", T)


def _f64(ref):
    """diffusers' scheduler with float64 alpha_bars (same algorithm, no float32 rounding)."""
    ref.betas = ref.betas.double()
    ref.alphas = 1 - ref.betas
    ref.alphas_cumprod = torch.cumprod(ref.alphas, 0)
    ref.one = torch.tensor(1.0, dtype=torch.float64)
    ref.final_alpha_cumprod = torch.tensor(1.0, dtype=torch.float64)
    return ref


def _pair(t, dtype=torch.float32, shape=(4, 3, 8, 8), seed=0):
    """A realistic (x_t, model_output): x_t from data in [-1, 1], output = true noise + 10% error."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(shape, generator=g, dtype=torch.float64) * 2 - 1
    eps = torch.randn(shape, generator=g, dtype=torch.float64)
    ab = torch.cumprod(1 - SCHED.betas.double(), 0)[t]
    xt = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
    out = eps + 0.1 * torch.randn(shape, generator=g, dtype=torch.float64)
    return xt.to(dtype), out.to(dtype)


def _gen(seed=123):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("n", [1, 7, 10, 50, 100, 333, 1000])
@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_timesteps_match_diffusers(n, spacing):
    ours = make_timesteps(T, n, spacing)
    for cls in (DDIMScheduler, DDPMScheduler):
        ref = cls(num_train_timesteps=T, timestep_spacing=spacing)
        ref.set_timesteps(n)
        assert torch.equal(ours, ref.timesteps), (cls.__name__, spacing, n)
    assert ours.dtype == torch.long and len(ours) == n and torch.all(ours[:-1] > ours[1:])
    assert torch.equal(DDIMSampler(SCHED, n, spacing=spacing).timesteps, ours)


@pytest.mark.parametrize("variance", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("clip", [True, False])
@pytest.mark.parametrize("t", [999, 600, 100, 10, 1, 0])
def test_ddpm_step_matches_diffusers(variance, clip, t):
    ours = DDPMSampler(SCHED, variance=variance, clip_x0=clip)
    assert torch.equal(ours.timesteps, torch.arange(T - 1, -1, -1))
    # float64 run of diffusers' algorithm: agreement to 1e-6
    xt, out = _pair(t, torch.float64)
    ref = _f64(DDPMScheduler(num_train_timesteps=T, variance_type=variance, clip_sample=clip))
    expected = ref.step(out, t, xt, generator=_gen()).prev_sample
    got = ours.step(out, t, xt, generator=_gen())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
    # diffusers as shipped (float32): 1e-5 except at the smallest t, where diffusers' float32
    # 1 - abar_t/abar_{t-1} has ~1e-3 relative error (measured: 5.5e-5 here; the float64 run above is the strict check)
    xt, out = _pair(t, torch.float32)
    ref = DDPMScheduler(num_train_timesteps=T, variance_type=variance, clip_sample=clip)
    expected = ref.step(out, t, xt, generator=_gen()).prev_sample
    got = ours.step(out, t, xt, generator=_gen())
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5 if t >= 100 else 1e-4)


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_strided_ddpm_matches_diffusers(spacing):
    ours = DDPMSampler(SCHED, num_steps=50, spacing=spacing, clip_x0=False)
    ref = _f64(DDPMScheduler(num_train_timesteps=T, clip_sample=False, timestep_spacing=spacing))
    ref.set_timesteps(50)
    assert torch.equal(ours.timesteps, ref.timesteps)
    for t in ours.timesteps[[0, 1, 25, -2]].tolist():
        xt, out = _pair(t, torch.float64)
        expected = ref.step(out, t, xt, generator=_gen()).prev_sample
        torch.testing.assert_close(ours.step(out, t, xt, generator=_gen()), expected, rtol=0, atol=1e-6)


def test_ddpm_last_step_adds_no_noise():
    """To x_0 there is no noise (Ho et al. alg. 2 'z = 0 if t = 1'), for both variances and any spacing."""
    for variance in ("fixed_small", "fixed_large"):
        for spacing in ("leading", "trailing"):
            s = DDPMSampler(SCHED, variance=variance, num_steps=10, spacing=spacing)
            t = int(s.timesteps[-1])
            xt, out = _pair(t)
            torch.testing.assert_close(s.step(out, t, xt, generator=_gen(1)), s.step(out, t, xt, generator=_gen(2)))


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
@pytest.mark.parametrize("n", [10, 50, 100])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_step_matches_diffusers(spacing, n, eta):
    ours = DDIMSampler(SCHED, num_steps=n, eta=eta, spacing=spacing, clip_x0=False)
    ref = _f64(DDIMScheduler(num_train_timesteps=T, clip_sample=False, timestep_spacing=spacing))
    ref.set_timesteps(n)
    ref32 = DDIMScheduler(num_train_timesteps=T, clip_sample=False, timestep_spacing=spacing)
    ref32.set_timesteps(n)
    assert torch.equal(ours.timesteps, ref.timesteps)
    for t in ours.timesteps[[0, 1, n // 2, -2, -1]].tolist():
        xt, out = _pair(t, torch.float64)
        expected = ref.step(out, t, xt, eta=eta, generator=_gen()).prev_sample
        torch.testing.assert_close(ours.step(out, t, xt, generator=_gen()), expected, rtol=0, atol=1e-6)
        xt, out = _pair(t, torch.float32)
        expected = ref32.step(out, t, xt, eta=eta, generator=_gen()).prev_sample
        torch.testing.assert_close(ours.step(out, t, xt, generator=_gen()), expected, rtol=0, atol=1e-5)


def test_ddim_clipping_matches_diffusers():
    ours = DDIMSampler(SCHED, num_steps=20, eta=0.5, clip_x0=True)
    ref = _f64(DDIMScheduler(num_train_timesteps=T, clip_sample=True))
    ref.set_timesteps(20)
    for t in ours.timesteps[[0, 10, -1]].tolist():
        xt, out = _pair(t, torch.float64)
        out = out * 3  # make x0-hat leave [-1, 1]
        expected = ref.step(out, t, xt, eta=0.5, generator=_gen()).prev_sample
        torch.testing.assert_close(ours.step(out, t, xt, generator=_gen()), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("n", [7, 10, 30])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_linspace_uses_true_previous_timestep(n, eta):
    """Song et al. 2021 eq. 12 + 16, written out here with prev = the next entry of the sequence
    (diffusers would use t - T // n; its issue #12633) and abar = 1 after the last step."""
    s = DDIMSampler(SCHED, num_steps=n, eta=eta, spacing="linspace", clip_x0=False)
    seq = torch.linspace(0, T - 1, n).round().flip(0).long()
    assert torch.equal(s.timesteps, seq)
    ab = torch.cumprod(1 - SCHED.betas.double(), 0)
    for i in [0, 1, n // 2, n - 1]:
        t = int(seq[i])
        a_t = ab[t]
        a_prev = ab[seq[i + 1]] if i + 1 < n else torch.tensor(1.0, dtype=torch.float64)
        xt, eps = _pair(t, torch.float64)
        x0 = (xt - (1 - a_t).sqrt() * eps) / a_t.sqrt()
        sigma = eta * ((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)).sqrt()
        z = torch.randn(xt.shape, generator=_gen(), dtype=torch.float64)
        expected = a_prev.sqrt() * x0 + (1 - a_prev - sigma**2).clamp(min=0).sqrt() * eps + sigma * z
        torch.testing.assert_close(s.step(eps, t, xt, generator=_gen()), expected, rtol=0, atol=1e-6)
    if n == 30:  # here diffusers' t - T//n differs from the true previous timestep
        assert int(seq[1]) != int(seq[0]) - T // n


def test_ddim_eta1_full_sequence_is_ddpm_fixed_small():
    """With every timestep, DDIM's sigma (eq. 16 at eta=1) is the posterior std, so the steps coincide."""
    ddim = DDIMSampler(SCHED, num_steps=T, eta=1.0, clip_x0=False)
    ddpm = DDPMSampler(SCHED, variance="fixed_small", clip_x0=False)
    for t in [900, 300, 5, 1]:
        xt, out = _pair(t, torch.float64)
        torch.testing.assert_close(ddim.step(out, t, xt, generator=_gen()), ddpm.step(out, t, xt, generator=_gen()))


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # diffusers' own numpy-2 copy= warning
@pytest.mark.parametrize("n", [5, 20])
def test_dpm_solver_matches_diffusers(n):
    """DPM-Solver++(2M) over a whole run against diffusers' DPMSolverMultistepScheduler (trailing spacing,
    final sigma 0), given the same model outputs; diffusers' sigmas replaced by float64 ones."""
    ours = DPMSolverSampler(SCHED, num_steps=n, clip_x0=False)
    ref = DPMSolverMultistepScheduler(num_train_timesteps=T, timestep_spacing="trailing", final_sigmas_type="zero")
    ref.set_timesteps(n)
    assert torch.equal(ours.timesteps, ref.timesteps)
    ab = torch.cumprod(1 - SCHED.betas.double(), 0)
    ref.sigmas = torch.cat([((1 - ab) / ab).sqrt()[ref.timesteps], torch.zeros(1, dtype=torch.float64)])
    g = _gen(5)
    xa = xb = torch.randn(4, 2, 4, 4, generator=g, dtype=torch.float64)
    for i, t in enumerate(ref.timesteps.tolist()):
        out = torch.randn(xa.shape, generator=g, dtype=torch.float64) * 0.3 + xa * 0.2
        xa = ref.step(out, t, xa).prev_sample
        xb = ours.step(out, t, xb)
        torch.testing.assert_close(xb, xa, rtol=1e-6, atol=1e-6, msg=f"step {i}")


@pytest.mark.parametrize("make", [
    lambda: DDPMSampler(SCHED, clip_x0=False),
    lambda: DDPMSampler(SCHED, variance="fixed_large", clip_x0=True),
    lambda: DDIMSampler(SCHED, 20, eta=0.3, spacing="trailing", clip_x0=False),
    lambda: DPMSolverSampler(SCHED, 10, clip_x0=False),
])
def test_eps_x0_v_models_give_the_same_step(make):
    ab = torch.cumprod(1 - SCHED.betas.double(), 0)
    s = make()
    for t in s.timesteps[[0, 1, -1]].tolist():
        xt, eps = _pair(t, torch.float64, seed=t)
        a = ab[t]
        x0 = (xt - (1 - a).sqrt() * eps) / a.sqrt()
        v = a.sqrt() * eps - (1 - a).sqrt() * x0
        outs = []
        for ptype, out in [("epsilon", eps), ("x0", x0), ("v", v)]:
            s.reset()
            outs.append(s.step(out, t, xt, generator=_gen(), prediction_type=ptype))
        torch.testing.assert_close(outs[1], outs[0], rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(outs[2], outs[0], rtol=1e-6, atol=1e-6)


# --- the full loop --------------------------------------------------------------------------


class ConstModel(torch.nn.Module):
    """Output = label-dependent constant (label + 1) * c, or c_null for the null label; records calls."""

    def __init__(self, null_class=10):
        super().__init__()
        self.null_class = null_class
        self.lin = torch.nn.Linear(1, 1)  # a parameter, so that the device is found and eval() matters
        self.calls = []

    def forward(self, x, t, labels=None):
        self.calls.append((x.shape[0], None if labels is None else labels.clone(), self.training))
        if labels is None:
            val = torch.full((x.shape[0],), -0.5)
        else:
            val = torch.where(labels == self.null_class, torch.tensor(0.25), (labels.float() + 1) * 0.1)
        return val.reshape(-1, *([1] * (x.ndim - 1))).expand_as(x).to(x.dtype) + 0 * x


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_classifier_free_guidance_formula(w):
    m = ConstModel()
    x = torch.zeros(4, 1, 2, 2)
    t = torch.full((4,), 7)
    labels = torch.tensor([0, 1, 2, 3])
    out = guided_output(m, x, t, labels, guidance_scale=w)
    cond = (labels.float() + 1) * 0.1
    expected = 0.25 + w * (cond - 0.25)
    torch.testing.assert_close(out[:, 0, 0, 0], expected)
    assert len(m.calls) == 1  # cond and uncond passes batched together when w is not 0 or 1
    assert m.calls[0][0] == (8 if w == 3.0 else 4)


def test_sample_with_guidance_calls_and_eval_mode():
    m = ConstModel(null_class=5)
    m.train()
    x = sample(m, SCHED, (3, 1, 2, 2), sampler="ddim", num_steps=4, labels=2, guidance_scale=2.0, progress=False)
    assert x.shape == (3, 1, 2, 2)
    assert len(m.calls) == 4 and all(n == 6 and not training for n, _, training in m.calls)
    assert torch.equal(m.calls[0][1], torch.tensor([2, 2, 2, 5, 5, 5]))
    assert m.training  # restored
    with pytest.raises(ValueError, match="null"):
        sample(ConstModel(null_class=None), SCHED, (2, 1), "ddim", num_steps=2, labels=1, guidance_scale=2.0, progress=False)
    with pytest.raises(ValueError, match="labels"):
        sample(m, SCHED, (2, 1), "ddim", num_steps=2, guidance_scale=2.0, progress=False)
    with pytest.raises(ValueError, match="labels must"):
        sample(m, SCHED, (2, 1), "ddim", num_steps=2, labels=torch.tensor([1, 2, 3]), progress=False)


class EpsFromX(torch.nn.Module):
    """A smooth deterministic 'model': eps-hat = 0.5 * x_t * (1 + t / T)."""

    def forward(self, x, t, labels=None):
        return 0.5 * x * (1 + t.reshape(-1, *([1] * (x.ndim - 1))).float() / T)


@pytest.mark.parametrize("name, ref_cls, kwargs", [
    ("ddpm", DDPMScheduler, {}),
    ("ddim", DDIMScheduler, {"eta": 1.0}),
    ("ddim", DDIMScheduler, {"eta": 0.0}),
])
def test_full_loop_matches_a_diffusers_loop(name, ref_cls, kwargs):
    """sample() = x_T from the generator, then step after step with the same generator (T = 100)."""
    sched = make_schedule("linear", 100)
    model = EpsFromX()
    n = 100 if name == "ddpm" else 10
    ref = ref_cls(num_train_timesteps=100, beta_start=1e-3, beta_end=0.2)  # both clip x0-hat by default, as ours
    ref.set_timesteps(n)
    g = _gen(7)
    x = torch.randn((3, 2, 4, 4), generator=g)
    for t in ref.timesteps:
        out = model(x, t.expand(3))
        x = ref.step(out, t, x, generator=g, **kwargs).prev_sample
    ours = sample(model, sched, (3, 2, 4, 4), name, num_steps=None if name == "ddpm" else n,
                  eta=kwargs.get("eta", 0.0), generator=_gen(7), progress=False)
    torch.testing.assert_close(ours, x, rtol=0, atol=1e-4)


def test_determinism_trajectory_and_any_shape():
    model = EpsFromX()
    sched = make_schedule("cosine", 50)
    a, traj = sample(model, sched, (5, 3), "ddpm", generator=_gen(1), return_trajectory=True, progress=False)
    b = sample(model, sched, (5, 3), "ddpm", generator=_gen(1), progress=False)
    c = sample(model, sched, (5, 3), "ddpm", generator=_gen(2), progress=False)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert len(traj) == 51 and torch.equal(traj[-1], a) and traj[0].shape == (5, 3)
    torch.testing.assert_close(traj[0], torch.randn((5, 3), generator=_gen(1)))  # x_T is the first draw
    e = sample(model, sched, (5, 3), "ddpm", generator=_gen(9), progress=False, x_T=traj[0])
    assert not torch.equal(a, e)  # same start, other step noise
    f = sample(model, sched, (5, 3), "ddim", num_steps=5, progress=False, x_T=traj[0])
    f2 = sample(model, sched, (5, 3), "ddim", num_steps=5, progress=False, x_T=traj[0])
    assert torch.equal(f, f2)  # deterministic DDIM: a function of x_T
    with pytest.raises(ValueError, match="x_T has shape"):
        sample(model, sched, (5, 3), "ddim", num_steps=5, progress=False, x_T=torch.zeros(4, 3))
    d = sample(model, sched, (2, 1, 3, 3), DDIMSampler(sched, 5, eta=0.5), generator=_gen(3), progress=False)
    assert d.shape == (2, 1, 3, 3) and torch.isfinite(d).all()


def test_errors():
    model = EpsFromX()
    with pytest.raises(ValueError, match="Unknown sampler"):
        sample(model, SCHED, (2, 2), "euler", progress=False)
    with pytest.raises(ValueError, match="num_steps"):
        DDIMSampler(SCHED, num_steps=T + 1)
    with pytest.raises(ValueError, match="num_steps"):
        DDIMSampler(SCHED, num_steps=0)
    with pytest.raises(ValueError, match="num_steps"):
        sample(model, SCHED, (2, 2), "ddim", num_steps=2000, progress=False)
    for eta in (-0.1, 1.5, "a"):
        with pytest.raises(ValueError, match="eta"):
            DDIMSampler(SCHED, 10, eta=eta)
    with pytest.raises(ValueError, match="eta"):
        sample(model, SCHED, (2, 2), "ddpm", eta=0.5, progress=False)
    with pytest.raises(ValueError, match="spacing"):
        DDIMSampler(SCHED, 10, spacing="log")
    with pytest.raises(ValueError, match="variance"):
        DDPMSampler(SCHED, variance="learned")
    with pytest.raises(ValueError, match="shape"):
        sample(model, SCHED, (4,), progress=False)
    with pytest.raises(ValueError, match="shape"):
        sample(model, SCHED, (4, 0, 2), progress=False)
    with pytest.raises(ValueError, match="not in this sampler's sequence"):
        DDIMSampler(SCHED, 10).step(torch.zeros(1, 2), 901, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="shape"):
        DDIMSampler(SCHED, 10).step(torch.zeros(1, 3), 900, torch.zeros(1, 2))
    with pytest.raises(ValueError, match="prediction_type"):
        DDIMSampler(SCHED, 10).step(torch.zeros(1, 2), 900, torch.zeros(1, 2), prediction_type="score")
    with pytest.raises(ValueError, match="schedule"):
        DDIMSampler("linear", 10)
    with pytest.raises(ValueError, match="sampler instance"):
        sample(model, SCHED, (2, 2), DDIMSampler(SCHED, 10), num_steps=5, progress=False)
    with pytest.raises(ValueError, match="model returned shape"):
        sample(lambda x, t, labels=None: x[:, :1], SCHED, (2, 2), "ddim", num_steps=2, progress=False)
    assert math.isfinite(DDIMSampler(SCHED, 10, eta=1).sigma(900))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_same_noise_on_cpu_and_gpu():
    """All noise comes from the CPU generator, so the GPU run differs from the CPU run only by rounding."""
    model = EpsFromX()
    sched = make_schedule("linear", 100)
    cpu = sample(model, sched, (4, 1, 8, 8), "ddpm", generator=_gen(11), progress=False, device="cpu")
    gpu = sample(model, sched, (4, 1, 8, 8), "ddpm", generator=_gen(11), progress=False, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)
