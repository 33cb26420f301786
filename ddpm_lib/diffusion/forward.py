"""The forward (noising) process and the three ways a network can describe its output.

References: Ho et al. 2020 (arXiv:2006.11239) eq. 2, 4, 7, 15; Salimans & Ho 2022 (arXiv:2202.00512)
sec. 4 and appendix D for the v-parameterisation.

``t`` is always a LongTensor of shape (B,) holding indices in ``0..T-1`` (or a Python int, broadcast),
and always the last tensor argument: ``f(schedule, <tensors>, t)`` (as diffusers' ``add_noise(x0, noise, t)``).
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

PREDICTION_TYPES = ("epsilon", "x0", "v")


class ScheduleTables(Protocol):
    """The per-timestep tables (float tensors of shape (T,)) this module reads from a schedule.

    :class:`ddpm_lib.diffusion.schedules.NoiseSchedule` has them; it is built on this module's
    :func:`posterior_coefficients`, so this module names the tables it needs instead of importing it.
    """

    betas: torch.Tensor
    alphas: torch.Tensor
    sqrt_alpha_bars: torch.Tensor
    sqrt_one_minus_alpha_bars: torch.Tensor
    posterior_mean_coef1: torch.Tensor
    posterior_mean_coef2: torch.Tensor
    posterior_variance: torch.Tensor
    posterior_log_variance_clipped: torch.Tensor


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


def add_noise(schedule: ScheduleTables, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I), reparameterised (Ho et al. eq. 4)."""
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0: {tuple(noise.shape)} vs {tuple(x0.shape)}.")
    return extract(schedule.sqrt_alpha_bars, t, x0) * x0 + extract(schedule.sqrt_one_minus_alpha_bars, t, x0) * noise


def q_step(schedule: ScheduleTables, x_prev: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
    """One step of the forward chain, x_t ~ q(x_t | x_{t-1}) = N(sqrt(1 - beta_t) x_{t-1}, beta_t I) (eq. 2)."""
    return extract(schedule.alphas, t, x_prev).sqrt() * x_prev + extract(schedule.betas, t, x_prev).sqrt() * noise


def posterior_coefficients(beta, alpha_bar_prev, one_minus_alpha_bar, one_minus_alpha_bar_prev):
    """The scalars of q(x_prev | x_t, x_0) (eq. 6-7) between timestep t and the previous one visited:
    ``(coef_x0, coef_xt, variance)`` with mu-tilde = coef_x0 x_0 + coef_xt x_t, where
    ``beta = 1 - abar_t / abar_prev`` (Ho et al.'s beta_t when the previous timestep is t - 1)::

        coef_x0 = sqrt(abar_prev) beta / (1 - abar_t)
        coef_xt = sqrt(1 - beta) (1 - abar_prev) / (1 - abar_t)
        variance = beta-tilde = (1 - abar_prev) / (1 - abar_t) beta

    Floats or NumPy arrays (the schedule's tables and the samplers' strided steps both use it);
    ``1 - abar`` is passed in so that callers can compute it without cancellation.
    """
    coef_x0 = np.sqrt(alpha_bar_prev) * beta / one_minus_alpha_bar
    coef_xt = np.sqrt(1.0 - beta) * one_minus_alpha_bar_prev / one_minus_alpha_bar
    return coef_x0, coef_xt, one_minus_alpha_bar_prev / one_minus_alpha_bar * beta


def q_posterior(schedule: ScheduleTables, x0: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int):
    """Mean and variance of q(x_{t-1} | x_t, x_0) (eq. 6-7): returns (mu-tilde, beta-tilde, log beta-tilde clipped)."""
    mean = extract(schedule.posterior_mean_coef1, t, x_t) * x0 + extract(schedule.posterior_mean_coef2, t, x_t) * x_t
    var = extract(schedule.posterior_variance, t, x_t)
    log_var = extract(schedule.posterior_log_variance_clipped, t, x_t)
    return mean, var, log_var


# --- conversions between parameterisations --------------------------------------------------
# x_t = sqrt(abar) x_0 + sqrt(1 - abar) eps (eq. 4) and v = sqrt(abar) eps - sqrt(1 - abar) x_0 (Salimans & Ho):
# given x_t and any one of eps, x_0, v, the other two follow. eps_x0_from_output is the one copy of that
# algebra; the functions below and the samplers (at a scalar alpha_bar) call it.


def eps_x0_from_output(output: torch.Tensor, x_t: torch.Tensor, sqrt_alpha_bar, sqrt_one_minus_alpha_bar,
                       prediction_type: str = "epsilon"):
    """(eps-hat, x0-hat) from a network output of any parameterisation, given sqrt(abar) and sqrt(1 - abar)
    (floats, or tensors broadcasting against ``x_t``)."""
    check_prediction_type(prediction_type)
    sa, s1a = sqrt_alpha_bar, sqrt_one_minus_alpha_bar
    if prediction_type == "epsilon":
        return output, (x_t - s1a * output) / sa
    if prediction_type == "x0":
        return (x_t - sa * output) / s1a, output
    return s1a * x_t + sa * output, sa * x_t - s1a * output


def eps_and_x0(schedule: ScheduleTables, x_t: torch.Tensor, output: torch.Tensor, t, prediction_type: str = "epsilon"):
    """From a network output of any parameterisation at timestep ``t``, return (eps-hat, x0-hat)."""
    sa, s1a = extract(schedule.sqrt_alpha_bars, t, x_t), extract(schedule.sqrt_one_minus_alpha_bars, t, x_t)
    return eps_x0_from_output(output, x_t, sa, s1a, prediction_type)


def x0_from_eps(schedule: ScheduleTables, x_t: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """Invert eq. 4: x_0 = (x_t - sqrt(1 - alpha_bar_t) eps) / sqrt(alpha_bar_t)."""
    return eps_and_x0(schedule, x_t, eps, t, "epsilon")[1]


def eps_from_x0(schedule: ScheduleTables, x_t: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
    """Invert eq. 4 the other way: eps = (x_t - sqrt(alpha_bar_t) x_0) / sqrt(1 - alpha_bar_t)."""
    return eps_and_x0(schedule, x_t, x0, t, "x0")[0]


def x0_from_v(schedule: ScheduleTables, x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    """x_0 = sqrt(alpha_bar_t) x_t - sqrt(1 - alpha_bar_t) v."""
    return eps_and_x0(schedule, x_t, v, t, "v")[1]


def eps_from_v(schedule: ScheduleTables, x_t: torch.Tensor, v: torch.Tensor, t) -> torch.Tensor:
    """eps = sqrt(1 - alpha_bar_t) x_t + sqrt(alpha_bar_t) v."""
    return eps_and_x0(schedule, x_t, v, t, "v")[0]


def v_from_eps_x0(schedule: ScheduleTables, x0: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """v = sqrt(alpha_bar_t) eps - sqrt(1 - alpha_bar_t) x_0 (Salimans & Ho 2022, sec. 4)."""
    return extract(schedule.sqrt_alpha_bars, t, x0) * eps - extract(schedule.sqrt_one_minus_alpha_bars, t, x0) * x0


def check_prediction_type(prediction_type: str) -> str:
    if prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}.")
    return prediction_type


def training_target(schedule: ScheduleTables, x0: torch.Tensor, noise: torch.Tensor, t, prediction_type: str = "epsilon"):
    """What the network should output for (x_0, eps, t): eps, x_0, or v."""
    check_prediction_type(prediction_type)
    if prediction_type == "epsilon":
        return noise
    if prediction_type == "x0":
        return x0
    return v_from_eps_x0(schedule, x0, noise, t)
