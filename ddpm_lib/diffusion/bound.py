"""What DDPM optimises: the variational bound of Ho et al. 2020 (arXiv:2006.11239), sec. 3 and appendix A.

The model is p_theta(x_{0:T}) = p(x_T) prod_t p_theta(x_{t-1} | x_t) with p(x_T) = N(0, I) and
p_theta(x_{t-1} | x_t) = N(mu_theta(x_t, t), sigma_t^2 I). By Jensen's inequality (eq. 3) and the
posterior of eqs. 6-7 (eq. 5),

    -log p_theta(x_0) <= L = L_T + sum_{t=2..T} L_{t-1} + L_0,
    L_T     = KL(q(x_T | x_0) || p(x_T))                                    (no parameters)
    L_{t-1} = E_q KL(q(x_{t-1} | x_t, x_0) || p_theta(x_{t-1} | x_t))      (t > 1)
    L_0     = -E_q log p_theta(x_0 | x_1)                                   (here a Gaussian decoder).

With the eps-parameterisation of the mean (eq. 11), mu_theta = (x_t - beta_t / sqrt(1 - abar_t) eps_theta)
/ sqrt(alpha_t), every term is a weighted squared error of the noise plus a constant (eq. 12):

    L_{t-1} = lambda_t E || eps - eps_theta(x_t, t) ||^2 + C_t,
    lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)).

**Indices.** The paper counts t = 1..T; every function here takes the code index t = 0..T-1 (code t =
paper t - 1), like the rest of ``ddpm_lib``. Code t = 0 is the paper's t = 1, the decoder term L_0; code
t >= 1 is the KL term L_{t-1} of paper step t = code t + 1.

**Variances** (Ho et al. sec. 3.2): ``"fixed_small"`` sigma_t^2 = beta-tilde_t (the posterior's),
``"fixed_large"`` sigma_t^2 = beta_t. beta-tilde at paper t = 1 is 0, so for the decoder L_0 the
``fixed_small`` variance is the clipped one Ho et al.'s code uses (beta-tilde of paper t = 2,
``NoiseSchedule.posterior_log_variance_clipped``).

Everything is computed in float64 from the schedule's tables; ``1 - abar_t`` comes from
``sqrt_one_minus_alpha_bars`` (no cancellation at small t).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lib.diffusion import forward
from ddpm_lib.diffusion.schedules import NoiseSchedule

VARIANCES = ("fixed_small", "fixed_large")


def gaussian_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)) elementwise (a diagonal Gaussian: sum over dimensions yourself):

        KL = 1/2 [ log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1 ].

    Arguments broadcast against each other (tensors or numbers); variances, not standard deviations.
    """
    mean1, var1, mean2, var2 = (torch.as_tensor(a, dtype=torch.float64) for a in (mean1, var1, mean2, var2))
    return 0.5 * (torch.log(var2) - torch.log(var1) + (var1 + (mean1 - mean2) ** 2) / var2 - 1.0)


def gaussian_nll(x, mean, var) -> torch.Tensor:
    """-log N(x; mean, var) elementwise: 1/2 [ log(2 pi var) + (x - mean)^2 / var ]."""
    x, mean, var = (torch.as_tensor(a, dtype=torch.float64) for a in (x, mean, var))
    return 0.5 * (torch.log(2 * math.pi * var) + (x - mean) ** 2 / var)


def _check_variance(variance: str) -> str:
    if variance not in VARIANCES:
        raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}.")
    return variance


def _tables(schedule: NoiseSchedule) -> dict[str, torch.Tensor]:
    """float64 (T,) tables on the CPU: beta, alpha, 1 - abar, beta-tilde."""
    betas = schedule.betas.detach().cpu().double()
    return {
        "beta": betas,
        "alpha": 1.0 - betas,
        "one_minus_abar": schedule.sqrt_one_minus_alpha_bars.detach().cpu().double() ** 2,
        "beta_tilde": schedule.posterior_variance.detach().cpu().double(),
    }


def reverse_variance(schedule: NoiseSchedule, variance: str = "fixed_small") -> torch.Tensor:
    """sigma_t^2 of p_theta(x_{t-1} | x_t) per code t (T,) float64 (Ho et al. sec. 3.2).

    ``fixed_small``: beta-tilde_t, with code t = 0 (where beta-tilde is 0) replaced by code t = 1's value
    (``posterior_log_variance_clipped``, as Ho et al.'s code); ``fixed_large``: beta_t.
    """
    _check_variance(variance)
    if variance == "fixed_large":
        return schedule.betas.detach().cpu().double()
    return schedule.posterior_log_variance_clipped.detach().cpu().double().exp()


def vlb_weights(schedule: NoiseSchedule, variance: str = "fixed_small") -> torch.Tensor:
    """lambda_t = beta_t^2 / (2 sigma_t^2 alpha_t (1 - abar_t)) per code t (T,) float64 (Ho et al. eq. 12).

    L_{t-1} = lambda_t E||eps - eps_theta||^2 + C_t (:func:`vlb_constants`). At code t = 0 it is the
    weight of the squared error in the decoder term L_0 (there mu-tilde_1 = x_0, so the same algebra holds).
    """
    tab = _tables(schedule)
    sigma2 = reverse_variance(schedule, variance)
    return tab["beta"] ** 2 / (2 * sigma2 * tab["alpha"] * tab["one_minus_abar"])


def vlb_constants(schedule: NoiseSchedule, variance: str = "fixed_small", dim: int = 1) -> torch.Tensor:
    """C_t per code t (T,) float64 for data of ``dim`` numbers: the part of each term without eps_theta.

    code t >= 1 (the KL terms): C_t = dim/2 [ log(sigma_t^2 / beta-tilde_t) + beta-tilde_t / sigma_t^2 - 1 ]
    (the KL of two Gaussians with equal means; 0 for ``fixed_small``); code t = 0 (the decoder):
    C_0 = dim/2 log(2 pi sigma_1^2).
    """
    tab = _tables(schedule)
    sigma2 = reverse_variance(schedule, variance)
    c = dim * gaussian_kl(0.0, tab["beta_tilde"][1:], 0.0, sigma2[1:])
    return torch.cat([dim * 0.5 * torch.log(2 * math.pi * sigma2[:1]), c])


def prior_kl(schedule: NoiseSchedule, x0: torch.Tensor) -> torch.Tensor:
    """L_T = KL(q(x_T | x_0) || N(0, I)) per sample (B,) float64: q(x_T | x_0) = N(sqrt(abar_T) x_0, (1 - abar_T) I)
    (eq. 4), summed over the dimensions. It has no trainable parameter."""
    x0 = x0.detach().cpu().double()
    sa = schedule.sqrt_alpha_bars[-1].double().item()
    one_m = schedule.sqrt_one_minus_alpha_bars[-1].double().item() ** 2
    return gaussian_kl(sa * x0, one_m, 0.0, 1.0).flatten(1).sum(1)


def eps_model_mean(schedule: NoiseSchedule, x_t: torch.Tensor, eps: torch.Tensor, t) -> torch.Tensor:
    """mu_theta(x_t, t) of eq. 11 for a noise prediction ``eps`` (float64): the posterior mean of eq. 7 at
    x0-hat = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), which simplifies to
    (x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)."""
    x_t, eps = x_t.detach().cpu().double(), eps.detach().cpu().double()
    return forward.q_posterior(schedule, forward.x0_from_eps(schedule, x_t, eps, t), x_t, t)[0]


def vlb_terms(model: Callable, schedule: NoiseSchedule, x0: torch.Tensor, noise: torch.Tensor, t,
              variance: str = "fixed_small") -> torch.Tensor:
    """The bound's term at code timestep ``t`` for each sample (B,) float64, in closed form (eq. 5):

    x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) noise (eq. 4), eps_theta = model(x_t, t), mu_theta by eq. 11;
    code t >= 1: KL(N(mu-tilde_t, beta-tilde_t) || N(mu_theta, sigma_t^2)) summed over dimensions (L_{t-1});
    code t = 0: -log N(x_0; mu_theta, sigma_1^2 I) (the decoder term L_0).

    ``t`` is an int or a LongTensor (B,); ``model(x_t, t)`` gets x_t in float64 and t as a LongTensor (B,).
    """
    _check_variance(variance)
    x0 = x0.detach().cpu().double()
    noise = noise.detach().cpu().double()
    if not isinstance(t, torch.Tensor):
        t = torch.full((x0.shape[0],), int(t), dtype=torch.long)
    t = t.to(torch.long).cpu()
    x_t = forward.add_noise(schedule, x0, noise, t)
    with torch.no_grad():
        eps = model(x_t, t)
    mu_theta = eps_model_mean(schedule, x_t, eps, t)
    mu_tilde, beta_tilde, _ = forward.q_posterior(schedule, x0, x_t, t)
    beta_tilde = forward.extract(schedule.posterior_variance.double(), t, x0)
    sigma2 = forward.extract(reverse_variance(schedule, variance), t, x0)
    kl = gaussian_kl(mu_tilde, beta_tilde.clamp_min(1e-300), mu_theta, sigma2).flatten(1).sum(1)
    nll = gaussian_nll(x0, mu_theta, sigma2).flatten(1).sum(1)
    return torch.where(t == 0, nll, kl)
