"""Noise schedules: the betas beta_1..beta_T and every quantity derived from them.

Notation follows Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", arXiv:2006.11239), with
timesteps indexed from 0 as in code: index ``t`` in ``0..T-1`` is the paper's step ``t+1``.

- ``alphas[t] = 1 - betas[t]``
- ``alpha_bars[t] = prod_{s<=t} alphas[s]``                       (paper: alpha-bar_t, below eq. 4)
- ``posterior_variance[t] = betas[t] (1 - alpha_bars[t-1]) / (1 - alpha_bars[t])``  (beta-tilde, eq. 7)
- ``posterior_mean_coef1/2``: the weights of x_0 and x_t in mu-tilde_t(x_t, x_0)      (eq. 7)
- ``snr[t] = alpha_bars[t] / (1 - alpha_bars[t])``                  (Kingma et al. 2021, eq. 2-3)

Everything is computed in float64 and stored as float32 tensors.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from ddpm_lib.diffusion import forward

SCHEDULE_NAMES = ("linear", "cosine", "sigmoid", "quadratic")


@dataclass(frozen=True)
class NoiseSchedule:
    """A discrete noise schedule of ``num_timesteps`` steps and its derived quantities (float32, shape (T,))."""

    name: str
    num_timesteps: int
    betas: torch.Tensor
    alphas: torch.Tensor
    alpha_bars: torch.Tensor
    alpha_bars_prev: torch.Tensor  # alpha_bars[t-1], with alpha_bars_prev[0] = 1
    sqrt_alpha_bars: torch.Tensor
    sqrt_one_minus_alpha_bars: torch.Tensor
    sqrt_recip_alpha_bars: torch.Tensor  # 1 / sqrt(alpha_bar_t)
    sqrt_recipm1_alpha_bars: torch.Tensor  # sqrt(1 / alpha_bar_t - 1)
    posterior_variance: torch.Tensor  # beta-tilde_t (eq. 7); 0 at t = 0
    posterior_log_variance_clipped: torch.Tensor  # log beta-tilde_t, with t = 0 replaced by t = 1
    posterior_mean_coef1: torch.Tensor  # multiplies x_0 in mu-tilde_t
    posterior_mean_coef2: torch.Tensor  # multiplies x_t in mu-tilde_t
    snr: torch.Tensor  # alpha_bar / (1 - alpha_bar)
    log_snr: torch.Tensor

    def __len__(self) -> int:
        return self.num_timesteps

    @property
    def device(self) -> torch.device:
        return self.betas.device

    def to(self, device: torch.device | str) -> NoiseSchedule:
        """A copy with every tensor on ``device``."""
        values = {
            f.name: (getattr(self, f.name).to(device) if isinstance(getattr(self, f.name), torch.Tensor) else getattr(self, f.name))
            for f in fields(self)
        }
        return NoiseSchedule(**values)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Sample q(x_t | x_0) = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps (Ho et al. eq. 4).

        Same as :func:`ddpm_lib.diffusion.forward.add_noise`; here so that ``schedule.add_noise(x0, noise, t)`` reads
        like diffusers' ``scheduler.add_noise``.
        """
        return forward.add_noise(self, x0, noise, t)

    @classmethod
    def from_betas(cls, betas, name: str = "custom") -> NoiseSchedule:
        """Build a schedule from any 1-D sequence of betas, each strictly between 0 and 1."""
        b = np.asarray(betas.detach().cpu().numpy() if isinstance(betas, torch.Tensor) else betas, dtype=np.float64)
        if b.ndim != 1 or b.size < 1:
            raise ValueError(f"betas must be a non-empty 1-D sequence, got shape {b.shape}.")
        if not np.all(np.isfinite(b)) or np.any(b <= 0) or np.any(b >= 1):
            bad = int(np.argmax(~np.isfinite(b) | (b <= 0) | (b >= 1)))
            raise ValueError(
                f"schedule {name!r}: every beta must lie strictly between 0 and 1, but beta[{bad}] = {b[bad]!r}. "
                "With the linear schedule this happens for very small num_timesteps (the betas are rescaled "
                "by 1000/T): use more timesteps or the 'cosine' schedule."
            )
        alphas = 1.0 - b
        alpha_bars = np.cumprod(alphas)
        alpha_bars_prev = np.append(1.0, alpha_bars[:-1])
        coef1, coef2, post_var = forward.posterior_coefficients(b, alpha_bars_prev, 1.0 - alpha_bars, 1.0 - alpha_bars_prev)
        # log of the posterior variance, with the t=0 entry (0, log = -inf) replaced by t=1's, as Ho et al.'s code does
        post_log_var = np.log(np.append(post_var[1], post_var[1:])) if b.size > 1 else np.log(np.maximum(post_var, 1e-20))
        snr = alpha_bars / (1.0 - alpha_bars)

        def f32(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(torch.float32)

        return cls(
            name=name,
            num_timesteps=int(b.size),
            betas=f32(b),
            alphas=f32(alphas),
            alpha_bars=f32(alpha_bars),
            alpha_bars_prev=f32(alpha_bars_prev),
            sqrt_alpha_bars=f32(np.sqrt(alpha_bars)),
            sqrt_one_minus_alpha_bars=f32(np.sqrt(1.0 - alpha_bars)),
            sqrt_recip_alpha_bars=f32(np.sqrt(1.0 / alpha_bars)),
            sqrt_recipm1_alpha_bars=f32(np.sqrt(1.0 / alpha_bars - 1.0)),
            posterior_variance=f32(post_var),
            posterior_log_variance_clipped=f32(post_log_var),
            posterior_mean_coef1=f32(coef1),
            posterior_mean_coef2=f32(coef2),
            snr=f32(snr),
            log_snr=f32(np.log(snr)),
        )


# ---------------------------------------------------------------------------------------------
# The named schedules (each returns float64 numpy betas)


def linear_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """Ho et al. 2020 (sec. 4): betas rising linearly from 1e-4 to 0.02 at T = 1000.

    For other T the end points are scaled by 1000 / T, as improved-diffusion does, so that the total
    amount of noise (and so alpha_bar at the last step) stays about the same.
    """
    scale = 1000.0 / num_timesteps
    return np.linspace(beta_start * scale, beta_end * scale, num_timesteps, dtype=np.float64)


def quadratic_betas(num_timesteps: int, beta_start: float = 1e-4, beta_end: float = 0.02) -> np.ndarray:
    """sqrt(beta) linear in t (the "quad" schedule of the DDIM code; diffusers' "scaled_linear"), rescaled like linear."""
    scale = 1000.0 / num_timesteps
    return np.linspace(math.sqrt(beta_start * scale), math.sqrt(beta_end * scale), num_timesteps, dtype=np.float64) ** 2


def betas_from_alpha_bar(alpha_bar_fn, num_timesteps: int, max_beta: float = 0.999) -> np.ndarray:
    """Discretise a continuous alpha_bar(tau), tau in [0, 1]: beta_t = 1 - alpha_bar((t+1)/T) / alpha_bar(t/T).

    Clipped at ``max_beta`` so the last step does not divide by ~0 (Nichol & Dhariwal 2021, sec. 3.2).
    """
    t1 = np.arange(num_timesteps, dtype=np.float64) / num_timesteps
    t2 = (np.arange(num_timesteps, dtype=np.float64) + 1) / num_timesteps
    return np.minimum(1.0 - alpha_bar_fn(t2) / alpha_bar_fn(t1), max_beta)


def cosine_betas(num_timesteps: int, s: float = 0.008, max_beta: float = 0.999) -> np.ndarray:
    """Nichol & Dhariwal 2021, eq. 17: alpha_bar(tau) = cos^2(((tau + s) / (1 + s)) * pi / 2)."""
    return betas_from_alpha_bar(lambda tau: np.cos((tau + s) / (1 + s) * math.pi / 2) ** 2, num_timesteps, max_beta)


def sigmoid_betas(
    num_timesteps: int, start: float = -3.0, end: float = 3.0, tau: float = 1.0, max_beta: float = 0.999
) -> np.ndarray:
    """Sigmoid schedule of Jabri et al. 2022 / Chen 2023 ("On the importance of noise scheduling", alg. 1).

    alpha_bar(u) = (sigmoid(end/tau) - sigmoid((u (end - start) + start) / tau)) / (sigmoid(end/tau) - sigmoid(start/tau)),
    which falls from 1 at u = 0 to 0 at u = 1 along a sigmoid; ``tau`` sets how sharp the fall is.
    """

    def sig(x):
        return 1.0 / (1.0 + np.exp(-x))

    v_start, v_end = sig(start / tau), sig(end / tau)

    def alpha_bar(u):
        return (v_end - sig((u * (end - start) + start) / tau)) / (v_end - v_start)

    return betas_from_alpha_bar(alpha_bar, num_timesteps, max_beta)


_BUILDERS = {
    "linear": linear_betas,
    "cosine": cosine_betas,
    "sigmoid": sigmoid_betas,
    "quadratic": quadratic_betas,
}


def make_schedule(name: str = "linear", num_timesteps: int = 1000, **kwargs) -> NoiseSchedule:
    """Build a named schedule: ``"linear"``, ``"cosine"``, ``"sigmoid"`` or ``"quadratic"``.

    Extra keyword arguments go to the schedule's builder (``beta_start``/``beta_end`` for linear and
    quadratic, ``s`` for cosine, ``start``/``end``/``tau`` for sigmoid, ``max_beta`` for the last two).
    """
    if name not in _BUILDERS:
        raise ValueError(f"Unknown schedule name {name!r}: choose one of {', '.join(SCHEDULE_NAMES)}.")
    if isinstance(num_timesteps, bool) or not isinstance(num_timesteps, (int, np.integer)) or num_timesteps < 1:
        raise ValueError(f"num_timesteps must be an integer >= 1, got {num_timesteps!r}.")
    try:
        betas = _BUILDERS[name](int(num_timesteps), **kwargs)
    except TypeError as e:
        raise ValueError(f"Bad keyword argument for the {name!r} schedule: {e}") from None
    return NoiseSchedule.from_betas(betas, name=name)
