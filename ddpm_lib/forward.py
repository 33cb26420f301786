"""The forward (noising) process and the three ways a network can describe its output.

References: Ho et al. 2020 (arXiv:2006.11239) eq. 2, 4, 7, 15; Salimans & Ho 2022 (arXiv:2202.00512)
sec. 4 and appendix D for the v-parameterisation.

``t`` is always a LongTensor of shape (B,) holding indices in ``0..T-1`` (or a Python int, broadcast).
"""

from __future__ import annotations

import torch

from ddpm_lib.schedules import NoiseSchedule

PREDICTION_TYPES = ("epsilon", "x0", "v")


def extract(values: torch.Tensor, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
    """``values[t]`` reshaped to (B, 1, 1, ...) so it broadcasts against ``like`` (shape (B, ...))."""
    if not isinstance(t, torch.Tensor):
        t = torch.full((like.shape[0],), int(t), dtype=torch.long)
    t = t.to(device=values.device, dtype=torch.long)
    if t.ndim == 0:
        t = t.expand(like.shape[0])
    if t.min() < 0 or t.max() >= values.shape[0]:
        raise ValueError(f"timestep out of range: t must lie in 0..{values.shape[0] - 1}, got {t.min().item()}..{t.max().item()}.")
    out = values[t].to(device=like.device, dtype=like.dtype if like.is_floating_point() else torch.float32)
    return out.reshape(t.shape[0], *([1] * (like.ndim - 1)))


def add_noise(schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), reparameterised (Ho et al. eq. 4)."""
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0: {tuple(noise.shape)} vs {tuple(x0.shape)}.")
    return extract(schedule.sqrt_alpha_bars, t, x0) * x0 + extract(schedule.sqrt_one_minus_alpha_bars, t, x0) * noise


def q_step(schedule: NoiseSchedule, x_prev: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """One step of the forward chain, x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (eq. 2)."""
    return extract(schedule.alphas, t, x_prev).sqrt() * x_prev + extract(schedule.betas, t, x_prev).sqrt() * noise


def q_posterior(schedule: NoiseSchedule, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int):
    """Mean and variance of q(x_{t-1} | x_t, x_0) (eq. 6-7): returns (mu-tilde, beta-tilde, log beta-tilde clipped)."""
    mean = extract(schedule.posterior_mean_coef1, t, x_t) * x0 + extract(schedule.posterior_mean_coef2, t, x_t) * x_t
    var = extract(schedule.posterior_variance, t, x_t)
    log_var = extract(schedule.posterior_log_variance_clipped, t, x_t)
    return mean, var, log_var


# --- conversions between parameterisations ----------------------------------------------------


def x0_from_eps(schedule: NoiseSchedule, x_t: torch.Tensor, t, eps: torch.Tensor) -> torch.Tensor:
    """Invert eq. 4: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return extract(schedule.sqrt_recip_alpha_bars, t, x_t) * x_t - extract(schedule.sqrt_recipm1_alpha_bars, t, x_t) * eps


def eps_from_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t, x0: torch.Tensor) -> torch.Tensor:
    """Invert eq. 4 the other way: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    return (extract(schedule.sqrt_recip_alpha_bars, t, x_t) * x_t - x0) / extract(schedule.sqrt_recipm1_alpha_bars, t, x_t)


def v_from_eps_x0(schedule: NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022, sec. 4)."""
    return extract(schedule.sqrt_alpha_bars, t, x0) * eps - extract(schedule.sqrt_one_minus_alpha_bars, t, x0) * x0


def x0_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t, v: torch.Tensor) -> torch.Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
    return extract(schedule.sqrt_alpha_bars, t, x_t) * x_t - extract(schedule.sqrt_one_minus_alpha_bars, t, x_t) * v


def eps_from_v(schedule: NoiseSchedule, x_t: torch.Tensor, t, v: torch.Tensor) -> torch.Tensor:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
    return extract(schedule.sqrt_one_minus_alpha_bars, t, x_t) * x_t + extract(schedule.sqrt_alpha_bars, t, x_t) * v


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    return prediction_type


def eps_and_x0(schedule: NoiseSchedule, x_t: torch.Tensor, t, output: torch.Tensor, prediction_type: str = "epsilon"):
    """From a network output of any parameterisation, return (eps-hat, x0-hat)."""
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return output, x0_from_eps(schedule, x_t, t, output)
    if prediction_type == "x0":
        return eps_from_x0(schedule, x_t, t, output), output
    return eps_from_v(schedule, x_t, t, output), x0_from_v(schedule, x_t, t, output)


def training_target(schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t, prediction_type: str = "epsilon"):
    """What the network should output for (x_0, eps, t): eps, x_0, or v."""
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "x0":
        return x0
    return v_from_eps_x0(schedule, x0, noise, t)
