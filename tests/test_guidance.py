"""Class conditioning and classifier-free guidance, checked on models whose outputs are known.

CFG (Ho & Salimans 2022, eq. 6): out = out(x, null) + w (out(x, y) - out(x, null)).
"""

import pytest
import torch
from torch import nn

from ddpm_lib.diffusion.losses import training_loss
from ddpm_lib.diffusion.samplers import DDIMSampler, guided_output, sample
from ddpm_lib.diffusion.schedules import make_schedule
from ddpm_lib.models.unet import UNet

NULL = 3


class LabelConstant(nn.Module):
    """Predicts, for every pixel, a constant that depends only on the label (null class = 3)."""

    null_class = NULL

    def __init__(self, values=(0.3, -0.5, 0.8, 0.1)):
        super().__init__()
        self.register_buffer("values", torch.tensor(values))
        self.calls = []

    def forward(self, x, t, labels=None):
        if labels is None:
            labels = torch.full((x.shape[0],), NULL, dtype=torch.long)
        self.calls.append(labels.clone())
        return self.values[labels].view(-1, *([1] * (x.ndim - 1))).expand_as(x).clone()


class Constant(nn.Module):
    """Unconditional: predicts the given per-sample constants (B,) everywhere."""

    def __init__(self, per_sample):
        super().__init__()
        self.register_buffer("c", torch.as_tensor(per_sample, dtype=torch.float32))

    def forward(self, x, t, labels=None):
        return self.c.view(-1, *([1] * (x.ndim - 1))).expand_as(x).clone()


@pytest.fixture(scope="module")
def schedule():
    return make_schedule("linear", 100)


@pytest.mark.parametrize("w", [0.0, 1.0, 2.5, 7.0])
def test_guided_output_is_the_cfg_formula(w):
    model = LabelConstant()
    x = torch.zeros(3, 1, 2, 2)
    t = torch.full((3,), 10, dtype=torch.long)
    labels = torch.tensor([0, 1, 2])
    out = guided_output(model, x, t, labels=labels, guidance_scale=w)
    v = [0.3, -0.5, 0.8]
    null = 0.1
    expected = torch.tensor([null + w * (vi - null) for vi in v]).view(3, 1, 1, 1).expand_as(x)
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_guidance_through_sample_and_one_step(schedule, w):
    """sample(model, labels, w) equals sample of an unconditional model predicting the CFG mix."""
    labels = torch.tensor([0, 1, 2, 0])
    v = torch.tensor([0.3, -0.5, 0.8, 0.1])
    mix = v[NULL] + w * (v[labels] - v[NULL])  # computed by hand, independent of the library
    kw = dict(sampler="ddim", num_steps=10, progress=False)
    guided = sample(LabelConstant(), schedule, (4, 1, 4, 4), labels=labels, guidance_scale=w,
                    generator=torch.Generator().manual_seed(0), **kw)
    reference = sample(Constant(mix), schedule, (4, 1, 4, 4), generator=torch.Generator().manual_seed(0), **kw)
    torch.testing.assert_close(guided, reference)
    # one step of the sampler, by hand
    sampler = DDIMSampler(schedule, num_steps=10)
    t = int(sampler.timesteps[0])
    x = torch.randn(4, 1, 4, 4, generator=torch.Generator().manual_seed(1))
    out = guided_output(LabelConstant(), x, torch.full((4,), t), labels=labels, guidance_scale=w)
    torch.testing.assert_close(sampler.step(out, t, x), sampler.step(mix.view(4, 1, 1, 1).expand_as(x), t, x))


def test_guidance_is_affine_in_w_for_a_real_unet():
    torch.manual_seed(0)
    model = UNet.from_preset("tiny", num_classes=3)
    with torch.no_grad():  # the output conv starts at zero: perturb it so the output depends on labels
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.eval()
    x = torch.randn(2, 1, 16, 16)
    t = torch.tensor([5, 40])
    y = torch.tensor([0, 2])
    null = torch.full((2,), model.null_class)
    with torch.no_grad():
        cond, uncond = model(x, t, labels=y), model(x, t, labels=null)
        assert not torch.allclose(cond, uncond)
        for w in (0.0, 1.0, 4.0):
            got = guided_output(model, x, t, labels=y, guidance_scale=w)
            torch.testing.assert_close(got, uncond + w * (cond - uncond), rtol=1e-4, atol=1e-5)


def test_conditional_model_trained_with_label_dropout_samples_unconditionally(schedule):
    torch.manual_seed(0)
    model = UNet.from_preset("tiny", num_classes=3, image_size=16)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(6, 1, 16, 16) * 2 - 1
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    for _ in range(2):
        loss = training_loss(model, schedule, x0, labels=y, label_dropout=0.3, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    kw = dict(sampler="ddim", num_steps=4, progress=False)
    # labels=None means the null class for every sample: the same as guidance scale 0 with labels
    a = sample(model, schedule, (2, 1, 16, 16), generator=torch.Generator().manual_seed(3), **kw)
    b = sample(model, schedule, (2, 1, 16, 16), labels=torch.tensor([0, 2]), guidance_scale=0.0,
               generator=torch.Generator().manual_seed(3), **kw)
    assert a.shape == (2, 1, 16, 16) and torch.isfinite(a).all()
    torch.testing.assert_close(a, b)
    c = sample(model, schedule, (2, 1, 16, 16), labels=torch.tensor([0, 2]), guidance_scale=3.0,
               generator=torch.Generator().manual_seed(3), **kw)
    assert not torch.allclose(a, c)


def test_guidance_errors_are_clear(schedule):
    x, t = torch.zeros(2, 1, 2, 2), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="labels"):
        guided_output(LabelConstant(), x, t, labels=None, guidance_scale=2.0)
    with pytest.raises(ValueError, match="null"):
        guided_output(Constant([0.0, 0.0]), x, t, labels=torch.tensor([0, 1]), guidance_scale=2.0)


class LabelRecorder(nn.Module):
    """A trivially cheap 'denoiser' that records the labels the Trainer feeds it."""

    null_class = 10

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(()))
        self.seen = []

    def forward(self, x, t, labels=None):
        self.seen.append(labels.detach().cpu().clone())
        return x * self.scale


def test_trainer_label_dropout_hits_the_null_class_at_the_configured_rate(tmp_path):
    from torch.utils.data import TensorDataset

    from ddpm_lib.training.trainer import TrainConfig, Trainer

    g = torch.Generator().manual_seed(0)
    ds = TensorDataset(torch.rand(128, 1, 8, 8, generator=g) * 2 - 1, torch.arange(128) % 10)
    cfg = TrainConfig(preset="tiny", class_conditional=True, label_dropout=0.25, num_timesteps=50, batch_size=64,
                      steps=12, warmup_steps=1, checkpoint_every=0, log_every=0, tensorboard=False, progress=False,
                      out_dir=str(tmp_path / "run"), device="cpu")
    model = LabelRecorder()
    Trainer(cfg, model=model, dataset=ds).fit()
    seen = torch.cat(model.seen)
    assert len(seen) == 12 * 64
    rate = (seen == 10).float().mean().item()
    # binomial std for 768 draws at p = 0.25 is 0.016: allow 4 std
    assert abs(rate - 0.25) < 0.065, rate
    assert seen[seen != 10].max() <= 9 and (seen[seen != 10] >= 0).all()
