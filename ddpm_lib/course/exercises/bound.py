"""Checkers for notebook 04, section 0 (what DDPM optimises: the variational bound of Ho et al. 2020).

- ``check_gaussian_kl(fn)``: ``fn(mean1, var1, mean2, var2) -> tensor``, the KL divergence
  KL(N(mean1, var1) || N(mean2, var2)) elementwise (Ho et al. eq. 5 needs it between Gaussians):
  1/2 [log(var2 / var1) + (var1 + (mean1 - mean2)^2) / var2 - 1]. Named mistakes: the two Gaussians
  swapped (KL is not symmetric), the standard-deviation form of the formula fed with variances, the 1/2
  missing, the -1 missing, the log ratio upside down, the mean difference not squared, and a sum over the
  elements instead of one KL per element.

The reference is written here, element by element with :mod:`math` in float64, independently of
:mod:`ddpm_lib.diffusion.bound`; a wrong answer is compared with the usual mistakes, and the matching one is named.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from ddpm_lib.course.exercises import ExerciseError, call_student, check_tensor, exercise, passed

__all__ = ["check_gaussian_kl"]


def _kl_scalar(m1: float, v1: float, m2: float, v2: float) -> float:
    """KL(N(m1, v1) || N(m2, v2)) for one pair of numbers: E_1[log N_1 - log N_2]."""
    return 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1.0)


def _elementwise(f, *tensors) -> torch.Tensor:
    """Apply the scalar formula ``f`` to every element of the broadcast tensors (float64)."""
    shape = torch.broadcast_shapes(*(t.shape for t in tensors))
    flat = [t.double().expand(shape).reshape(-1).tolist() for t in tensors]
    return torch.tensor([f(*vals) for vals in zip(*flat)], dtype=torch.float64).reshape(shape)


def reference_gaussian_kl(mean1, var1, mean2, var2) -> torch.Tensor:
    """KL(N(mean1, var1) || N(mean2, var2)), elementwise, in float64 (variances, not standard deviations)."""
    args = [torch.as_tensor(a, dtype=torch.float64) for a in (mean1, var1, mean2, var2)]
    return _elementwise(_kl_scalar, *args)


def _kl_mistakes():
    """(hint, scalar formula) of the usual wrong answers, most specific first."""
    yield ("the two Gaussians are swapped: KL is not symmetric. KL(N1 || N2) is the expectation under the FIRST "
           "one, E_1[log N1 - log N2]: the variance of the second Gaussian, var2, goes in the denominators."), \
        lambda m1, v1, m2, v2: _kl_scalar(m2, v2, m1, v1)
    yield ("the arguments are VARIANCES, but you used the standard-deviation form log(s2/s1) + (s1^2 + d^2)/(2 s2^2) "
           "- 1/2 with them. Redo the expectation with var1 and var2 standing for s1^2 and s2^2."), \
        lambda m1, v1, m2, v2: math.log(v2 / v1) + (v1**2 + (m1 - m2) ** 2) / (2 * v2**2) - 0.5
    yield ("the factor 1/2 in front is missing: every term comes from a Gaussian's exponent -(x - m)^2 / (2 var) "
           "or its normalising constant -1/2 log(2 pi var)."), \
        lambda m1, v1, m2, v2: 2 * _kl_scalar(m1, v1, m2, v2)
    yield ("the -1 is missing: it is E_1[(x - mean1)^2] / var1 = 1 from the first Gaussian's own exponent. "
           "Without it the KL of a Gaussian with itself is 1/2, not 0."), \
        lambda m1, v1, m2, v2: _kl_scalar(m1, v1, m2, v2) + 0.5
    yield ("the log ratio is upside down: the normalising constants give 1/2 log(var2 / var1) (the second "
           "Gaussian's variance on top)."), \
        lambda m1, v1, m2, v2: _kl_scalar(m1, v1, m2, v2) - math.log(v2 / v1)
    yield ("square the difference of the means: (mean1 - mean2)^2 / var2."), \
        lambda m1, v1, m2, v2: 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2)) / v2 - 1.0)
    yield ("each of var1 and mean1 - mean2 is divided by var2 (the KL is E_1[(x - mean2)^2 / var2] ...), "
           "not by var1."), \
        lambda m1, v1, m2, v2: 0.5 * (math.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v1 - 1.0)


def _cases():
    g = torch.Generator().manual_seed(11)
    m1 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    m2 = torch.randn(3, 4, generator=g, dtype=torch.float64)
    v1 = torch.rand(3, 4, generator=g, dtype=torch.float64) * 1.5 + 0.2
    v2 = torch.rand(3, 4, generator=g, dtype=torch.float64) * 1.5 + 0.2
    yield "random pairs", m1.float(), v1.float(), m2.float(), v2.float()
    yield "small variances (like beta_t)", 0.1 * m1.float(), 1e-3 * v1.float(), 0.1 * m2.float(), 2e-3 * v2.float()
    yield "a Gaussian and itself", m1.float(), v1.float(), m1.float(), v1.float()


@exercise(reference=reference_gaussian_kl, library=("ddpm_lib.diffusion.bound.gaussian_kl",))
def check_gaussian_kl(fn: Callable) -> None:
    """Check ``fn(mean1, var1, mean2, var2)`` returns the elementwise KL of two Gaussians (variances given)."""
    name = "gaussian_kl"
    for label, m1, v1, m2, v2 in _cases():
        got = call_student(name, fn, m1.clone(), v1.clone(), m2.clone(), v2.clone())
        expected = reference_gaussian_kl(m1, v1, m2, v2)
        if not isinstance(got, torch.Tensor):
            raise ExerciseError(f"{name}: return a torch.Tensor of KL values (one per element), got {type(got).__name__}.")
        if got.numel() == 1 and expected.numel() > 1:
            raise ExerciseError(f"{name}: return one KL per element, a tensor of shape {tuple(expected.shape)}, not one "
                                "number: don't sum or average (the caller sums over the dimensions).")
        if tuple(got.shape) == tuple(expected.shape) and torch.isfinite(got).all():
            got64 = got.detach().double()
            close = torch.allclose(got64, expected, rtol=1e-4, atol=1e-6)
            if not close:
                for hint, formula in _kl_mistakes():
                    wrong = _elementwise(formula, m1, v1, m2, v2)
                    if torch.allclose(got64, wrong, rtol=1e-4, atol=1e-6) and not torch.allclose(
                            wrong, expected, rtol=1e-4, atol=1e-6):
                        raise ExerciseError(f"{name}: not quite ({label}): {hint}")
        check_tensor(name, got, expected, rtol=1e-4, atol=1e-6,
                     hint="write log N1(x) - log N2(x), then take its expectation under N1 with "
                          "E_1[(x - m1)^2] = v1 and E_1[(x - m2)^2] = v1 + (m1 - m2)^2.")
        if label == "a Gaussian and itself" and got.abs().max() > 1e-5:
            raise ExerciseError(f"{name}: the KL of a Gaussian with itself must be 0.")
    passed(name, "That is the closed form every term L_{t-1} of the bound (Ho et al. eq. 5) is made of; "
                 "ddpm_lib.diffusion.bound.gaussian_kl is the same.")
