"""Flow matching / rectified flow: the straight-line interpolation, its velocity target, and the Euler sampler.

Lipman et al. 2023, "Flow matching for generative modeling" (arXiv:2210.02747), eq. 20-23 with sigma_min = 0,
and Liu et al. 2023, "Flow straight and fast: rectified flow" (arXiv:2209.03003), eq. 1: with x_0 from the
data and eps ~ N(0, I),

    x_t = (1 - t) x_0 + t eps,   t in [0, 1],        v = d x_t / d t = eps - x_0,

and a network v_theta(x_t, t) trained with E ||v_theta(x_t, t) - (eps - x_0)||^2 (t ~ U(0, 1)) learns
E[eps - x_0 | x_t], the velocity of an ODE that carries N(0, I) at t = 1 to the data at t = 0. Sampling
integrates it backwards, from x_1 = eps: Euler's step is x_{t'} = x_t + (t' - t) v_theta(x_t, t).

This is the convention of diffusers' ``FlowMatchEulerDiscreteScheduler`` (t is its sigma, the network sees
``t * time_scale`` with ``time_scale = 1000`` = its num_train_timesteps, and it predicts noise - sample), so the
course's UNet, whose timestep embedding expects numbers of the order of 0..T-1, is used unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ddpm_lib.progress import progress_bar

TIME_SCALE = 1000.0  # the network sees t * TIME_SCALE (diffusers' num_train_timesteps)


def interpolate(x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """x_t = (1 - t) x_0 + t eps, with ``t`` a float tensor (B,) in [0, 1] broadcast over the other dims."""
    if noise.shape != x0.shape:
        raise ValueError(f"noise must have the shape of x0: {tuple(noise.shape)} vs {tuple(x0.shape)}.")
    t = torch.as_tensor(t, dtype=x0.dtype, device=x0.device).reshape(-1, *([1] * (x0.ndim - 1)))
    return (1.0 - t) * x0 + t * noise


def velocity_target(x0: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """v = d x_t / d t = eps - x_0, the regression target (the same for every t)."""
    return noise - x0


def flow_matching_loss(model, x0: torch.Tensor, labels: torch.Tensor | None = None, generator: torch.Generator | None = None,
                       t: torch.Tensor | None = None, noise: torch.Tensor | None = None,
                       time_scale: float = TIME_SCALE) -> torch.Tensor:
    """The conditional flow-matching loss mean ||v_theta(x_t, t) - (eps - x_0)||^2 on a batch of data ``x0``.

    ``model(x_t, t * time_scale)`` (or with ``labels``) predicts the velocity; t ~ U(0, 1) and eps ~ N(0, I) are
    drawn from ``generator`` unless given. Computed in float32 (the model may run under autocast)."""
    if x0.ndim < 2:
        raise ValueError(f"x0 must be a batch (B, ...), got shape {tuple(x0.shape)}.")
    B, device = x0.shape[0], x0.device
    gen_device = generator.device if generator is not None else device
    with torch.autocast(device_type=device.type, enabled=False):
        x0 = x0.float()
        if t is None:
            t = torch.rand(B, generator=generator, device=gen_device)
        t = torch.as_tensor(t, dtype=torch.float32).to(device).expand(B)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=gen_device)
        noise = noise.to(device=device, dtype=torch.float32)
        x_t = interpolate(x0, noise, t)
        target = velocity_target(x0, noise)
    t_in = t * time_scale
    out = model(x_t, t_in, labels) if labels is not None else model(x_t, t_in)
    if out.shape != x0.shape:
        raise ValueError(f"the model's output has shape {tuple(out.shape)}, expected x_t's shape {tuple(x0.shape)}.")
    return ((out.float() - target) ** 2).reshape(B, -1).mean(1).mean()


class FlowMatchEulerSampler:
    """Euler's method on dx/dt = v_theta(x, t) from t = 1 (noise) to t = 0 (data), ``num_steps`` network calls.

    ``sigmas``: the times visited, 1 = t_0 > t_1 > ... > t_N = 0, evenly spaced unless given (descending, in
    (0, 1], the final 0 appended); ``timesteps``: what the network sees, ``t_i * time_scale`` (float32), one per
    call. ``step(model_output, t, x_t) -> x at the next time``, the shape of the course's other samplers.
    """

    def __init__(self, num_steps: int = 50, time_scale: float = TIME_SCALE, sigmas: Sequence[float] | None = None):
        if sigmas is None:
            if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
                raise ValueError(f"num_steps must be an integer >= 1, got {num_steps!r}.")
            levels = np.linspace(1.0, 0.0, int(num_steps) + 1)[:-1]
        else:
            levels = np.asarray(sigmas, dtype=np.float64).reshape(-1)
            if levels.size < 1 or not np.all((levels > 0) & (levels <= 1)) or not np.all(np.diff(levels) < 0):
                raise ValueError("sigmas must be a non-empty, strictly decreasing sequence in (0, 1].")
        self.sigmas = np.append(levels, 0.0)
        self.time_scale = float(time_scale)
        self.timesteps = torch.tensor(levels * self.time_scale, dtype=torch.float32)
        self._index = {float(t): i for i, t in enumerate(self.timesteps.tolist())}

    def __len__(self) -> int:
        return len(self.timesteps)

    def __repr__(self) -> str:
        return f"FlowMatchEulerSampler(num_steps={len(self)})"

    def reset(self) -> None:
        """Stateless; here for the shared sampler API."""

    def step(self, model_output: torch.Tensor, t, x_t: torch.Tensor, generator=None) -> torch.Tensor:
        if isinstance(t, torch.Tensor):
            t = t.reshape(-1)[0].item()
        i = self._index.get(float(np.float32(t)))
        if i is None:
            raise ValueError(f"timestep {t} is not in this sampler's sequence ({self.timesteps[:4].tolist()}...).")
        if model_output.shape != x_t.shape:
            raise ValueError(f"model_output has shape {tuple(model_output.shape)} but x_t has {tuple(x_t.shape)}.")
        return x_t + float(self.sigmas[i + 1] - self.sigmas[i]) * model_output


def sample_flow(model, shape: Sequence[int], num_steps: int = 50, generator: torch.Generator | None = None,
                labels=None, device=None, x_1: torch.Tensor | None = None, progress: bool = False,
                time_scale: float = TIME_SCALE) -> torch.Tensor:
    """Samples of a velocity model: x_1 ~ N(0, I) (drawn from ``generator`` on its device, or ``x_1``), then
    ``num_steps`` Euler steps of :class:`FlowMatchEulerSampler` (``num_steps`` network calls) to t = 0."""
    shape = tuple(shape)
    samp = FlowMatchEulerSampler(num_steps, time_scale)
    if device is None:
        p = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        device = p.device if p is not None else torch.device("cpu")
    gen_device = generator.device if generator is not None else torch.device("cpu")
    x = torch.randn(shape, generator=generator, device=gen_device).to(device) if x_1 is None else x_1.to(device).float()
    was_training = getattr(model, "training", None)
    if hasattr(model, "eval"):
        model.eval()
    try:
        with torch.no_grad():
            for t in progress_bar(samp.timesteps.tolist(), desc="sampling (flow matching)", disable=not progress, leave=False):
                t_batch = torch.full((shape[0],), t, dtype=torch.float32, device=device)
                v = model(x, t_batch, labels) if labels is not None else model(x, t_batch)
                x = samp.step(v, t, x)
    finally:
        if was_training is not None and hasattr(model, "train"):
            model.train(was_training)
    return x
