"""The score view of the course's eps-models, the sigma parameterisation, and EDM's Heun sampler.

**Scores.** The network trained with the simple loss approximates E[eps | x_t], and by Tweedie's formula
(Song et al. 2021, "Score-based generative modeling through SDEs", arXiv:2011.13456, sec. 3 / Vincent 2011)

    eps*(x_t, t) = -sqrt(1 - abar_t) grad_x log p_t(x_t),

so an eps-model is a scaled score model: :func:`score_from_eps` and :func:`eps_from_score`.

**The sigma parameterisation** (Karras et al. 2022, "Elucidating the design space of diffusion-based
generative models", arXiv:2206.00364, sec. 2 and table 1, "VP"): divide x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps
by sqrt(abar) and

    x_sigma = x_t / sqrt(abar) = x_0 + sigma eps,    sigma = sqrt((1 - abar) / abar) = SNR^(-1/2),

data plus noise of standard deviation sigma (the course writes it sigma_EDM: docs/notation.md). Its
probability-flow ODE (Karras et al. eq. 1 with sigma(t) = t, s(t) = 1) is

    d x_sigma / d sigma = -sigma grad log p(x_sigma; sigma) = eps(x_t, t) = (x_sigma - D(x_sigma; sigma)) / sigma,

with D the denoiser x0-hat. One Euler step of it between two timesteps of the schedule is DDIM with eta = 0
(Song et al. 2021, DDIM, arXiv:2010.02502, eq. 13-14). ``samplers.EDMSampler`` integrates it with Heun's
method (Karras et al. Algorithm 1, deterministic) on the sigma levels of Karras et al. eq. 5
(:func:`karras_sigmas`), using an unchanged eps-model: the model sees x_t = x_sigma / sqrt(1 + sigma^2)
and the (fractional) timestep whose sigma it is (:func:`sigma_to_timestep`).

This module is the one home of the sigma <-> alpha_bar and sigma <-> timestep conversions and of the
score <-> eps scaling; :class:`ddpm_lib.diffusion.samplers.EDMSampler` (next to DDIM and DPM-Solver++) uses them.
"""

from __future__ import annotations

import math

import numpy as np

from ddpm_lib.diffusion.schedules import NoiseSchedule

# --- conversions ------------------------------------------------------------------------------


def sigma_from_alpha_bar(alpha_bar):
    """sigma = sqrt((1 - abar) / abar) (float, NumPy array or tensor)."""
    return ((1.0 - alpha_bar) / alpha_bar) ** 0.5


def alpha_bar_from_sigma(sigma):
    """abar = 1 / (1 + sigma^2), the inverse of :func:`sigma_from_alpha_bar`."""
    return 1.0 / (1.0 + sigma**2)


def score_from_eps(eps, alpha_bar):
    """grad log p_t(x_t) = -eps / sqrt(1 - abar_t) (Tweedie; ``alpha_bar`` a float or broadcasting tensor)."""
    return -eps / (1.0 - alpha_bar) ** 0.5


def eps_from_score(score, alpha_bar):
    """eps = -sqrt(1 - abar_t) grad log p_t(x_t), the inverse of :func:`score_from_eps`."""
    return -((1.0 - alpha_bar) ** 0.5) * score


def schedule_sigmas(schedule: NoiseSchedule) -> np.ndarray:
    """sigma at every timestep 0..T-1 (float64, increasing), from the betas without cancellation."""
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(f"schedule must be a ddpm_lib NoiseSchedule, got {type(schedule).__name__}.")
    log_ab = np.cumsum(np.log1p(-schedule.betas.detach().cpu().double().numpy()))
    return np.sqrt(np.expm1(-log_ab))


def sigma_to_timestep(sigma, schedule: NoiseSchedule) -> np.ndarray:
    """The fractional timestep of each sigma: log sigma interpolated linearly between the schedule's timesteps
    (as diffusers' ``_sigma_to_t``), clamped to 0..T-1. Returns a float64 array of sigma's shape."""
    log_sigmas = np.log(schedule_sigmas(schedule))
    log_s = np.log(np.maximum(np.asarray(sigma, dtype=np.float64), 1e-10))
    return np.interp(log_s, log_sigmas, np.arange(len(log_sigmas), dtype=np.float64))


def timestep_to_sigma(t, schedule: NoiseSchedule) -> np.ndarray:
    """sigma at a (fractional) timestep: the exact inverse of :func:`sigma_to_timestep` on 0..T-1."""
    log_sigmas = np.log(schedule_sigmas(schedule))
    t = np.asarray(t, dtype=np.float64)
    return np.exp(np.interp(t, np.arange(len(log_sigmas), dtype=np.float64), log_sigmas))


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> np.ndarray:
    """Karras et al. 2022, eq. 5: ``num_steps`` descending noise levels from sigma_max to sigma_min,

        sigma_i = (sigma_max^(1/rho) + i / (N - 1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho,   i = 0..N-1,

    evenly spaced in sigma^(1/rho) (rho = 7: most steps near sigma_min). One step gives [sigma_max]."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")
    n = int(num_steps)
    if not (0 < sigma_min < sigma_max) or not math.isfinite(sigma_max):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got sigma_min={sigma_min!r}, sigma_max={sigma_max!r}.")
    if not (isinstance(rho, (int, float)) and rho > 0):
        raise ValueError(f"rho must be a positive number (Karras et al. use 7), got {rho!r}.")
    ramp = np.linspace(0.0, 1.0, n)
    lo, hi = sigma_min ** (1.0 / rho), sigma_max ** (1.0 / rho)
    return (hi + ramp * (lo - hi)) ** rho
