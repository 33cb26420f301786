"""The exact denoiser of a finite training set: what the training loss is minimised by, and why that is not enough.

Training (Ho et al. 2020, eq. 14) minimises E || eps - eps_theta(x_t, t) ||^2 with x_0 drawn from the
training set {y_1, ..., y_N} (uniformly), eps ~ N(0, I) and x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
(eq. 4). For each t the minimiser over *all* functions is the conditional mean, and for a finite set it
has a closed form: the noised training set is a mixture of N Gaussians with zero covariance,

    p_t(x) = (1/N) sum_i N(x; sqrt(abar_t) y_i, (1 - abar_t) I),

so by Bayes' rule

    E[x_0 | x_t] = sum_i w_i(x_t) y_i,    w(x_t) = softmax_i( -|| x_t - sqrt(abar_t) y_i ||^2 / (2 (1 - abar_t)) ),
    eps*(x_t, t) = E[eps | x_t] = (x_t - sqrt(abar_t) E[x_0 | x_t]) / sqrt(1 - abar_t).

This is the "ideal denoiser" of Karras et al. 2022 (EDM, appendix B.3), written in DDPM's variance-
preserving parameterisation (EDM's sigma is sqrt((1 - abar) / abar)); it is also Tweedie's formula
(see :mod:`ddpm_lib.diffusion.toy`) for a mixture whose components are points. A network that reached this
optimum would only ever reproduce training images: run the reverse process with it and every sample
ends on one of the y_i. Networks generalise because they do *not* reach it (Kadkhodaie et al. 2024,
"Generalization in diffusion models arises from geometry-adaptive harmonic representations").

Everything is computed in float64: at small t, 1 - abar_t is ~1e-4 and the softmax logits are large
differences of large numbers.
"""

from __future__ import annotations

import torch
from torch import nn

from ddpm_lib.diffusion.schedules import NoiseSchedule


def _flat64(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}.")
    if x.ndim < 2 or x.shape[0] < 1:
        raise ValueError(f"{name} must be a batch (N, ...) with N >= 1, e.g. images (N, C, H, W); got shape {tuple(x.shape)}.")
    flat = x.detach().reshape(x.shape[0], -1).to(device="cpu", dtype=torch.float64)
    if not torch.isfinite(flat).all():
        raise ValueError(f"{name} holds NaN or inf values.")
    return flat


def nearest_neighbours(x: torch.Tensor, data: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """For each of the B samples ``x`` (B, ...), the Euclidean distance to its nearest neighbour among the
    N ``data`` items (N, ...) of the same per-item shape, and that neighbour's index: ((B,) float64, (B,) long)."""
    xf, df = _flat64(x, "x"), _flat64(data, "data")
    if xf.shape[1] != df.shape[1]:
        raise ValueError(f"x holds {xf.shape[1]} numbers per item but data holds {df.shape[1]}: give both the same shape.")
    sq = (xf * xf).sum(1, keepdim=True) - 2 * xf @ df.T + (df * df).sum(1)[None, :]  # (B, N) squared distances
    d2, idx = sq.min(dim=1)
    return d2.clamp_min(0).sqrt(), idx


class EmpiricalDenoiser(nn.Module):
    """The exact minimiser of the epsilon-prediction loss on the N training items ``data`` (N, ...):
    ``eps*(x_t, t)`` and ``E[x_0 | x_t]`` from the formulas in the module docstring.

    Called like the course's networks, ``denoiser(x_t, t, labels=None)`` (labels are ignored; t a
    LongTensor (B,), a 0-d tensor or an int of 0-based timesteps), it returns eps of x_t's shape, dtype
    and device, so every sampler and :func:`ddpm_lib.diffusion.losses.training_loss` run on it unchanged.
    Memory and time are O(B N D) per call: meant for a few thousand small images.
    """

    def __init__(self, data: torch.Tensor, schedule: NoiseSchedule):
        super().__init__()
        if not isinstance(schedule, NoiseSchedule):
            raise ValueError(f"schedule must be a NoiseSchedule, got {type(schedule).__name__}.")
        flat = _flat64(data, "data")
        self.item_shape = tuple(data.shape[1:])
        self.register_buffer("data", flat)  # (N, D) float64
        self.register_buffer("sq_norms", (flat * flat).sum(1))  # (N,)
        # the schedule's own sqrt(abar) and sqrt(1 - abar) (computed in float64, stored in float32), as in
        # add_noise: 1 - abar recomputed from a float32 abar would lose 3 of its ~7 digits at t = 0
        as64 = lambda v: v.detach().to(device="cpu", dtype=torch.float64).clone()  # noqa: E731
        self.register_buffer("sqrt_alpha_bars", as64(schedule.sqrt_alpha_bars))
        self.register_buffer("sqrt_one_minus_alpha_bars", as64(schedule.sqrt_one_minus_alpha_bars))

    @property
    def num_items(self) -> int:
        return self.data.shape[0]

    def _prep(self, x_t: torch.Tensor, t) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x_t, torch.Tensor) or x_t.ndim < 2:
            raise ValueError(f"x_t must be a batch (B, ...) tensor, got {getattr(x_t, 'shape', type(x_t).__name__)}.")
        B = x_t.shape[0]
        x = x_t.detach().reshape(B, -1).to(device="cpu", dtype=torch.float64)
        if x.shape[1] != self.data.shape[1]:
            raise ValueError(
                f"x_t holds {x.shape[1]} numbers per sample but the training items hold {self.data.shape[1]} "
                f"(shape {self.item_shape}): give x_t the shape (B, *{self.item_shape})."
            )
        t = torch.as_tensor(t, dtype=torch.long).cpu()
        t = t.expand(B) if t.ndim == 0 else t.reshape(-1)
        if t.shape[0] != B:
            raise ValueError(f"t must be an int or hold one timestep per sample ({B}), got {t.shape[0]}.")
        T = self.sqrt_alpha_bars.shape[0]
        if t.min() < 0 or t.max() >= T:
            raise ValueError(f"t must lie in 0..{T - 1} (0-based timesteps of this schedule), got {t.min()}..{t.max()}.")
        return x, (self.sqrt_alpha_bars[t][:, None], self.sqrt_one_minus_alpha_bars[t][:, None])  # (B, D), 2 x (B, 1)

    def _log_weights(self, x: torch.Tensor, coefs) -> torch.Tensor:
        # -||x - sqrt(ab) y_i||^2 / (2 (1 - ab)), dropping ||x||^2, which is the same for every i
        sa, s1a = coefs
        logits = (sa * (x @ self.data.T) - 0.5 * sa**2 * self.sq_norms[None, :]) / s1a**2
        return torch.log_softmax(logits, dim=1)

    def posterior_weights(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """w_i(x_t) = P(x_0 = y_i | x_t), float64 (B, N); each row sums to 1."""
        x, coefs = self._prep(x_t, t)
        return self._log_weights(x, coefs).exp()

    def x0_mean(self, x_t: torch.Tensor, t) -> torch.Tensor:
        """E[x_0 | x_t] = sum_i w_i(x_t) y_i, shaped, typed and placed like ``x_t``."""
        x, coefs = self._prep(x_t, t)
        mean = self._log_weights(x, coefs).exp() @ self.data
        return mean.to(device=x_t.device, dtype=x_t.dtype).reshape(x_t.shape)

    def forward(self, x_t: torch.Tensor, t, labels=None) -> torch.Tensor:
        x, (sa, s1a) = self._prep(x_t, t)
        mean = self._log_weights(x, (sa, s1a)).exp() @ self.data
        eps = (x - sa * mean) / s1a
        return eps.to(device=x_t.device, dtype=x_t.dtype).reshape(x_t.shape)


__all__ = ["EmpiricalDenoiser", "nearest_neighbours"]
