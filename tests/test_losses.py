"""training_loss against closed forms computed here in float64 NumPy (not with ddpm_lib.diffusion.forward)."""

import numpy as np
import pytest
import torch

from ddpm_lib.diffusion.losses import drop_labels, min_snr_weights, training_loss
from ddpm_lib.diffusion.schedules import make_schedule

T = 100


def alpha_bars_np(T=T):
    # DDPM linear schedule rescaled to T steps, computed independently of ddpm_lib
    scale = 1000 / T
    betas = np.linspace(scale * 1e-4, scale * 0.02, T, dtype=np.float64)
    return np.cumprod(1 - betas)


@pytest.fixture
def schedule():
    return make_schedule("linear", T)


class Recorder(torch.nn.Module):
    """Returns a fixed function of its input and remembers what it was given."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.calls = []

    def forward(self, x, t, labels=None):
        self.calls.append((x.detach().clone(), t.clone(), None if labels is None else labels.clone()))
        return self.fn(x, t)


def test_zero_model_loss_is_about_one(schedule):
    # E||eps||^2 / D = 1: the loss of an untrained (zero-output) eps-model, by Monte Carlo
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(64, 1, 32, 32, generator=g) * 2 - 1
    model = Recorder(lambda x, t: torch.zeros_like(x))
    loss = training_loss(model, schedule, x0, generator=g)
    # std of the mean of 65536 chi^2_1 values is sqrt(2/65536) ~ 0.0055
    assert loss.ndim == 0 and abs(loss.item() - 1.0) < 0.03


def test_oracle_model_has_zero_loss(schedule):
    g = torch.Generator().manual_seed(1)
    x0 = torch.rand(16, 3, 8, 8, generator=g) * 2 - 1
    abar = torch.from_numpy(alpha_bars_np())

    def oracle(x_t, t):  # recovers the true noise from x_t, knowing x0 (closure), in float64
        a = abar[t].reshape(-1, 1, 1, 1)
        return ((x_t.double() - a.sqrt() * x0.double()) / (1 - a).sqrt()).float()

    loss = training_loss(Recorder(oracle), schedule, x0, generator=g)
    assert loss.item() < 1e-6


@pytest.mark.parametrize("prediction_type", ["epsilon", "v", "x0"])
@pytest.mark.parametrize("loss_type", ["l2", "l1", "huber"])
def test_targets_match_closed_forms(schedule, prediction_type, loss_type):
    g = torch.Generator().manual_seed(2)
    x0 = (torch.rand(8, 1, 4, 4, generator=g) * 2 - 1).double()
    noise = torch.randn(8, 1, 4, 4, generator=g).double()
    t = torch.tensor([0, 5, 20, 40, 60, 80, 98, 99])
    out = torch.randn(8, 1, 4, 4, generator=g)
    model = Recorder(lambda x, tt: out)
    per = training_loss(model, schedule, x0.float(), t=t, noise=noise.float(), prediction_type=prediction_type,
                        loss_type=loss_type, reduction="none")
    a = torch.from_numpy(alpha_bars_np())[t].reshape(-1, 1, 1, 1)
    x_t = a.sqrt() * x0 + (1 - a).sqrt() * noise
    torch.testing.assert_close(model.calls[0][0].double(), x_t, atol=1e-6, rtol=0)
    target = {"epsilon": noise, "x0": x0, "v": a.sqrt() * noise - (1 - a).sqrt() * x0}[prediction_type]
    d = out.double() - target
    if loss_type == "l2":
        e = d**2
    elif loss_type == "l1":
        e = d.abs()
    else:
        e = torch.where(d.abs() < 1, 0.5 * d**2, d.abs() - 0.5)
    torch.testing.assert_close(per.double(), e.reshape(8, -1).mean(1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v", "x0"])
def test_min_snr_weights_formula(schedule, prediction_type):
    gamma = 5.0
    t = torch.arange(T)
    ab = alpha_bars_np()
    snr = ab / (1 - ab)
    expected = {"epsilon": np.minimum(snr, gamma) / snr, "v": np.minimum(snr, gamma) / (snr + 1),
                "x0": np.minimum(snr, gamma)}[prediction_type]
    w = min_snr_weights(schedule, t, gamma, prediction_type)
    np.testing.assert_allclose(w.numpy(), expected, rtol=2e-4)
    # the weight is clipped at high SNR (small t) and 1 for epsilon at low SNR
    if prediction_type == "epsilon":
        assert w[0] < 0.01 and w[-1] == pytest.approx(1.0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v"])
def test_min_snr_is_an_x0_loss_weighted_by_min_snr_gamma(schedule, prediction_type):
    # Hang et al.: whatever the target, the weighted loss equals min(SNR, gamma) * ||x0 - x0_hat||^2
    gamma = 5.0
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(6, 1, 4, 4, generator=g) * 2 - 1
    noise = torch.randn(6, 1, 4, 4, generator=g)
    t = torch.tensor([0, 3, 10, 30, 70, 99])
    out = torch.randn(6, 1, 4, 4, generator=g)
    per = training_loss(Recorder(lambda x, tt: out), schedule, x0, t=t, noise=noise, prediction_type=prediction_type,
                        min_snr_gamma=gamma, reduction="none").double()
    a = torch.from_numpy(alpha_bars_np())[t].reshape(-1, 1, 1, 1)
    x_t = a.sqrt() * x0.double() + (1 - a).sqrt() * noise.double()
    o = out.double()
    x0_hat = (x_t - (1 - a).sqrt() * o) / a.sqrt() if prediction_type == "epsilon" else a.sqrt() * x_t - (1 - a).sqrt() * o
    snr = (a / (1 - a)).reshape(-1)
    expected = torch.clamp(snr, max=gamma) * ((x0.double() - x0_hat) ** 2).reshape(6, -1).mean(1)
    torch.testing.assert_close(per, expected, rtol=1e-3, atol=1e-6)


def test_uniform_timesteps(schedule):
    g = torch.Generator().manual_seed(4)
    model = Recorder(lambda x, t: torch.zeros_like(x))
    x0 = torch.zeros(2000, 1, 1, 1)
    training_loss(model, schedule, x0, generator=g)
    t = model.calls[0][1]
    assert t.min() >= 0 and t.max() <= T - 1
    counts = torch.bincount(t, minlength=T).double()
    chi2 = ((counts - 20) ** 2 / 20).sum().item()  # 99 dof: mean 99, sd 14
    assert chi2 < 99 + 5 * 14


def test_label_dropout_rate_and_null_class(schedule):
    g = torch.Generator().manual_seed(5)
    labels = torch.randint(0, 10, (20000,), generator=g)
    dropped = drop_labels(labels, 0.3, 10, g)
    frac = (dropped == 10).double().mean().item()
    assert abs(frac - 0.3) < 0.015  # sd = sqrt(.3*.7/20000) = 0.0032
    kept = dropped != 10
    assert torch.equal(dropped[kept], labels[kept])
    assert torch.equal(drop_labels(labels, 0.0, 10, g), labels)
    assert (drop_labels(labels, 1.0, 10, g) == 10).all()

    model = Recorder(lambda x, t: torch.zeros_like(x))
    model.null_class = 10  # taken from the model when null_label is not given
    training_loss(model, schedule, torch.zeros(4000, 1, 1, 1), labels=labels[:4000], label_dropout=0.5, generator=g)
    assert abs((model.calls[0][2] == 10).double().mean().item() - 0.5) < 0.03
    with pytest.raises(ValueError, match="null"):
        training_loss(Recorder(lambda x, t: x), schedule, torch.zeros(4, 1, 1, 1), labels=labels[:4], label_dropout=0.1)


def test_forward_process_stays_fp32_under_autocast(schedule):
    g = torch.Generator().manual_seed(6)
    x0 = torch.rand(4, 1, 8, 8, generator=g)
    model = Recorder(lambda x, t: (x * 0.5).to(torch.bfloat16))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = training_loss(model, schedule, x0, generator=torch.Generator().manual_seed(0))
    x_t = model.calls[0][0]
    assert x_t.dtype == torch.float32 and loss.dtype == torch.float32
    ref = training_loss(Recorder(lambda x, t: x * 0.5), schedule, x0, generator=torch.Generator().manual_seed(0))
    assert abs(loss.item() - ref.item()) < 0.02  # only the network output was rounded to bf16


def test_bad_arguments(schedule):
    m = Recorder(lambda x, t: x)
    with pytest.raises(ValueError, match="prediction_type"):
        training_loss(m, schedule, torch.zeros(2, 1, 4, 4), prediction_type="eps")
    with pytest.raises(ValueError, match="loss_type"):
        training_loss(m, schedule, torch.zeros(2, 1, 4, 4), loss_type="mse")
    with pytest.raises(ValueError, match="min_snr_gamma"):
        training_loss(m, schedule, torch.zeros(2, 1, 4, 4), min_snr_gamma=-1)
    with pytest.raises(ValueError, match="shape"):
        training_loss(Recorder(lambda x, t: x[:, :, :2]), schedule, torch.zeros(2, 1, 4, 4))
