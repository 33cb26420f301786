"""Notebook 06's guided-prediction checker: one batch of 2B and two separate passes both pass; the named mistakes get
their hints; the reference handed back agrees with ddpm_lib.diffusion.samplers.guided_output on a conditional UNet."""

import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.guidance import check_guided_output
from ddpm_lib.diffusion.samplers import guided_output
from ddpm_lib.models.unet import UNet


def one_batch(model, x_t, t, labels, w, null=None, swap=False, double_t=True):
    null_labels = torch.full_like(labels, model.null_class if null is None else null)
    out = model(torch.cat([x_t, x_t]), torch.cat([t, t]) if double_t else t, labels=torch.cat([labels, null_labels]))
    cond, uncond = out.chunk(2)
    if swap:
        cond, uncond = uncond, cond
    return uncond + w * (cond - uncond)


def two_passes(model, x_t, t, labels, w):
    cond = model(x_t, t, labels=labels)
    uncond = model(x_t, t, labels=torch.full_like(labels, model.null_class))
    return w * cond + (1 - w) * uncond


def true_labels_twice(model, x_t, t, labels, w):
    cond = model(x_t, t, labels=labels)
    return cond + w * (cond - cond)


def in_place(model, x_t, t, labels, w):
    cond = model(x_t, t, labels=labels.clone())
    labels.fill_(model.null_class)
    uncond = model(x_t, t, labels=labels)
    return uncond + w * (cond - uncond)


@pytest.mark.parametrize("fn", [one_batch, two_passes])
def test_correct_variants_pass(fn, capsys):
    assert check_guided_output(fn) is fn
    assert "Correct" in capsys.readouterr().out


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, x, t, y, w: one_batch(m, x, t, y, w, swap=True), "swapped"),
    (lambda m, x, t, y, w: one_batch(m, x, t, y, w, null=0), "not class 0"),
    (true_labels_twice, "guidance does nothing"),
    (in_place, "in place"),
    (lambda m, x, t, y, w: one_batch(m, x, t, y, w, double_t=False), r"double t and the labels too"),
])
def test_named_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_guided_output(wrong)


def test_reference_agrees_with_the_library(capsys):
    def guided_output_mine(model, x_t, t, labels, w):
        raise NotImplementedError("your code here")

    ref = check_guided_output(guided_output_mine)
    assert "not done yet" in capsys.readouterr().out
    torch.manual_seed(0)
    unet = UNet.from_preset("tiny", in_channels=3, out_channels=3, num_classes=10).eval()
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x, t, y = torch.randn(2, 3, 32, 32), torch.tensor([3, 50]), torch.tensor([1, 7])
        for w in (0.0, 1.0, 3.0):
            torch.testing.assert_close(ref(unet, x, t, y, w), guided_output(unet, x, t, labels=y, guidance_scale=w),
                                       rtol=1e-4, atol=1e-5)
