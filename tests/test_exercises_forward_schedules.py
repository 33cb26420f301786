"""The checkers of notebooks 01 and 02 accept right answers and reject the usual wrong ones with the right hint.

The "student" functions here are written from the papers' formulas (Ho et al. 2020 eq. 4; Nichol &
Dhariwal 2021 eq. 17), not taken from ddpm_lib.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.forward import check_add_noise
from ddpm_lib.course.exercises.schedules import check_cosine_schedule, reference_cosine_betas

# ---------------------------------------------------------------------------------------------
# add_noise (notebook 01)


def add_noise_right(x0, noise, betas, t):
    ab = torch.cumprod(1 - betas, dim=0)[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def add_noise_right_other_style(x0, noise, betas, t):
    # numpy, float64, a loop: also right
    ab = np.cumprod(1 - betas.double().numpy())
    out = [math.sqrt(ab[ti]) * x0[i].double() + math.sqrt(1 - ab[ti]) * noise[i].double() for i, ti in enumerate(t.tolist())]
    return torch.stack(out).float()


def _abar(betas, t):
    return torch.cumprod(1 - betas, dim=0)[t].view(-1, 1, 1, 1)


def wrong_alpha_t(x0, noise, betas, t):
    a = (1 - betas)[t].view(-1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise


def wrong_no_sqrt(x0, noise, betas, t):
    ab = _abar(betas, t)
    return ab * x0 + (1 - ab) * noise


def wrong_no_sqrt_noise(x0, noise, betas, t):
    ab = _abar(betas, t)
    return ab.sqrt() * x0 + (1 - ab) * noise


def wrong_no_sqrt_x0(x0, noise, betas, t):
    ab = _abar(betas, t)
    return ab * x0 + (1 - ab).sqrt() * noise


def wrong_swapped(x0, noise, betas, t):
    ab = _abar(betas, t)
    return (1 - ab).sqrt() * x0 + ab.sqrt() * noise


def wrong_beta_noise(x0, noise, betas, t):
    ab = _abar(betas, t)
    return ab.sqrt() * x0 + betas[t].view(-1, 1, 1, 1).sqrt() * noise


def wrong_t_minus_1(x0, noise, betas, t):
    ab_prev = torch.cat([torch.ones(1, dtype=betas.dtype), torch.cumprod(1 - betas, 0)[:-1]])
    ab = ab_prev[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_cumprod_betas(x0, noise, betas, t):
    ab = torch.cumprod(betas, 0)[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_negative_index(x0, noise, betas, t):
    # alpha_bars[t - 1]: at t = 0 Python's negative indexing gives alpha_bars[-1], the last entry
    ab = torch.cumprod(1 - betas, 0)[t - 1].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_t_plus_1(x0, noise, betas, t):
    ab = torch.cumprod(1 - betas, 0)[(t + 1).clamp(max=len(betas) - 1)].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_sum(x0, noise, betas, t):
    ab = (1 - torch.cumsum(betas, 0)).clamp(min=0)[t].view(-1, 1, 1, 1)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_first_t_only(x0, noise, betas, t):
    ab = torch.cumprod(1 - betas, 0)[t[0]]
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_broadcast(x0, noise, betas, t):
    ab = torch.cumprod(1 - betas, 0)[t]  # shape (B,): broadcasts against the last (width) axis
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_broadcast_2d(x0, noise, betas, t):
    ab = torch.cumprod(1 - betas, 0)[t][:, None]  # (B, 1): not enough singleton axes
    return ab.sqrt() * x0 + (1 - ab).sqrt() * noise


def wrong_fresh_noise(x0, noise, betas, t):
    ab = _abar(betas, t)
    return ab.sqrt() * x0 + (1 - ab).sqrt() * torch.randn_like(x0)


def wrong_in_place(x0, noise, betas, t):
    ab = _abar(betas, t)
    x0.mul_(ab.sqrt())
    return x0 + (1 - ab).sqrt() * noise


def not_written(x0, noise, betas, t):
    raise NotImplementedError("your code here")


def test_add_noise_checker_accepts_right_answers(capsys):
    check_add_noise(add_noise_right)
    check_add_noise(add_noise_right_other_style)
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize(
    "fn, hint",
    [
        (wrong_alpha_t, "cumulative product"),
        (wrong_no_sqrt, "need square roots"),
        (wrong_no_sqrt_noise, "noise term is missing its square root"),
        (wrong_no_sqrt_x0, "x0 term is missing its square root"),
        (wrong_swapped, "swapped"),
        (wrong_beta_noise, "sqrt(beta_t)"),
        (wrong_t_minus_1, "includes beta_t itself"),
        (wrong_negative_index, "alpha_bars[-1], the LAST entry"),
        (wrong_cumprod_betas, "not of beta"),
        (wrong_t_plus_1, "alpha_bar_{t+1}"),
        (wrong_sum, "is a product, not 1 - (sum of betas)"),
        (wrong_first_t_only, "timestep of the first one"),
        (wrong_broadcast, "broadcasting problem"),
        (wrong_broadcast_2d, "broadcasting problem"),
        (wrong_fresh_noise, "do not draw fresh noise"),
        (wrong_in_place, "changed its inputs in place"),
    ],
)
def test_add_noise_checker_names_the_mistake(fn, hint):
    with pytest.raises(ExerciseError) as info:
        check_add_noise(fn)
    assert hint in str(info.value), str(info.value)


def test_add_noise_checker_rejects_unknown_mistake_with_general_hint():
    def slightly_off(x0, noise, betas, t):
        return add_noise_right(x0, noise, betas, t) * 1.01

    with pytest.raises(ExerciseError, match="differ from the reference") as info:
        check_add_noise(slightly_off)
    assert "cumprod" in str(info.value)


def test_add_noise_checker_rejects_wrong_type():
    with pytest.raises(ExerciseError, match="expected a torch.Tensor"):
        check_add_noise(lambda x0, noise, betas, t: add_noise_right(x0, noise, betas, t).numpy())


# ---------------------------------------------------------------------------------------------
# cosine schedule (notebook 02)


def _f(tau, s):
    return torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2


def cosine_right(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    ab = _f(tau, s) / _f(tau[:1], s)
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def cosine_right_numpy_loop(num_timesteps, s=0.008, max_beta=0.999):
    out = []
    for t in range(num_timesteps):
        a = math.cos((t / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2
        b = math.cos(((t + 1) / num_timesteps + s) / (1 + s) * math.pi / 2) ** 2
        out.append(min(1 - b / a, max_beta))
    return np.array(out, dtype=np.float32)


def cosine_no_clip(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    ab = _f(tau, s)
    return 1 - ab[1:] / ab[:-1]


def cosine_returns_alpha_bars(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(1, num_timesteps + 1, dtype=torch.float64) / num_timesteps
    return _f(tau, s) / _f(torch.zeros(1, dtype=torch.float64), s)


def cosine_returns_alphas(num_timesteps, s=0.008, max_beta=0.999):
    return 1 - cosine_right(num_timesteps, s, max_beta)


def cosine_no_square(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    ab = torch.cos((tau + s) / (1 + s) * math.pi / 2)
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def cosine_no_offset(num_timesteps, s=0.008, max_beta=0.999):
    return cosine_right(num_timesteps, 0.0, max_beta)


def cosine_no_denominator(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    ab = torch.cos((tau + s) * math.pi / 2) ** 2
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def cosine_linspace_grid(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.linspace(0, 1, num_timesteps, dtype=torch.float64)  # T points: spacing 1/(T-1)
    ab = _f(torch.cat([tau, tau[-1:] + (tau[1:2] - tau[:1])]), s)
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def cosine_hard_coded_s(num_timesteps, s=0.008, max_beta=0.999):
    return cosine_right(num_timesteps, 0.008, max_beta)


def cosine_hard_coded_clip(num_timesteps, s=0.008, max_beta=0.999):
    return cosine_right(num_timesteps, s, 0.999)


def cosine_difference(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    ab = _f(tau, s)
    return (ab[:-1] - ab[1:]).clamp(max=max_beta)


def cosine_too_many(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(num_timesteps + 2, dtype=torch.float64) / num_timesteps
    ab = _f(tau.clamp(max=1.0), s)
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def cosine_pi_not_half_pi(num_timesteps, s=0.008, max_beta=0.999):
    tau = torch.arange(num_timesteps + 1, dtype=torch.float64) / num_timesteps
    ab = torch.cos((tau + s) / (1 + s) * math.pi) ** 2  # the angle runs to pi: cos^2 comes back up
    return (1 - ab[1:] / ab[:-1]).clamp(max=max_beta)


def cosine_lower_clip(num_timesteps, s=0.008, max_beta=0.999):
    return cosine_right(num_timesteps, s, max_beta).clamp(min=1e-4)


def cosine_upside_down_some_negative(num_timesteps, s=0.008, max_beta=0.999):
    # an unnamed slip whose betas go negative: the checker must still say so
    b = cosine_right(num_timesteps, s, max_beta).clone()
    b[num_timesteps // 2:] *= -1
    return b


def cosine_right_float32(num_timesteps, s=0.008, max_beta=0.999):
    # the natural first attempt: torch's default float32 (loses ~3e-5 in the last betas at T = 1000)
    tau = torch.arange(num_timesteps + 1) / num_timesteps
    f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
    return torch.clamp(1 - f[1:] / f[:-1], max=max_beta)


def test_cosine_checker_accepts_right_answers(capsys):
    check_cosine_schedule(cosine_right)
    assert "float32" not in capsys.readouterr().out
    check_cosine_schedule(cosine_right_numpy_loop)  # float32 numpy array
    check_cosine_schedule(cosine_right_float32)
    out = capsys.readouterr().out
    assert out.count("Correct") == 2 and "You computed in float32" in out


def test_cosine_checker_float32_tolerance_still_catches_the_clip():
    def float32_no_clip(num_timesteps, s=0.008, max_beta=0.999):
        tau = torch.arange(num_timesteps + 1) / num_timesteps
        f = torch.cos((tau + s) / (1 + s) * math.pi / 2) ** 2
        return 1 - f[1:] / f[:-1]

    with pytest.raises(ExerciseError, match="not clipped"):
        check_cosine_schedule(float32_no_clip)


@pytest.mark.parametrize(
    "fn, hint",
    [
        (cosine_no_clip, "not clipped"),
        (cosine_returns_alpha_bars, "asks for the betas"),
        (cosine_returns_alphas, "alpha_t = 1 - beta_t"),
        (cosine_no_square, "*square* of the cosine"),
        (cosine_no_offset, "offset s is missing"),
        (cosine_no_denominator, "(1 + s) denominator is missing"),
        (cosine_linspace_grid, "off by one in the time grid"),
        (cosine_hard_coded_s, "use the argument `s`"),
        (cosine_hard_coded_clip, "clip at the argument `max_beta`"),
        (cosine_difference, "is a ratio, not a difference"),
        (cosine_too_many, "T + 1 values"),
        (cosine_pi_not_half_pi, "pi instead of pi / 2"),
        (cosine_lower_clip, "do not clip from below"),
        (cosine_upside_down_some_negative, "betas are negative"),
    ],
)
def test_cosine_checker_names_the_mistake(fn, hint):
    with pytest.raises(ExerciseError) as info:
        check_cosine_schedule(fn)
    assert hint in str(info.value), str(info.value)


def test_cosine_checker_rejects_unknown_mistake_and_wrong_type():
    with pytest.raises(ExerciseError, match="differ from the reference"):
        check_cosine_schedule(lambda T, s=0.008, max_beta=0.999: cosine_right(T, s, max_beta) * 1.01)
    with pytest.raises(ExerciseError, match="return a 1-D torch.Tensor"):
        check_cosine_schedule(lambda T, s=0.008, max_beta=0.999: "betas")


def test_cosine_reference_matches_the_papers_numbers():
    """Nichol & Dhariwal chose s so that sqrt(beta_1) is slightly below one pixel bin 1/127.5 (sec. 3.2); the last
    beta is clipped at 0.999 because alpha_bar(1) = cos^2(pi/2) = 0."""
    b = reference_cosine_betas(1000)
    assert b.shape == (1000,) and b[-1] == 0.999 and (b > 0).all()
    assert 0.8 / 127.5 < b[0].sqrt() < 1 / 127.5
    ab = torch.cumprod(1 - b, 0)
    tau = torch.arange(1, 1000, dtype=torch.float64) / 1000
    closed = torch.cos((tau + 0.008) / 1.008 * math.pi / 2) ** 2 / math.cos(0.008 / 1.008 * math.pi / 2) ** 2
    assert torch.allclose(ab[:-1], closed, rtol=1e-9)  # the product telescopes back to f(t)/f(0)
