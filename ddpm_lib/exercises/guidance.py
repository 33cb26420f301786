"""Checkers for notebook 06 (class conditioning and classifier-free guidance).

Exercise ``check_drop_labels``: label dropout for classifier-free guidance training (Ho & Salimans 2022,
Algorithm 1): ``fn(labels, p, null_class, generator) -> labels'`` replaces each label, independently with
probability ``p``, by the extra null class. It is random, so the checker tests its properties: the shape
and integer dtype, the input left alone, every entry either kept or the null class, the rate of nulls
(binomial, within 5 standard deviations), independence between labels (not the whole batch at once,
not exactly round(p B) per batch), p = 0 and p = 1, and that the draws come from ``generator``.

Exercise ``check_cfg_mix``: combine the conditional and unconditional model outputs with guidance scale ``w``
(Ho & Salimans 2022, eq. 6, in the convention where w = 1 is plain conditional sampling)::

    out = out_uncond + w * (out_cond - out_uncond)

The checker compares with that formula on random tensors and recognises the usual slips: the two
outputs swapped, Ho & Salimans' own convention ``(1 + w) out_cond - w out_uncond``, and a missing
unconditional term.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from . import ExerciseError, call_student, check_tensor, exercise, passed

_NAME = "cfg_mix"


def reference_cfg_mix(out_cond: torch.Tensor, out_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """out_uncond + w (out_cond - out_uncond)."""
    return out_uncond + w * (out_cond - out_uncond)


@exercise(reference=reference_cfg_mix)
def check_cfg_mix(fn: Callable[[torch.Tensor, torch.Tensor, float], torch.Tensor]) -> None:
    """Check ``fn(out_cond, out_uncond, w) -> tensor`` of the same shape."""
    g = torch.Generator().manual_seed(0)
    cond = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    uncond = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    for w in (2.5, 0.0, 1.0):
        got = call_student(_NAME, fn, cond.clone(), uncond.clone(), w)
        expected = uncond + w * (cond - uncond)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape:
            g64 = got.detach().to(torch.float64)
            slips = {
                "the two outputs are swapped: start from the UNconditional output and move towards the conditional one":
                    cond + w * (uncond - cond),
                "that is Ho & Salimans' convention (1 + w) out_cond - w out_uncond; here w = 1 must give exactly the "
                "conditional output, so use out_uncond + w (out_cond - out_uncond)": (1 + w) * cond - w * uncond,
                "the unconditional output is missing: add out_uncond back": w * (cond - uncond),
            }
            if not torch.allclose(g64, expected, atol=1e-6):
                for hint, wrong in slips.items():
                    if torch.allclose(g64, wrong, atol=1e-6):
                        raise ExerciseError(f"{_NAME} with w={w}: {hint}.")
        check_tensor(_NAME, got, expected, atol=1e-6, rtol=1e-6,
                     hint=f"w={w}: out = out_uncond + w * (out_cond - out_uncond); w=0 gives out_uncond, w=1 out_cond.")
    passed(_NAME, "w = 0 is unconditional, w = 1 conditional, w > 1 extrapolates past the conditional output.")


# --- label dropout --------------------------------------------------------------------------------


def reference_drop_labels(labels: torch.Tensor, p: float, null_class: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each label replaced by ``null_class`` with probability ``p``, independently (a new tensor)."""
    u = torch.rand(labels.shape, generator=generator, device=generator.device if generator is not None else labels.device)
    return torch.where(u.to(labels.device) < p, torch.full_like(labels, int(null_class)), labels)


def _dropout_call(name: str, fn: Callable, labels: torch.Tensor, p: float, null: int, seed: int) -> torch.Tensor:
    before = labels.clone()
    got = call_student(name, fn, labels, p, null, torch.Generator().manual_seed(seed))
    if not torch.equal(labels, before):
        raise ExerciseError(f"{name}: you changed `labels` in place; the caller still needs the true labels. "
                            "Return a new tensor: torch.where(drop, torch.full_like(labels, null_class), labels).")
    if not isinstance(got, torch.Tensor):
        raise ExerciseError(f"{name}: return a torch.Tensor of labels, got {type(got).__name__}.")
    if tuple(got.shape) != tuple(labels.shape):
        raise ExerciseError(f"{name}: expected shape {tuple(labels.shape)} (one label per image), got {tuple(got.shape)}.")
    if got.dtype.is_floating_point or got.dtype == torch.bool:
        raise ExerciseError(f"{name}: the labels must stay integers (torch.long: they index the class embedding), "
                            f"got {got.dtype}. torch.full_like(labels, null_class) keeps the dtype.")
    return got


@exercise(reference=reference_drop_labels)
def check_drop_labels(fn: Callable) -> None:
    """Check ``fn(labels (B,) long, p, null_class, generator) -> (B,) long`` drops each label with probability p."""
    name = "drop_labels"
    null, n = 10, 4000
    labels = torch.arange(n) % 10
    p = 0.3
    got = _dropout_call(name, fn, labels, p, null, 1).long()
    changed = got != labels
    if changed.any() and not (got[changed] == null).all():
        bad = got[changed & (got != null)]
        value = int(bad[0])
        why = ("class 0 is a real class (airplane), not 'no label'" if value == 0 else
               "-1 is not a class the embedding knows" if value == -1 else "that is neither the label nor the null class")
        raise ExerciseError(f"{name}: a dropped label became {value}: {why}. Use `null_class` ({null} here: the "
                            "extra class index num_classes, which the model reserves for 'no label').")
    rate = float(changed.float().mean())
    if rate in (0.0, 1.0):
        raise ExerciseError(f"{name}: with p = {p} you dropped {'none' if rate == 0 else 'all'} of the {n} labels. Drop each "
                            "label independently: one random number per label, torch.rand(labels.shape, generator=generator) < p.")
    sd = math.sqrt(p * (1 - p) / n)
    if abs(rate - p) > 5 * sd:
        if abs(rate - (1 - p)) <= 5 * sd:
            raise ExerciseError(f"{name}: you dropped {rate:.1%} of the labels with p = {p}: that is 1 - p. "
                                "`torch.rand(...) < p` marks the labels to DROP (replace by the null class).")
        raise ExerciseError(f"{name}: you dropped {rate:.1%} of the labels with p = {p}; expected {p:.0%} "
                            f"(within {5 * sd:.1%}). Drop where torch.rand(labels.shape, generator=generator) < p.")
    again = _dropout_call(name, fn, labels, p, null, 1).long()
    if not torch.equal(again, got):
        raise ExerciseError(f"{name}: two calls with identically seeded generators gave different results: draw the "
                            "random numbers from `generator` (torch.rand(labels.shape, generator=generator)) so that "
                            "training runs are reproducible.")
    counts = torch.tensor([float((_dropout_call(name, fn, labels[:20], 0.5, null, 100 + i).long() == null).sum())
                           for i in range(100)])
    if float(counts.var()) < 1.0:  # binomial(20, 0.5): variance 5
        raise ExerciseError(f"{name}: every batch of 20 lost exactly {int(counts[0])} labels. Label dropout drops each "
                            "label independently with probability p, so the count varies from batch to batch "
                            "(binomial): use torch.rand(labels.shape, generator=generator) < p, not a fixed number.")
    for p_edge in (0.0, 1.0):
        got = _dropout_call(name, fn, labels, p_edge, null, 0)
        want = labels if p_edge == 0.0 else torch.full_like(labels, null)
        if not torch.equal(got.long(), want):
            raise ExerciseError(f"{name}: with p = {p_edge} {'no label may change' if p_edge == 0 else 'every label must become the null class'}"
                                f" ({int((got.long() != want).sum())} of {n} are wrong). Drop where torch.rand(...) < p.")
    passed(name, f"about {p:.0%} of the labels became the null class ({rate:.1%} of {n}).")
