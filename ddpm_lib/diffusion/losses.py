"""The DDPM training objective: noise an image at a random step, ask the network to undo it.

Ho et al. 2020 (arXiv:2006.11239), Algorithm 1 and eq. 14 ("L_simple")::

    t ~ Uniform{0..T-1},  eps ~ N(0, I),  x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps
    L = || eps - eps_theta(x_t, t) ||^2

Options on top of that:

- ``prediction_type``: the network predicts ``"epsilon"`` (Ho et al.), ``"x0"`` or ``"v"`` =
  sqrt(abar_t) eps - sqrt(1 - abar_t) x_0 (Salimans & Ho 2022, arXiv:2202.00512, sec. 4).
- ``loss_type``: ``"l2"`` (mean squared error), ``"l1"`` or ``"huber"`` (smooth L1, quadratic below
  ``huber_delta``).
- ``min_snr_gamma``: Min-SNR-gamma weighting (Hang et al. 2023, arXiv:2303.09556, eq. 8 and sec. 3.4):
  every timestep's loss is weighted so that, measured as an x_0 loss, its weight is min(SNR_t, gamma).
  Since ||eps - eps_hat||^2 = SNR_t ||x0 - x0_hat||^2 and ||v - v_hat||^2 = (SNR_t + 1) ||x0 - x0_hat||^2,
  the weight on the loss of the chosen target is ``min(SNR, gamma) / SNR`` (epsilon),
  ``min(SNR, gamma) / (SNR + 1)`` (v) or ``min(SNR, gamma)`` (x0). See :func:`min_snr_weights`.
- ``label_dropout``: for classifier-free guidance (Ho & Salimans 2022, arXiv:2207.12598, Algorithm 1)
  each label is replaced by the "null" class with probability ``label_dropout``.

The forward process (building x_t and the target) always runs in float32, even inside an autocast
region: only the network call is left to mixed precision, and its output is cast back to float32
before the loss.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ddpm_lib.diffusion.forward import add_noise, check_prediction_type, training_target
from ddpm_lib.diffusion.schedules import NoiseSchedule

LOSS_TYPES = ("l2", "l1", "huber")


def min_snr_weights(schedule: NoiseSchedule, t: torch.Tensor, gamma: float, prediction_type: str = "epsilon") -> torch.Tensor:
    """Per-sample Min-SNR-gamma loss weights (Hang et al. 2023, eq. 8), shape (B,), for the given target.

    - epsilon target: ``min(SNR_t, gamma) / SNR_t``
    - v target:       ``min(SNR_t, gamma) / (SNR_t + 1)``
    - x0 target:      ``min(SNR_t, gamma)``
    """
    check_prediction_type(prediction_type)
    if gamma is None or not gamma > 0:
        raise ValueError(f"min_snr_gamma must be a positive number (the paper uses 5), got {gamma!r}.")
    snr = schedule.snr.to(t.device)[t.long()].double()
    clipped = torch.clamp(snr, max=float(gamma))
    if prediction_type == "epsilon":
        w = clipped / snr
    elif prediction_type == "v":
        w = clipped / (snr + 1.0)
    else:
        w = clipped
    return w.float()


def drop_labels(labels: torch.Tensor, p: float, null_label: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace each label by ``null_label`` with probability ``p`` (classifier-free guidance training)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"label_dropout must lie in [0, 1], got {p!r}.")
    if p == 0.0:
        return labels
    gen_device = generator.device if generator is not None else labels.device
    u = torch.rand(labels.shape, generator=generator, device=gen_device).to(labels.device)
    return torch.where(u < p, torch.full_like(labels, int(null_label)), labels)


def unwrap_model(model: torch.nn.Module) -> torch.nn.Module:
    """The user's module inside DistributedDataParallel and/or torch.compile wrappers (the EMA and the
    trainer use it too: the one place that knows the wrappers)."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, torch.nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def elementwise_loss(pred: torch.Tensor, target: torch.Tensor, loss_type: str = "l2", huber_delta: float = 1.0) -> torch.Tensor:
    """The per-element loss between prediction and target (no reduction)."""
    if loss_type == "l2":
        return (pred - target) ** 2
    if loss_type == "l1":
        return (pred - target).abs()
    if loss_type == "huber":
        return F.huber_loss(pred, target, reduction="none", delta=huber_delta)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}.")


def training_loss(
    model,
    schedule: NoiseSchedule,
    x0: torch.Tensor,
    labels: torch.Tensor | None = None,
    prediction_type: str = "epsilon",
    loss_type: str = "l2",
    min_snr_gamma: float | None = None,
    label_dropout: float = 0.0,
    null_label: int | None = None,
    generator: torch.Generator | None = None,
    t: torch.Tensor | None = None,
    noise: torch.Tensor | None = None,
    huber_delta: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """The diffusion training loss of ``model`` on a batch of clean images ``x0`` (Ho et al. Algorithm 1).

    Args:
        model: called as ``model(x_t, t, labels)`` (or ``model(x_t, t)`` when ``labels`` is None).
        schedule: the noise schedule (its tensors are moved to ``x0``'s device as needed).
        x0: clean images in [-1, 1], shape (B, C, H, W).
        labels: optional class labels (B,) for a class-conditional model.
        prediction_type: what the network outputs: "epsilon", "v" or "x0".
        loss_type: "l2", "l1" or "huber".
        min_snr_gamma: if given (e.g. 5.0), Min-SNR-gamma weighting (see :func:`min_snr_weights`).
        label_dropout: probability of replacing each label by ``null_label`` (classifier-free guidance).
        null_label: the "no label" class; defaults to ``model.null_class``.
        generator: a torch.Generator for t, the noise and the label dropout (default: the global RNG).
        t, noise: fix the timesteps (LongTensor (B,)) and/or the noise instead of sampling them.
        reduction: "mean" (a scalar) or "none" (the per-sample losses, shape (B,), weights applied).
    """
    check_prediction_type(prediction_type)
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}.")
    if x0.ndim < 2:
        raise ValueError(f"x0 must be a batch (B, C, H, W), got shape {tuple(x0.shape)}.")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}.")
    B, device = x0.shape[0], x0.device
    T = schedule.num_timesteps
    gen_device = generator.device if generator is not None else device

    with torch.autocast(device_type=device.type, enabled=False):
        x0 = x0.float()
        if t is None:
            t = torch.randint(0, T, (B,), generator=generator, device=gen_device)
        t = torch.as_tensor(t, dtype=torch.long).to(device)
        if t.ndim == 0:
            t = t.expand(B)
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=gen_device, dtype=torch.float32)
        noise = noise.to(device=device, dtype=torch.float32)
        if schedule.device != device:
            schedule = schedule.to(device)
        x_t = add_noise(schedule, x0, noise, t)
        target = training_target(schedule, x0, noise, t, prediction_type)

    if labels is not None and label_dropout > 0:
        if null_label is None:
            null_label = getattr(unwrap_model(model), "null_class", None)
        if null_label is None:
            raise ValueError(
                "label_dropout > 0 needs a null class: pass null_label=..., or use a class-conditional model "
                "(one whose .null_class is not None)."
            )
        labels = drop_labels(labels, label_dropout, null_label, generator)

    out = model(x_t, t, labels) if labels is not None else model(x_t, t)
    if out.shape != x0.shape:
        raise ValueError(f"the model's output has shape {tuple(out.shape)}, expected x_t's shape {tuple(x0.shape)}.")
    per_elem = elementwise_loss(out.float(), target, loss_type, huber_delta)
    per_sample = per_elem.reshape(B, -1).mean(dim=1)
    if min_snr_gamma is not None:
        per_sample = per_sample * min_snr_weights(schedule, t, min_snr_gamma, prediction_type)
    return per_sample.mean() if reduction == "mean" else per_sample


__all__ = ["LOSS_TYPES", "drop_labels", "elementwise_loss", "min_snr_weights", "training_loss"]
