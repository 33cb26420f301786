"""Reverse-process samplers: DDPM (ancestral), DDIM, DPM-Solver++(2M), EDM's Heun sampler, and the full
sampling loop.

Timesteps are 0-based indices into the schedule (``t`` in ``0..T-1``; index 0 is Ho et al.'s step 1);
EDM's are fractional (the timesteps of its sigma levels: :mod:`ddpm_lib.diffusion.edm`).
Every sampler has

- ``.timesteps``: the descending LongTensor of timesteps it visits (for ``"leading"`` and
  ``"trailing"`` spacing, the same sequence as diffusers' schedulers at the same settings);
- ``.step(model_output, t, x_t, generator=None, prediction_type="epsilon") -> x_prev``: one update
  from ``x_t`` to the sample at the *next timestep of the sequence* (its "previous" timestep in
  the reverse-time sense), or to ``x_0`` after the last one.

"Previous timestep" always means the next entry of the actual sequence, with ``alpha_bar = 1``
after the last entry (diffusers' ``set_alpha_to_one=True``: the last step lands on clean data).
All noise is drawn with ``torch.randn(..., generator=generator)`` on the generator's device (the CPU
for a default ``torch.Generator()``) and then moved to ``x_t``'s device, so a seeded CPU generator gives
the same noise whether the model runs on the CPU or a GPU.

References: Ho et al. 2020 (arXiv:2006.11239) eq. 6-7, 11-15 and algorithm 2; Song et al. 2021, DDIM
(arXiv:2010.02502) eq. 12 and 16; Lu et al. 2022, DPM-Solver++ (arXiv:2211.01095) algorithm 2;
Karras et al. 2022, EDM (arXiv:2206.00364) eq. 5 and algorithm 1;
Ho & Salimans 2022, classifier-free guidance (arXiv:2207.12598) eq. 6.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from ddpm_lib.diffusion import edm as E
from ddpm_lib.diffusion import forward as F
from ddpm_lib.diffusion.forward import check_prediction_type
from ddpm_lib.diffusion.schedules import NoiseSchedule
from ddpm_lib.progress import progress_bar

SPACINGS = ("leading", "trailing", "linspace")
VARIANCES = ("fixed_small", "fixed_large")
SAMPLER_NAMES = ("ddpm", "ddim", "dpm++", "heun")


# ---------------------------------------------------------------------------------------------
# helpers


def make_timesteps(num_train_timesteps: int, num_steps: int, spacing: str = "leading") -> torch.Tensor:
    """The descending timesteps a sampler with ``num_steps`` steps visits out of ``0..T-1``.

    - ``"leading"``: ``k * (T // n)`` for ``k = n-1 .. 0`` (DDIM paper and diffusers' default); ends at 0
      but never reaches the top (e.g. 900 for T=1000, n=10).
    - ``"trailing"``: ``round(T - k T / n) - 1`` for ``k = 0 .. n-1``; starts at T-1 (the pure-noise end,
      Lin et al. 2024, "Common diffusion noise schedules and sample steps are flawed", table 2).
    - ``"linspace"``: ``round(linspace(0, T-1, n))`` reversed; both ends.
    """
    T = _check_int("num_train_timesteps", num_train_timesteps, 1)
    n = _check_int("num_steps", num_steps, 1)
    if n > T:
        raise ValueError(
            f"num_steps={n} is larger than the schedule's num_timesteps={T}: a sampler cannot visit more "
            f"timesteps than the model was trained on. Use num_steps between 1 and {T}."
        )
    if spacing == "leading":
        ts = np.arange(n, dtype=np.int64)[::-1] * (T // n)
    elif spacing == "trailing":
        ts = np.round(T - np.arange(n) * (T / n)).astype(np.int64) - 1
    elif spacing == "linspace":
        ts = np.linspace(0, T - 1, n).round()[::-1].astype(np.int64)
    else:
        raise ValueError(f"spacing must be one of {SPACINGS}, got {spacing!r}.")
    if n > 1 and not np.all(np.diff(ts) < 0):  # cannot happen for 1 <= n <= T; kept as a guard
        raise ValueError(f"spacing {spacing!r} with num_steps={n}, T={T} gives repeated timesteps {ts.tolist()}.")
    return torch.from_numpy(np.ascontiguousarray(ts))


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}.")
    return int(value)


def _check_schedule(schedule) -> NoiseSchedule:
    if not isinstance(schedule, NoiseSchedule):
        raise ValueError(
            f"schedule must be a ddpm_lib NoiseSchedule (from ddpm_lib.diffusion.schedules.make_schedule), got {type(schedule).__name__}."
        )
    return schedule


def _draw_noise(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Standard normal noise of ``like``'s shape and dtype, drawn on the generator's device then moved."""
    device = generator.device if generator is not None else torch.device("cpu")
    return torch.randn(like.shape, generator=generator, device=device, dtype=like.dtype).to(like.device)


def predict_eps_x0(
    model_output: torch.Tensor, x_t: torch.Tensor, alpha_bar: float, prediction_type: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """(eps-hat, x0-hat) from a network output of any parameterisation, at one scalar ``alpha_bar``
    (:func:`ddpm_lib.diffusion.forward.eps_x0_from_output`, after checking the shapes)."""
    if model_output.shape != x_t.shape:
        raise ValueError(
            f"model_output has shape {tuple(model_output.shape)} but x_t has shape {tuple(x_t.shape)}: the model "
            "must return a tensor shaped like its input."
        )
    return F.eps_x0_from_output(model_output, x_t, math.sqrt(alpha_bar), math.sqrt(1.0 - alpha_bar), prediction_type)


class _Sampler:
    """Shared bookkeeping: the timestep sequence and the 'previous timestep' of each entry."""

    timesteps: torch.Tensor

    def __init__(self, schedule: NoiseSchedule, timesteps: torch.Tensor):
        self.schedule = _check_schedule(schedule)
        self.timesteps = timesteps
        seq = timesteps.tolist()
        self._prev = {t: (seq[i + 1] if i + 1 < len(seq) else -1) for i, t in enumerate(seq)}
        # log alpha_bar in float64, re-accumulated from the betas: 1 - abar_t / abar_prev between close
        # timesteps then has no cancellation error (diffusers computes it in float32: ~1e-3 relative
        # error at t = 1 for the linear schedule).
        betas = schedule.betas.detach().cpu().double().numpy()
        self._log_ab = np.cumsum(np.log1p(-betas))
        self._ab = np.exp(self._log_ab)

    def __len__(self) -> int:
        return len(self.timesteps)

    @property
    def num_steps(self) -> int:
        return len(self.timesteps)

    def _t_int(self, t) -> int:
        if isinstance(t, torch.Tensor):
            if t.numel() != 1:
                if t.ndim == 1 and bool((t == t[0]).all()):
                    t = t[0]
                else:
                    raise ValueError("step() takes one timestep for the whole batch (an int or a 0-d tensor).")
            t = t.item()
        t = int(t)
        if t not in self._prev:
            raise ValueError(
                f"timestep {t} is not in this sampler's sequence ({self.timesteps[:4].tolist()}...): "
                "step through sampler.timesteps in order."
            )
        return t

    def previous_timestep(self, t) -> int:
        """The next timestep of the sequence after ``t`` (-1 after the last one)."""
        return self._prev[self._t_int(t)]

    def alpha_bar_prev(self, t) -> float:
        """alpha_bar at the previous timestep, 1.0 after the last step (clean data)."""
        prev = self.previous_timestep(t)
        return float(self._ab[prev]) if prev >= 0 else 1.0

    def reset(self) -> None:
        """Forget any state kept between steps (only multistep solvers keep some)."""

    def _beta_between(self, t: int) -> float:
        """1 - abar_t / abar_prev (beta_t itself when the previous timestep is t - 1), without cancellation."""
        prev = self._prev[t]
        return float(-np.expm1(self._log_ab[t] - (self._log_ab[prev] if prev >= 0 else 0.0)))

    def _one_minus_ab(self, t: int) -> float:
        return float(-np.expm1(self._log_ab[t])) if t >= 0 else 0.0


# ---------------------------------------------------------------------------------------------
# DDPM


class DDPMSampler(_Sampler):
    """Ancestral sampling of Ho et al. 2020 (algorithm 2), written with the posterior of eq. 7.

    Each step predicts x0-hat from the network output, optionally clips it to [-1, 1], and samples

        x_{t-1} ~ N( mu-tilde_t(x_t, x0-hat), sigma_t^2 I ),
        mu-tilde_t = sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0-hat + sqrt(alpha_t) (1 - abar_{t-1}) / (1 - abar_t) x_t,

    which for an epsilon model without clipping equals eq. 11,
    ``(x_t - beta_t / sqrt(1 - abar_t) eps) / sqrt(alpha_t)``. The variance is

    - ``"fixed_small"``: sigma_t^2 = beta-tilde_t = (1 - abar_{t-1}) / (1 - abar_t) beta_t (the posterior's);
    - ``"fixed_large"``: sigma_t^2 = beta_t.

    No noise is added on the last step (to x_0), whichever the variance: like Ho et al.'s code and
    diffusers' ``DDPMScheduler`` (which adds noise only for t > 0; with the default full sequence
    the last step is t = 0, so both agree. With ``spacing="trailing"`` and a strided sequence diffusers
    still adds noise at its last step, t > 0; we do not).

    ``num_steps`` (default: all T) gives the strided DDPM that diffusers' ``DDPMScheduler.set_timesteps``
    gives: the same formulas with beta_t replaced by ``1 - abar_t / abar_prev`` between visited timesteps.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        variance: str = "fixed_small",
        clip_x0: bool = True,
        num_steps: int | None = None,
        spacing: str = "leading",
    ):
        schedule = _check_schedule(schedule)
        if variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {variance!r}.")
        T = schedule.num_timesteps
        timesteps = make_timesteps(T, T if num_steps is None else num_steps, spacing)
        super().__init__(schedule, timesteps)
        self.variance = variance
        self.clip_x0 = bool(clip_x0)
        self.spacing = spacing

    def __repr__(self) -> str:
        return f"DDPMSampler(variance={self.variance!r}, clip_x0={self.clip_x0}, num_steps={self.num_steps})"

    def coefficients(self, t) -> dict[str, float]:
        """The step's scalars (float64): x0 and x_t weights of the posterior mean, and the variance."""
        t = self._t_int(t)
        prev = self._prev[t]
        ab_t, ab_prev = float(self._ab[t]), self.alpha_bar_prev(t)
        beta = self._beta_between(t)  # 1 - abar_t / abar_prev; = beta_t when consecutive timesteps are visited
        coef_x0, coef_xt, beta_tilde = F.posterior_coefficients(beta, ab_prev, self._one_minus_ab(t), self._one_minus_ab(prev))
        if prev < 0:
            var = 0.0
        elif self.variance == "fixed_small":
            var = max(beta_tilde, 1e-20)
        else:
            var = beta
        return {"alpha_bar": ab_t, "alpha_bar_prev": ab_prev, "coef_x0": float(coef_x0), "coef_xt": float(coef_xt),
                "variance": float(var)}

    def step(self, model_output, t, x_t, generator=None, prediction_type="epsilon") -> torch.Tensor:
        c = self.coefficients(t)
        _, x0 = predict_eps_x0(model_output, x_t, c["alpha_bar"], prediction_type)
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        mean = c["coef_x0"] * x0 + c["coef_xt"] * x_t
        if c["variance"] == 0.0:
            return mean
        return mean + math.sqrt(c["variance"]) * _draw_noise(x_t, generator)


# ---------------------------------------------------------------------------------------------
# DDIM


class DDIMSampler(_Sampler):
    """DDIM (Song et al. 2021), eq. 12 with the noise level of eq. 16.

        x_prev = sqrt(abar_prev) x0-hat + sqrt(1 - abar_prev - sigma^2) eps-hat + sigma z,
        sigma = eta sqrt((1 - abar_prev) / (1 - abar_t)) sqrt(1 - abar_t / abar_prev).

    ``eta=0`` is deterministic (the probability-flow-like DDIM); ``eta=1`` with every timestep is DDPM
    with the fixed_small variance. ``abar_prev`` belongs to the true next timestep of the sequence
    (diffusers' ``DDIMScheduler`` uses ``t - T // n`` instead, which is the same thing for
    "leading" and for "trailing" when n divides T, but not for "linspace": diffusers issue #12633),
    and is 1 after the last step (diffusers' default ``set_alpha_to_one=True``).

    With ``clip_x0=True`` (the default, as in diffusers: images live in [-1, 1], and clipping keeps an
    imperfect model's x0-hat there; turn it off for data outside [-1, 1]) the clipped x0-hat is used in the first term while eps-hat stays the model's
    (diffusers' default ``use_clipped_model_output=False``). Noise is drawn on every step when eta > 0
    (also on the last one, where sigma = 0), as diffusers does, so seeded runs match draw for draw.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_steps: int = 50,
        eta: float = 0.0,
        spacing: str = "leading",
        clip_x0: bool = True,
    ):
        schedule = _check_schedule(schedule)
        if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not (0.0 <= float(eta) <= 1.0):
            raise ValueError(f"eta must be a number between 0 (deterministic DDIM) and 1 (DDPM-like), got {eta!r}.")
        super().__init__(schedule, make_timesteps(schedule.num_timesteps, num_steps, spacing))
        self.eta = float(eta)
        self.spacing = spacing
        self.clip_x0 = bool(clip_x0)

    def __repr__(self) -> str:
        return f"DDIMSampler(num_steps={self.num_steps}, eta={self.eta}, spacing={self.spacing!r}, clip_x0={self.clip_x0})"

    def sigma(self, t) -> float:
        """The step's noise standard deviation (eq. 16)."""
        t = self._t_int(t)
        ratio = self._one_minus_ab(self._prev[t]) / self._one_minus_ab(t)
        return self.eta * math.sqrt(max(ratio * self._beta_between(t), 0.0))

    def step(self, model_output, t, x_t, generator=None, prediction_type="epsilon") -> torch.Tensor:
        t = self._t_int(t)
        ab_t, ab_prev = float(self._ab[t]), self.alpha_bar_prev(t)
        eps, x0 = predict_eps_x0(model_output, x_t, ab_t, prediction_type)
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        sigma = self.sigma(t)
        one_m_ab_prev = self._one_minus_ab(self._prev[t])
        x_prev = math.sqrt(ab_prev) * x0 + math.sqrt(max(one_m_ab_prev - sigma**2, 0.0)) * eps
        if self.eta > 0:
            x_prev = x_prev + sigma * _draw_noise(x_t, generator)
        return x_prev


# ---------------------------------------------------------------------------------------------
# DPM-Solver++(2M)


class DPMSolverSampler(_Sampler):
    """DPM-Solver++(2M) (Lu et al. 2022, algorithm 2): a second-order multistep solver of the
    probability-flow ODE written for the data prediction x0-hat, in log-SNR time lambda = log(alpha/sigma)
    with alpha = sqrt(abar), sigma = sqrt(1 - abar).

    From s to t (h = lambda_t - lambda_s), with the previous step's h_prev and r = h_prev / h:

        D = (1 + 1/(2r)) x0-hat_s - 1/(2r) x0-hat_prev                     (first step: D = x0-hat_s)
        x_t = (sigma_t / sigma_s) x_s - alpha_t (exp(-h) - 1) D

    The last step lands on sigma = 0 (abar = 1) and is first order, so it returns x0-hat (diffusers'
    ``final_sigmas_type="zero"``). Stateful: the previous x0-hat is kept between calls; ``sample``
    calls :meth:`reset` before a run, and stepping from ``timesteps[0]`` resets it too.
    """

    def __init__(self, schedule: NoiseSchedule, num_steps: int = 20, spacing: str = "trailing", clip_x0: bool = True):
        schedule = _check_schedule(schedule)
        super().__init__(schedule, make_timesteps(schedule.num_timesteps, num_steps, spacing))
        self.spacing = spacing
        self.clip_x0 = bool(clip_x0)
        self._history: tuple[int, float, torch.Tensor] | None = None  # (t, lambda_t, x0-hat at t)

    def __repr__(self) -> str:
        return f"DPMSolverSampler(num_steps={self.num_steps}, spacing={self.spacing!r}, clip_x0={self.clip_x0})"

    def reset(self) -> None:
        self._history = None

    @staticmethod
    def _alpha_sigma_lambda(ab: float) -> tuple[float, float, float]:
        a, s = math.sqrt(ab), math.sqrt(1.0 - ab)
        return a, s, (math.log(a) - math.log(s)) if s > 0 else math.inf

    def step(self, model_output, t, x_t, generator=None, prediction_type="epsilon") -> torch.Tensor:
        t = self._t_int(t)
        if t == int(self.timesteps[0]):
            self.reset()
        ab_s, ab_t = float(self._ab[t]), self.alpha_bar_prev(t)
        _, x0 = predict_eps_x0(model_output, x_t, ab_s, prediction_type)
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        _, sigma_s, lam_s = self._alpha_sigma_lambda(ab_s)
        alpha_t, sigma_t, lam_t = self._alpha_sigma_lambda(ab_t)
        history, self._history = self._history, (t, lam_s, x0)
        if math.isinf(lam_t):  # last step: to clean data, first order
            return x0
        h = lam_t - lam_s
        D = x0
        seq = self.timesteps.tolist()
        idx = seq.index(t)
        if history is not None and idx > 0 and history[0] == seq[idx - 1]:
            r = (lam_s - history[1]) / h
            D = (1.0 + 0.5 / r) * x0 - (0.5 / r) * history[2]
        return (sigma_t / sigma_s) * x_t - alpha_t * math.expm1(-h) * D


# ---------------------------------------------------------------------------------------------
# EDM (Heun / Euler on the probability-flow ODE in sigma)


class EDMSampler(_Sampler):
    """Karras et al. 2022, Algorithm 1 (deterministic): Heun's method (``order=2``) or Euler's (``order=1``)
    on the probability-flow ODE d x_sigma / d sigma = (x_sigma - D) / sigma, over the sigma levels of eq. 5
    (default: from the schedule's largest sigma, at timestep T-1, to its smallest, at 0) and then to 0.

    One step from sigma_i to sigma_{i+1} (D = x0-hat from the model, clipped to [-1, 1] with ``clip_x0``):

        d_i = (x_i - D(x_i; sigma_i)) / sigma_i,               x' = x_i + (sigma_{i+1} - sigma_i) d_i   (Euler)
        d'  = (x' - D(x'; sigma_{i+1})) / sigma_{i+1},         x_{i+1} = x_i + (sigma_{i+1} - sigma_i) (d_i + d') / 2

    and the last step, to sigma = 0, is Euler's (the correction would divide by 0). So Heun with N levels
    costs 2N - 1 network calls: ``timesteps`` lists one entry per call (the interior ones twice, as
    diffusers' ``HeunDiscreteScheduler``), and ``len(sampler)`` is the number of calls, like every sampler's.

    The API is the other samplers': ``step(model_output, t, x_t)`` takes and returns the course's x_t
    (x_sigma / sqrt(1 + sigma^2)), so :func:`ddpm_lib.diffusion.samplers.sample` runs it from x_T ~ N(0, I) unchanged;
    the timesteps are fractional (float32) and the model receives them as floats. Stateful between the two
    calls of a Heun step: ``sample`` calls :meth:`reset`, and stepping from ``timesteps[0]`` resets too.

    ``sigmas`` (descending, positive) replaces the eq. 5 levels, e.g. to integrate on DDIM's timesteps.
    With ``order=1`` and ``clip_x0=False``, on the sigmas of DDIM's timesteps, it is DDIM with eta = 0.
    """

    def __init__(
        self,
        schedule: NoiseSchedule,
        num_steps: int = 18,
        order: int = 2,
        rho: float = 7.0,
        sigma_min: float | None = None,
        sigma_max: float | None = None,
        clip_x0: bool = True,
        sigmas=None,
    ):
        schedule = _check_schedule(schedule)
        if order not in (1, 2):
            raise ValueError(f"order must be 1 (Euler) or 2 (Heun), got {order!r}.")
        all_sigmas = E.schedule_sigmas(schedule)
        if sigmas is None:
            lo = float(all_sigmas[0]) if sigma_min is None else float(sigma_min)
            hi = float(all_sigmas[-1]) if sigma_max is None else float(sigma_max)
            levels = E.karras_sigmas(num_steps, lo, hi, rho)
        else:
            levels = np.asarray(sigmas, dtype=np.float64).reshape(-1)
            if levels.size < 1 or not np.all(levels > 0) or not np.all(np.diff(levels) < 0):
                raise ValueError("sigmas must be a non-empty, strictly decreasing sequence of positive noise levels.")
        self.order = int(order)
        self.rho = float(rho)
        self.clip_x0 = bool(clip_x0)
        self.sigmas = np.append(levels, 0.0)  # N levels, then 0 (clean data)
        n = levels.size
        # the calls: (index i of the step, 1 = its Euler stage / 2 = its correction), evaluated at sigma_i / sigma_{i+1}
        plan = [(0, 1)]
        for i in range(1, n):
            if self.order == 2:
                plan.append((i - 1, 2))
            plan.append((i, 1))
        self._plan = plan
        eval_sigmas = np.array([levels[i] if stage == 1 else levels[i + 1] for i, stage in plan])
        super().__init__(schedule, torch.tensor(E.sigma_to_timestep(eval_sigmas, schedule), dtype=torch.float32))
        self._eval_sigmas = eval_sigmas
        self.reset()

    def __repr__(self) -> str:
        return (f"EDMSampler(levels={len(self.sigmas) - 1}, order={self.order}, network_calls={len(self)}, "
                f"clip_x0={self.clip_x0})")

    def reset(self) -> None:
        self._call = 0
        self._saved: tuple[torch.Tensor, torch.Tensor, float] | None = None  # (x_sigma_i, d_i, sigma_{i+1} - sigma_i)

    def _t_int(self, t):  # the sequence has repeated, fractional entries: follow it by position
        if isinstance(t, torch.Tensor):
            t = t.reshape(-1)[0].item()
        t = float(t)
        if abs(t - float(self.timesteps[0])) < 1e-4:
            self.reset()
        if self._call >= len(self._plan):
            raise ValueError(f"this sampler's {len(self._plan)} calls are done: call reset() to start a new run.")
        expected = float(self.timesteps[self._call])
        if abs(t - expected) > 1e-3 * max(1.0, abs(expected)):
            raise ValueError(f"timestep {t} is not the next one of this sampler's sequence ({expected}): step through "
                             "sampler.timesteps in order.")
        return self._call

    def previous_timestep(self, t):
        raise NotImplementedError("EDMSampler follows its sequence by position; use sampler.timesteps and sampler.sigmas.")

    alpha_bar_prev = previous_timestep

    def step(self, model_output, t, x_t, generator=None, prediction_type="epsilon") -> torch.Tensor:
        k = self._t_int(t)
        i, stage = self._plan[k]
        sigma = float(self._eval_sigmas[k])
        _, x0 = predict_eps_x0(model_output, x_t, float(E.alpha_bar_from_sigma(sigma)), prediction_type)
        if self.clip_x0:
            x0 = x0.clamp(-1.0, 1.0)
        x_sigma = x_t * math.sqrt(1.0 + sigma**2)  # x_t / sqrt(abar)
        d = (x_sigma - x0) / sigma
        sigma_next = float(self.sigmas[i + 1])
        if stage == 1:
            dt = sigma_next - sigma
            out = x_sigma + dt * d
            if self.order == 2 and sigma_next > 0:
                self._saved = (x_sigma, d, dt)
        else:
            x_start, d_start, dt = self._saved
            out = x_start + dt * 0.5 * (d_start + d)
            self._saved = None
        self._call += 1
        return out / math.sqrt(1.0 + sigma_next**2)


# ---------------------------------------------------------------------------------------------
# the full loop


def _model_device(model) -> torch.device | None:
    for it in (getattr(model, "parameters", None), getattr(model, "buffers", None)):
        if it is not None:
            for p in it():
                return p.device
    return None


def build_sampler(
    schedule: NoiseSchedule,
    sampler: str = "ddpm",
    num_steps: int | None = None,
    eta: float = 0.0,
    clip_x0: bool | None = None,
):
    """A sampler from its name: ``"ddpm"``, ``"ddim"``, ``"dpm++"`` or ``"heun"`` (EDM, :class:`EDMSampler`)
    (defaults: all T, 50, 20, 18 steps; Heun's N steps cost 2N - 1 network calls)."""
    T = schedule.num_timesteps
    clip = True if clip_x0 is None else bool(clip_x0)
    if sampler == "ddpm":
        if eta != 0.0:
            raise ValueError("eta is a DDIM setting: use sampler='ddim' (eta=1 is DDPM-like) or leave eta=0.")
        return DDPMSampler(schedule, clip_x0=clip, num_steps=num_steps)
    if sampler == "ddim":
        return DDIMSampler(
            schedule, num_steps=min(50, T) if num_steps is None else num_steps, eta=eta, clip_x0=clip
        )
    if sampler in ("dpm++", "dpmsolver++"):
        if eta != 0.0:
            raise ValueError("eta is a DDIM setting; DPM-Solver++(2M) is deterministic: leave eta=0.")
        return DPMSolverSampler(schedule, num_steps=min(20, T) if num_steps is None else num_steps, clip_x0=clip)
    if sampler == "heun":
        if eta != 0.0:
            raise ValueError("eta is a DDIM setting; EDM's Heun sampler is deterministic here: leave eta=0.")
        return EDMSampler(schedule, num_steps=18 if num_steps is None else num_steps, clip_x0=clip)
    raise ValueError(f"Unknown sampler {sampler!r}: use one of {SAMPLER_NAMES} or a sampler instance.")


def guided_output(model, x, t, labels=None, guidance_scale: float = 1.0, null_label=None) -> torch.Tensor:
    """The model output with classifier-free guidance (Ho & Salimans 2022, eq. 6):

        out = out(x, null) + w (out(x, labels) - out(x, null)),

    w = 0: unconditional, w = 1: conditional (one forward pass each), w > 1: guided; the conditional and
    unconditional passes then run as one batch of 2B. ``t`` is a LongTensor (B,).
    """
    w = float(guidance_scale)
    if w == 1.0:
        return model(x, t, labels=labels) if labels is not None else model(x, t)
    null = null_label if null_label is not None else getattr(model, "null_class", None)
    if null is None:
        raise ValueError(
            f"guidance_scale={w} needs an unconditional pass, but the model has no null_class and no null_label "
            "was given: pass null_label=..., or use guidance_scale=1.0."
        )
    null_labels = torch.full((x.shape[0],), int(null), dtype=torch.long, device=x.device)
    if w == 0.0:
        return model(x, t, labels=null_labels)
    if labels is None:
        raise ValueError(f"guidance_scale={w} needs class labels: pass labels=... (a LongTensor of shape (B,)).")
    out = model(torch.cat([x, x]), torch.cat([t, t]), labels=torch.cat([labels, null_labels]))
    out_cond, out_uncond = out.chunk(2)
    return out_uncond + w * (out_cond - out_uncond)


def _checked_shape(shape) -> tuple[int, ...]:
    """``shape`` as a tuple of positive ints (batch, ...), or a ValueError saying what a shape looks like."""
    shape = tuple(shape)
    if len(shape) < 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s > 0 for s in shape):
        raise ValueError(
            f"shape must be a tuple of positive ints (batch, ...) with at least 2 entries, e.g. (16, 1, 32, 32) "
            f"or (1000, 2); got {shape!r}."
        )
    return shape


def _resolve_sampler(schedule: NoiseSchedule, sampler, num_steps, eta, clip_x0) -> _Sampler:
    """A sampler built from its name (with these settings), or the instance given (whose settings are its own)."""
    if isinstance(sampler, str):
        return build_sampler(schedule, sampler, num_steps=num_steps, eta=eta, clip_x0=clip_x0)
    if not isinstance(sampler, _Sampler):
        raise ValueError(f"Unknown sampler {sampler!r}: use one of {SAMPLER_NAMES} or a sampler instance.")
    if num_steps is not None or eta != 0.0 or clip_x0 is not None:
        raise ValueError("num_steps, eta and clip_x0 are set on a sampler instance itself, not in sample(...).")
    if sampler.schedule.num_timesteps != schedule.num_timesteps:
        raise ValueError(
            f"the sampler was built for T={sampler.schedule.num_timesteps} but schedule has T={schedule.num_timesteps}."
        )
    return sampler


def _labels_for(labels, batch: int, device) -> torch.Tensor | None:
    """Class labels as a LongTensor (batch,) on ``device``: an int is repeated; None stays None."""
    if labels is None:
        return None
    if isinstance(labels, (int, np.integer)) and not isinstance(labels, bool):
        labels = torch.full((batch,), int(labels), dtype=torch.long)
    labels = torch.as_tensor(labels, dtype=torch.long).to(device)
    if labels.shape != (batch,):
        raise ValueError(f"labels must be an int or have shape ({batch},) (one per sample), got {tuple(labels.shape)}.")
    return labels


def _initial_noise(shape: tuple[int, ...], generator, x_T, device) -> torch.Tensor:
    """x_T: drawn from ``generator`` on its own device (so the result does not depend on ``device``), or the given one."""
    if x_T is None:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        return torch.randn(shape, generator=generator, device=gen_device).to(device)
    if tuple(x_T.shape) != shape:
        raise ValueError(f"x_T has shape {tuple(x_T.shape)} but shape is {shape}.")
    return x_T.to(device=device, dtype=torch.float32)


def sample(
    model,
    schedule: NoiseSchedule,
    shape: Sequence[int],
    sampler="ddpm",
    num_steps: int | None = None,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    labels=None,
    guidance_scale: float = 1.0,
    null_label: int | None = None,
    prediction_type: str = "epsilon",
    clip_x0: bool | None = None,
    return_trajectory: bool = False,
    progress: bool = True,
    device=None,
    x_T: torch.Tensor | None = None,
):
    """Draw samples by running the reverse process from pure noise x_T ~ N(0, I).

    Args:
        model: callable ``model(x_t, t, labels=None)`` (t a LongTensor (B,)) returning a tensor of x_t's shape.
            nn.Modules are put in eval mode for the run (and restored after), under ``torch.no_grad``.
        schedule: the NoiseSchedule the model was trained with.
        shape: (B, ...) of the samples, e.g. (16, 1, 32, 32) or (4000, 2).
        sampler: "ddpm" (default: all T steps), "ddim" (default 50 steps), "dpm++" (default 20 steps),
            "heun" (EDM, default 18 steps = 35 network calls),
            or a sampler instance (then configure num_steps/eta/clip_x0 on the instance).
        num_steps, eta, clip_x0: settings for a sampler given by name (clip_x0 None: clip, as every sampler does by default; pass False for data outside [-1, 1]).
        generator: a torch.Generator; x_T and every step's noise are drawn from it (on its device, the CPU
            for ``torch.Generator()``), so the result does not depend on the device or on earlier cells.
        labels: class labels, an int or a LongTensor (B,); guidance_scale, null_label: classifier-free
            guidance (see :func:`guided_output`); the null label defaults to ``model.null_class``.
        prediction_type: what the model predicts: "epsilon", "x0" or "v".
        return_trajectory: also return the list [x_T, ..., x_0] (CPU tensors, len(timesteps) + 1 of them).
        progress: show a progress bar (tqdm; in a log, a line every 30 s: :mod:`ddpm_lib.progress`).
        device: where to run (default: the model's device, else the CPU).
        x_T: start from this noise (of ``shape``) instead of drawing it, e.g. to map chosen noises
            through deterministic DDIM; the generator then only feeds the steps' noise.

    Returns:
        the samples x_0 (on ``device``), or (x_0, trajectory) with ``return_trajectory=True``.
    """
    schedule = _check_schedule(schedule)
    check_prediction_type(prediction_type)
    shape = _checked_shape(shape)
    samp = _resolve_sampler(schedule, sampler, num_steps, eta, clip_x0)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"generator must be a torch.Generator or None, got {type(generator).__name__}.")
    device = torch.device(device) if device is not None else (_model_device(model) or torch.device("cpu"))
    B = shape[0]
    labels = _labels_for(labels, B, device)

    was_training = getattr(model, "training", None)
    if hasattr(model, "eval"):
        model.eval()
    samp.reset()
    try:
        with torch.no_grad():
            x = _initial_noise(shape, generator, x_T, device)
            trajectory = [x.detach().cpu()] if return_trajectory else None
            t_dtype = torch.long if not samp.timesteps.is_floating_point() else torch.float32  # EDM: fractional
            for t in progress_bar(samp.timesteps.tolist(), desc=f"sampling ({type(samp).__name__})", disable=not progress, leave=False):
                t_batch = torch.full((B,), t, dtype=t_dtype, device=device)
                out = guided_output(model, x, t_batch, labels, guidance_scale, null_label)
                if out.shape != x.shape:
                    raise ValueError(
                        f"the model returned shape {tuple(out.shape)} for input shape {tuple(x.shape)}; it must "
                        "return x_t's shape (a model with learned variance is not supported here)."
                    )
                x = samp.step(out, t, x, generator=generator, prediction_type=prediction_type)
                if return_trajectory:
                    trajectory.append(x.detach().cpu())
    finally:
        if was_training is not None and hasattr(model, "train"):
            model.train(was_training)
    return (x, trajectory) if return_trajectory else x


def sample_batched(model, schedule: NoiseSchedule, num: int, shape: Sequence[int], batch_size: int = 256,
                   labels=None, generator: torch.Generator | None = None, progress: bool = False, **kwargs) -> torch.Tensor:
    """``num`` samples of image shape ``shape`` drawn ``batch_size`` at a time with :func:`sample` (the
    library's one batched-sampling loop); ``labels`` has one entry per sample. Returns them on the CPU,
    clamped to [-1, 1]. Other keyword arguments go to :func:`sample`."""
    if isinstance(num, bool) or not isinstance(num, (int, np.integer)) or num < 1:
        raise ValueError(f"num must be a positive int, got {num!r}.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch size must be a positive int, got {batch_size!r}.")
    if labels is not None and len(labels) != num:
        raise ValueError(f"labels must have one entry per sample ({num}), got {len(labels)}.")
    out = []
    for start in range(0, num, batch_size):
        b = min(batch_size, num - start)
        lab = labels[start:start + b] if labels is not None else None
        x = sample(model, schedule, (b, *shape), generator=generator, labels=lab, progress=progress, **kwargs)
        out.append(x.float().clamp(-1, 1).cpu())
    return torch.cat(out)
