"""Checkers for notebook 04 (training).

- ``check_diffusion_loss(fn)``: ``fn(model, x0, noise, alpha_bars, t) -> scalar tensor`` (``t`` last, as in the library), the simple loss of
  Ho et al. 2020 (Algorithm 1, eq. 14): build x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise, ask the
  model for eps-hat = model(x_t, t), return the mean of (noise - eps-hat)^2. Named slips: a missing square
  root (on the noise term, on x0, or both), alpha_t instead of alpha_bar_t, ``alpha_bars[t - 1]`` (wrapping
  to the last entry at t = 0), a missing reshape of the per-image coefficients (the broadcasting error is
  explained), the wrong target or input, sum instead of mean, L1. No message prints the solution.
- ``check_ema_update(fn)``: ``fn(ema_params, params, decay) -> None``, updating every EMA tensor in place:
  ema <- decay * ema + (1 - decay) * param.
- ``check_ema_warmup(fn)``: ``fn(num_updates, decay) -> float``, the warm-up decay min(decay, (1 + n) / (10 + n)).
- ``check_train_step(fn)``: ``fn(model, opt, x0, alpha_bars, generator) -> float``, one step of Algorithm 1:
  t ~ U{0..T-1} per image, then noise ~ N(0, I), both from ``generator``; the loss; zero_grad, backward,
  step. Two steps on a probe model with SGD are compared with the reference's; named mistakes: no
  zero_grad (gradients pile up), randint's exclusive upper bound (T - 1), one t for the whole batch, the
  global RNG instead of ``generator``, the weights never updated, a tensor returned instead of a float.

The references are written here, in float64 loops, independently of :mod:`ddpm_lib.diffusion.losses` and
:mod:`ddpm_lib.models.ema`; a wrong answer is compared with the usual mistakes, and the matching one is named.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ddpm_lib.course.exercises import ExerciseError, call_student, call_t_last, exercise, passed

__all__ = ["check_diffusion_loss", "check_ema_update", "check_ema_warmup", "check_train_step"]


class _ProbeModel(nn.Module):
    """A tiny deterministic "network": eps-hat = w * x_t + c * t / T (it has parameters, so gradients can flow)."""

    def __init__(self, T: int):
        super().__init__()
        self.T = T
        self.w = nn.Parameter(torch.tensor(0.6))
        self.c = nn.Parameter(torch.tensor(0.3))

    def forward(self, x, t, labels=None):
        return self.w * x + self.c * (t.to(x.dtype) / self.T).reshape(-1, *([1] * (x.ndim - 1)))


def _probe_inputs(seed: int = 0, T: int = 50):
    g = torch.Generator().manual_seed(seed)
    betas = torch.linspace(1e-3, 0.2, T, dtype=torch.float64)
    alpha_bars = torch.cumprod(1 - betas, 0).float()
    x0 = torch.rand(6, 1, 5, 5, generator=g) * 2 - 1
    noise = torch.randn(6, 1, 5, 5, generator=g)
    t = torch.tensor([0, 3, 11, 25, 40, 49])
    return x0, noise, t, alpha_bars


def _loss_variants(model, x0, noise, t, alpha_bars):
    """(name, value) of the right loss and of the usual mistakes, computed sample by sample in float64."""
    ab = alpha_bars.double()
    T = ab.shape[0]

    def per_sample(coef, target="noise", model_input="x_t", reduce="mean", err="sq"):
        vals = []
        for i, ti in enumerate(t.tolist()):
            a, b = coef(ti)
            x_t = a * x0[i].double() + b * noise[i].double()
            inp = x_t if model_input == "x_t" else x0[i].double()
            out = model(inp[None].float(), t[i:i + 1]).double()[0]
            tgt = noise[i].double() if target == "noise" else x0[i].double()
            d = (out - tgt) ** 2 if err == "sq" else (out - tgt).abs()
            vals.append(d.sum() if reduce == "sum" else d.mean())
        v = torch.stack(vals)
        return v.sum() if reduce == "sum" else v.mean()

    def right(ti):
        return math.sqrt(ab[ti]), math.sqrt(1 - ab[ti])

    yield "right", per_sample(right)
    yield ("the noise term needs a square root: its coefficient is sqrt(1 - abar_t) (the noise's VARIANCE is "
           "1 - abar_t), you multiplied the noise by 1 - abar_t.",
           per_sample(lambda ti: (math.sqrt(ab[ti]), float(1 - ab[ti]))))
    yield ("the x0 term needs a square root: its coefficient is sqrt(abar_t), you multiplied x0 by abar_t.",
           per_sample(lambda ti: (float(ab[ti]), math.sqrt(1 - ab[ti]))))
    yield ("the coefficients need square roots: x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise.",
           per_sample(lambda ti: (float(ab[ti]), float(1 - ab[ti]))))
    # alpha_t = abar_t / abar_{t-1} is ONE step's 1 - beta_t (abar_{-1} = 1)
    alpha = torch.cat([ab[:1], ab[1:] / ab[:-1]])
    yield ("you used alpha_t, the one-step factor 1 - beta_t, where x_t needs alpha_bar_t, the product of "
           "all alphas up to step t: alpha_bars[t] is already that product (notebook 01, eq. 4).",
           per_sample(lambda ti: (math.sqrt(alpha[ti]), math.sqrt(1 - alpha[ti]))))
    cum = torch.cumprod(ab, 0)
    yield ("you took a cumulative product of alpha_bars, which already IS the cumulative product of the "
           "alphas: index it directly, alpha_bars[t].",
           per_sample(lambda ti: (math.sqrt(cum[ti]), math.sqrt(1 - cum[ti]))))
    yield ("the network predicts the NOISE: compare its output with `noise`, not with x0.", per_sample(right, target="x0"))
    yield ("give the model the noisy image x_t, not the clean x0.", per_sample(right, model_input="x0"))
    yield ("use the mean of the squared error (F.mse_loss or ((eps - eps_hat) ** 2).mean()), not the sum.",
           per_sample(right, reduce="sum"))
    yield ("the simple loss squares the error (L2); you took the absolute value (L1).", per_sample(right, err="abs"))
    yield ("you read alpha_bars[t - 1]: alpha_bars[t] already is the value for timestep t (0-based), and at "
           "t = 0 the index t - 1 = -1 silently wraps around to the LAST entry, alpha_bars[-1] (no error, "
           "just the noisiest level instead of the cleanest).",
           per_sample(lambda ti: (math.sqrt(ab[ti - 1]), math.sqrt(1 - ab[ti - 1]))))  # Python wraps -1 too
    yield ("alpha_bars[t] already is the value for timestep t (0-based): don't shift the index to t - 1.",
           per_sample(lambda ti: (math.sqrt(ab[ti - 1]) if ti > 0 else 1.0, math.sqrt(1 - ab[ti - 1]) if ti > 0 else 0.0)))
    yield ("x_t mixes x0 and noise with sqrt(abar_t) on x0 and sqrt(1 - abar_t) on the noise: the two are swapped.",
           per_sample(lambda ti: (math.sqrt(1 - ab[ti]), math.sqrt(ab[ti]))))
    del T


def reference_diffusion_loss(model, x0: torch.Tensor, noise: torch.Tensor, alpha_bars: torch.Tensor,
                             t: torch.Tensor) -> torch.Tensor:
    """mean((noise - model(x_t, t))^2) with x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) noise (Ho et al. eq. 14)."""
    ab = alpha_bars.to(x0.device)[t.to(x0.device)].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * noise
    return ((noise - model(x_t, t)) ** 2).mean()


def reference_ema_update(ema_params, params, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * param, in place, for every pair of tensors."""
    with torch.no_grad():
        for e, p in zip(ema_params, params):
            e.copy_(decay * e + (1 - decay) * p.detach().to(e.dtype))


def reference_ema_warmup(num_updates: int, decay: float) -> float:
    """min(decay, (1 + n) / (10 + n)) (TensorFlow's ExponentialMovingAverage with num_updates)."""
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


def _call_loss(name: str, fn: Callable, model, x0, t, noise, alpha_bars):
    """Call the student's loss; a broadcasting error from per-image coefficients of shape (B,) gets a named hint."""
    try:
        return call_t_last(name, fn, (model, x0.clone(), noise.clone(), alpha_bars.clone(), t.clone()),
                           old_order=(0, 1, 4, 2, 3), expected=reference_diffusion_loss(model, x0, noise, alpha_bars, t),
                           signature="def diffusion_loss_mine(model, x0, noise, alpha_bars, t)")
    except ExerciseError as e:
        cause = e.__cause__
        if isinstance(cause, RuntimeError) and "must match the size of tensor" in str(cause):
            raise ExerciseError(
                f"{name}: alpha_bars[t] has shape (B,) = ({len(t)},), one number per image, and PyTorch lines up "
                f"the LAST dimensions when it multiplies it with x0 of shape {tuple(x0.shape)} ({len(t)} against "
                f"{x0.shape[-1]}), hence the size-mismatch error. Reshape the per-image values to "
                "(B, 1, 1, 1) first, so they broadcast over channels and pixels."
            ) from cause
        raise


@exercise(reference=reference_diffusion_loss, library=('ddpm_lib.diffusion.losses.training_loss',))
def check_diffusion_loss(fn: Callable) -> None:
    """Check ``fn(model, x0, noise, alpha_bars, t)`` returns the simple DDPM loss as a scalar tensor with gradients."""
    name = "diffusion loss"
    for seed in (0, 1):
        x0, noise, t, alpha_bars = _probe_inputs(seed)
        model = _ProbeModel(alpha_bars.shape[0])
        got = _call_loss(name, fn, model, x0, t, noise, alpha_bars)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(f"{name}: return a torch tensor (the loss), got {type(got).__name__}. "
                                "Don't call .item(): the optimizer needs the tensor to backpropagate.")
        if got.numel() != 1:
            raise ExerciseError(f"{name}: return one number (shape ()), got shape {tuple(got.shape)}. "
                                "Average over the batch and the pixels: .mean().")
        if not got.requires_grad:
            raise ExerciseError(f"{name}: the loss carries no gradient. Compute it from model(...)'s output with torch "
                                "operations, without .detach(), .item() or torch.no_grad().")
        with torch.no_grad():
            variants = list(_loss_variants(model, x0, noise, t, alpha_bars))
        value = float(got.detach())
        right = float(variants[0][1])
        if not math.isclose(value, right, rel_tol=1e-4, abs_tol=1e-6):
            for hint, v in variants[1:]:
                if math.isclose(value, float(v), rel_tol=1e-4, abs_tol=1e-6):
                    raise ExerciseError(f"{name}: {hint}")
            raise ExerciseError(
                f"{name}: got {value:.6f}, expected {right:.6f}, and none of the usual slips gives your value. "
                "Check one thing at a time: the table and index you read (alpha_bars[t], 0-based), both "
                "coefficients of x_t (notebook 01, eq. 4), what the model is given, what its output is compared "
                "with, and the mean over every pixel of every image."
            )
    passed(name, "This is Algorithm 1 of Ho et al.; ddpm_lib.diffusion.losses.training_loss adds the random t and noise.")


@exercise(reference=reference_ema_update, library=('ddpm_lib.models.ema.EMA',))
def check_ema_update(fn: Callable) -> None:
    """Check ``fn(ema_params, params, decay)`` updates each EMA tensor in place: ema = decay * ema + (1 - decay) * p."""
    name = "EMA update"
    g = torch.Generator().manual_seed(0)
    shapes = [(3, 4), (5,), (2, 1, 3, 3)]
    for decay in (0.9, 0.5):
        ema = [torch.randn(s, generator=g) for s in shapes]
        params = [torch.randn(s, generator=g) for s in shapes]
        before = [e.clone() for e in ema]
        ids = [id(e) for e in ema]
        returned = call_student(name, fn, ema, [p.clone() for p in params], decay)
        expected = [[decay * float(e) + (1 - decay) * float(p) for e, p in zip(b.flatten(), q.flatten())]
                    for b, q in zip(before, params)]
        expected = [torch.tensor(v, dtype=torch.float64).reshape(s) for v, s in zip(expected, shapes)]
        swapped = [(1 - decay) * b.double() + decay * q.double() for b, q in zip(before, params)]
        if [id(e) for e in ema] != ids:
            raise ExerciseError(f"{name}: don't replace the tensors in the list; update each one in place.")
        unchanged = all(torch.equal(e, b) for e, b in zip(ema, before))
        if unchanged:
            if isinstance(returned, (list, tuple)) and len(returned) == len(ema):
                raise ExerciseError(f"{name}: you returned new tensors, but the EMA tensors must change in place "
                                    "(e.g. e.mul_(decay).add_(p, alpha=1 - decay), or e.copy_(...)).")
            raise ExerciseError(f"{name}: the EMA tensors did not change. Writing `e = decay * e + ...` only rebinds a "
                                "local name: update in place with e.mul_(decay).add_(p, alpha=1 - decay).")
        if decay != 0.5 and all(torch.allclose(e.double(), s, atol=1e-6) for e, s in zip(ema, swapped)):
            raise ExerciseError(f"{name}: decay and 1 - decay are swapped: the OLD average keeps the large weight "
                                "`decay`, the new weights get 1 - decay.")
        for e, ex in zip(ema, expected):
            if not torch.allclose(e.double(), ex, atol=1e-6):
                raise ExerciseError(f"{name}: wrong values (largest error {(e.double() - ex).abs().max():.3g}). "
                                    "Each EMA tensor should become decay * ema + (1 - decay) * param.")
    passed(name, "ddpm_lib.models.ema.EMA.update does the same for every weight of a model.")


_WARMUP_CASES = [(0, 0.9999), (1, 0.9999), (10, 0.9999), (90, 0.99), (1000, 0.999), (10**6, 0.9999)]


def _warmup_mistakes():
    """(hint, formula) for the usual wrong warm-up rules, most specific first."""
    yield ("you returned `decay` unchanged: there is no warm-up. Early on the decay must be SMALL, "
           "(1 + n) / (10 + n) = 0.1 at n = 0, so the average forgets the random initial weights quickly: "
           "return min(decay, (1 + n) / (10 + n))."), lambda n, d: d
    yield ("the decay must never exceed `decay`: clip the warm-up with min(decay, (1 + n) / (10 + n))."), \
        lambda n, d: (1.0 + n) / (10.0 + n)
    yield ("you took max(decay, ...), which is `decay` from the start (no warm-up): the warm-up needs the "
           "SMALLER of the two, min(decay, (1 + n) / (10 + n))."), lambda n, d: max(d, (1.0 + n) / (10.0 + n))


@exercise(reference=reference_ema_warmup, library=('ddpm_lib.models.ema.ema_decay_at',))
def check_ema_warmup(fn: Callable) -> None:
    """Check ``fn(num_updates, decay)`` returns min(decay, (1 + n) / (10 + n)) for several n and decay."""
    name = "EMA warm-up decay"
    got = []
    for n, d in _WARMUP_CASES:
        value = call_student(name, fn, n, d)
        try:
            got.append(float(value))
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}: return a number, got {type(value).__name__}.") from None

    def same(formula) -> bool:
        return all(math.isclose(g, formula(n, d), rel_tol=1e-9, abs_tol=1e-12) for g, (n, d) in zip(got, _WARMUP_CASES))

    if same(reference_ema_warmup):
        passed(name)
        return
    for hint, formula in _warmup_mistakes():
        if same(formula):
            raise ExerciseError(f"{name}: {hint}")
    for g, (n, d) in zip(got, _WARMUP_CASES):
        want = reference_ema_warmup(n, d)
        if not math.isclose(g, want, rel_tol=1e-9, abs_tol=1e-12):
            raise ExerciseError(f"{name}: for n={n}, decay={d} expected min(decay, (1 + n) / (10 + n)) = {want:.6f}, "
                                f"got {g!r}.")


# --- one training step ----------------------------------------------------------------------------


def _draw_t_noise(x0: torch.Tensor, T: int, generator: torch.Generator, t_high: int | None = None,
                  one_t: bool = False, noise_first: bool = False):
    """t ~ U{0..t_high-1} (B,) and noise ~ N(0, I) like x0, drawn from ``generator`` in the given order."""
    shape_t = (1,) if one_t else (x0.shape[0],)
    high = T if t_high is None else t_high
    if noise_first:
        noise = torch.randn(x0.shape, generator=generator)
        t = torch.randint(0, high, shape_t, generator=generator)
    else:
        t = torch.randint(0, high, shape_t, generator=generator)
        noise = torch.randn(x0.shape, generator=generator)
    return t.expand(x0.shape[0]).to(x0.device), noise.to(x0.device, x0.dtype)


def _simple_loss(model, x0, t, noise, alpha_bars) -> torch.Tensor:
    """Ho et al. eq. 14 for one batch, written out: mean over images and pixels of (noise - eps-hat)^2."""
    ab = alpha_bars.to(x0.device)[t].to(x0.dtype).reshape(-1, *([1] * (x0.ndim - 1)))
    return ((noise - model(ab.sqrt() * x0 + (1 - ab).sqrt() * noise, t)) ** 2).mean()


def reference_train_step(model, opt, x0: torch.Tensor, alpha_bars: torch.Tensor, generator: torch.Generator) -> float:
    """One step of Ho et al.'s Algorithm 1: draw t ~ U{0..T-1} (B,), then noise ~ N(0, I) like x0, both from
    ``generator``; loss = eq. 14; zero the gradients, backpropagate, step. Returns the loss (a float)."""
    t, noise = _draw_t_noise(x0, alpha_bars.shape[0], generator)
    loss = _simple_loss(model, x0, t, noise, alpha_bars)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return float(loss.detach())


def _run_steps(step, seed: int, steps: int = 2):
    """Run ``step`` ``steps`` times on a fresh probe model with SGD; return (losses, final parameters)."""
    x0, _, _, alpha_bars = _probe_inputs(seed)
    model = _ProbeModel(alpha_bars.shape[0])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    gen = torch.Generator().manual_seed(seed)
    losses = [step(model, opt, x0.clone(), alpha_bars.clone(), gen) for _ in range(steps)]
    return losses, torch.stack([p.detach().clone() for p in model.parameters()])


def _variant_step(*, t_high_minus: int = 0, one_t: bool = False, noise_first: bool = False, zero_grad: bool = True):
    def step(model, opt, x0, alpha_bars, generator):
        T = alpha_bars.shape[0]
        t, noise = _draw_t_noise(x0, T, generator, t_high=T - t_high_minus, one_t=one_t, noise_first=noise_first)
        loss = _simple_loss(model, x0, t, noise, alpha_bars)
        if zero_grad:
            opt.zero_grad()
        loss.backward()
        opt.step()
        return float(loss.detach())
    return step


@exercise(reference=reference_train_step, library=('ddpm_lib.training.trainer.Trainer', 'ddpm_lib.diffusion.losses.training_loss'))
def check_train_step(fn: Callable) -> None:
    """Check ``fn(model, opt, x0, alpha_bars, generator) -> float``: two steps of Algorithm 1 on a probe model."""
    name = "train_step"

    def student(model, opt, x0, alpha_bars, gen):
        out = call_student(name, fn, model, opt, x0, alpha_bars, gen)
        if isinstance(out, torch.Tensor):
            raise ExerciseError(f"{name}: return the loss as a Python float (loss.item()), not a tensor: a list of "
                                "tensors would keep every step's graph alive.")
        if out is None:
            raise ExerciseError(f"{name}: return the loss value (loss.item()); you returned None.")
        try:
            return float(out)
        except (TypeError, ValueError):
            raise ExerciseError(f"{name}: return the loss as a float, got {type(out).__name__}.") from None

    for seed in (0, 1):
        got_losses, got_params = _run_steps(student, seed)
        again_losses, again_params = _run_steps(student, seed)
        if got_losses != again_losses or not torch.equal(got_params, again_params):
            raise ExerciseError(f"{name}: two runs from the same generator seed differ. Draw t AND the noise from "
                                "`generator` (torch.randint(0, T, (B,), generator=generator), torch.randn(x0.shape, "
                                "generator=generator)), so that a run can be repeated exactly.")
        _, start = _run_steps(lambda *a: 0.0, seed, steps=0)
        if torch.equal(got_params, start):
            raise ExerciseError(f"{name}: the weights did not change. After computing the loss call opt.zero_grad(), "
                                "loss.backward() and opt.step().")

        def same(step, seed=seed, got_losses=got_losses, got_params=got_params) -> bool:
            losses, params = _run_steps(step, seed)
            return all(math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-7) for a, b in zip(got_losses, losses)) and \
                torch.allclose(got_params, params, rtol=1e-5, atol=1e-7)

        if same(reference_train_step) or same(_variant_step(noise_first=True)):
            continue
        mistakes = [
            ("call opt.zero_grad() before loss.backward(): without it the gradients of earlier steps pile up "
             "in .grad and the second step uses their sum.", _variant_step(zero_grad=False)),
            ("torch.randint's upper bound is EXCLUSIVE: torch.randint(0, T, ...) already gives 0..T-1; with T - 1 "
             "the last timestep is never trained.", _variant_step(t_high_minus=1)),
            ("draw one timestep per image (shape (B,)), not one for the whole batch: each batch should mix noise "
             "levels.", _variant_step(one_t=True)),
        ]
        for hint, step in mistakes:
            if same(step):
                raise ExerciseError(f"{name}: {hint}")
        raise ExerciseError(f"{name}: the losses or the weights after two steps differ from Algorithm 1's (losses "
                            f"{[round(v, 6) for v in got_losses]}), and none of the usual slips gives them. Check the "
                            "order of the draws (t for every image first, then the noise, both from `generator`), "
                            "that the loss is your diffusion_loss_mine, the three optimizer calls in their usual "
                            "order, and that you return the loss as a Python float.")
    passed(name, "One step of Ho et al.'s Algorithm 1.")
