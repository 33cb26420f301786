"""Checkers for notebook 06 (class conditioning and classifier-free guidance).

Exercise ``check_drop_labels``: label dropout for classifier-free guidance training (Ho & Salimans 2022,
Algorithm 1): ``fn(labels, p, null_class, generator) -> labels'`` replaces each label, independently with
probability ``p``, by the extra null class. It is random, so the checker tests its properties: the shape
and integer dtype, the input left alone, every entry either kept or the null class, the rate of nulls
(binomial, within 5 standard deviations), independence between labels (not the whole batch at once,
not exactly round(p B) per batch), p = 0 and p = 1, and that the draws come from ``generator``.

Exercise ``check_guided_output``: ``fn(model, x_t, t, labels, w)``, the guided prediction of a conditional
model: the conditional and the unconditional (null-class) passes, as one batch of 2B, mixed as below. It is
checked on a small probe model (a fixed linear map plus one vector per class) against separate passes;
named mistakes: the halves swapped, class 0 instead of the null class, the true labels in both halves,
the labels changed in place, and (from the probe) t or the labels not doubled with the batch.

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

from ddpm_lib.course.exercises import ExerciseError, call_student, check_tensor, exercise, passed

_NAME = "cfg_mix"


def reference_cfg_mix(out_cond: torch.Tensor, out_uncond: torch.Tensor, w: float) -> torch.Tensor:
    """out_uncond + w (out_cond - out_uncond)."""
    return out_uncond + w * (out_cond - out_uncond)


@exercise(reference=reference_cfg_mix, library=('ddpm_lib.diffusion.samplers.guided_output',))
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


@exercise(reference=reference_drop_labels, library=('ddpm_lib.diffusion.losses.drop_labels',))
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
    passed(name, f"in the checker's own test with p = {p}, {rate:.1%} of {n} labels became the null class (expected {p:.0%}).")


# --- the guided prediction of a conditional model ----------------------------------------------------


class _ProbeConditionalModel(torch.nn.Module):
    """A tiny class-conditional "network": out = 0.5 x + e[label] + 0.01 t (e: one fixed vector per class).

    It has a ``null_class`` like ddpm_lib's UNet, counts its calls, and says so when x, t and labels disagree
    in batch size (the usual slip when doubling the batch)."""

    def __init__(self, num_classes: int = 5, channels: int = 2):
        super().__init__()
        self.null_class = num_classes
        g = torch.Generator().manual_seed(3)
        self.register_buffer("emb", torch.randn(num_classes + 1, channels, generator=g, dtype=torch.float64))
        self.calls: list[int] = []

    def forward(self, x, t, labels=None):
        if labels is None:
            raise ValueError("this model is class-conditional: pass labels=... (the null class for the unconditional pass).")
        if not (x.shape[0] == t.shape[0] == labels.shape[0]):
            raise ValueError(f"x has {x.shape[0]} images but t has {t.shape[0]} entries and labels {labels.shape[0]}: "
                             "when you double the batch, double t and the labels too (torch.cat([t, t])).")
        self.calls.append(int(x.shape[0]))
        e = self.emb[labels.long()].to(x.dtype)
        return 0.5 * x + e[:, :, None, None] + 0.01 * t.to(x.dtype)[:, None, None, None]


def reference_guided_output(model, x_t: torch.Tensor, t: torch.Tensor, labels: torch.Tensor, w: float) -> torch.Tensor:
    """eps(x, null) + w (eps(x, y) - eps(x, null)) (Ho & Salimans 2022, eq. 6; w = 1: conditional), as one batch of 2B."""
    null = torch.full_like(labels, int(model.null_class))
    out = model(torch.cat([x_t, x_t]), torch.cat([t, t]), labels=torch.cat([labels, null]))
    out_cond, out_uncond = out.chunk(2)
    return out_uncond + w * (out_cond - out_uncond)


@exercise(reference=reference_guided_output, library=('ddpm_lib.diffusion.samplers.guided_output',))
def check_guided_output(fn: Callable) -> None:
    """Check ``fn(model, x_t, t, labels, w) -> guided output`` on a probe conditional model."""
    name = "guided_output"
    model = _ProbeConditionalModel()
    g = torch.Generator().manual_seed(4)
    x = torch.randn(3, 2, 4, 4, generator=g, dtype=torch.float64)
    t = torch.tensor([5, 17, 40])
    labels = torch.tensor([0, 3, 1])
    null = torch.full_like(labels, model.null_class)

    def out(lab):
        return model(x, t, labels=lab)

    for w in (2.5, 0.0, 1.0):
        labels_before = labels.clone()
        model.calls.clear()
        got = call_student(name, fn, model, x.clone(), t.clone(), labels, w)
        if not torch.equal(labels, labels_before):
            raise ExerciseError(f"{name}: you changed `labels` in place; build the null labels as a new tensor "
                                "(torch.full_like(labels, model.null_class)).")
        with torch.no_grad():
            cond, uncond = out(labels), out(null)
            zero_null = out(torch.zeros_like(labels))
        expected = uncond + w * (cond - uncond)
        if isinstance(got, torch.Tensor) and got.shape == expected.shape and not torch.allclose(got.double(), expected, atol=1e-6):
            slips = [
                ("the conditional and unconditional halves are swapped: with torch.cat([labels, null]) the FIRST half "
                 "of the output is the conditional one (and cfg_mix takes (out_cond, out_uncond, w)).",
                 cond + w * (uncond - cond)),
                ("the unconditional pass must use the null class, model.null_class, not class 0 (a real class).",
                 zero_null + w * (cond - zero_null)),
                ("both passes used the true labels, so the guidance does nothing: the unconditional half needs the "
                 "null class, torch.full_like(labels, model.null_class).", cond),
            ]
            for hint, wrong in slips:
                if torch.allclose(got.double(), wrong, atol=1e-6) and not torch.allclose(wrong, expected, atol=1e-6):
                    raise ExerciseError(f"{name} with w={w}: {hint}")
        check_tensor(name, got, expected, atol=1e-6, rtol=1e-6,
                     hint=f"w={w}: out = eps(x, t, null) + w (eps(x, t, labels) - eps(x, t, null)).")
    passed(name, "ddpm_lib.diffusion.samplers.guided_output does this inside every guided sampling step.")
