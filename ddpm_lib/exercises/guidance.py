"""Checker for notebook 06 (classifier-free guidance).

Exercise: combine the conditional and unconditional model outputs with guidance scale ``w``
(Ho & Salimans 2022, eq. 6, in the convention where w = 1 is plain conditional sampling)::

    out = out_uncond + w * (out_cond - out_uncond)

The checker compares with that formula on random tensors and recognises the usual slips: the two
outputs swapped, Ho & Salimans' own convention ``(1 + w) out_cond - w out_uncond``, and a missing
unconditional term.
"""

from __future__ import annotations

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
