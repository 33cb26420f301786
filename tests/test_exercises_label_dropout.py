"""Notebook 06's label-dropout checker: correct variants pass, each named mistake gets its hint, and an unanswered
exercise hands back a reference that drops at the right rate (checked here by counting, not by the checker)."""

import numpy as np
import pytest
import torch

from ddpm_lib.course.exercises import ExerciseError
from ddpm_lib.course.exercises.guidance import check_drop_labels, reference_drop_labels


def drop_where(labels, p, null_class, generator):
    drop = torch.rand(labels.shape, generator=generator) < p
    return torch.where(drop, torch.full_like(labels, null_class), labels)


def drop_bernoulli_clone(labels, p, null_class, generator):
    out = labels.clone()
    out[torch.bernoulli(torch.full(labels.shape, float(p)), generator=generator).bool()] = null_class
    return out


def drop_numpy(labels, p, null_class, generator):
    # a NumPy student seeding from the torch generator: still reproducible and Bernoulli(p) per label
    rng = np.random.default_rng(int(torch.randint(0, 2**31, (1,), generator=generator)))
    return torch.from_numpy(np.where(rng.random(len(labels)) < p, null_class, labels.numpy()))


@pytest.mark.parametrize("fn", [drop_where, drop_bernoulli_clone, drop_numpy, reference_drop_labels])
def test_correct_variants_pass_and_are_returned(fn, capsys):
    assert check_drop_labels(fn) is fn
    assert "Correct" in capsys.readouterr().out


def test_not_done_returns_a_reference_with_the_right_rate(capsys):
    def drop_labels_mine(labels, p, null_class, generator):
        raise NotImplementedError("your code here")

    ref = check_drop_labels(drop_labels_mine)
    assert capsys.readouterr().out.strip() == ("drop_labels_mine: not done yet: the rest of the notebook uses the "
                                               "reference solution")
    labels = torch.randint(0, 10, (20_000,), generator=torch.Generator().manual_seed(0))
    out = ref(labels, 0.1, 10, torch.Generator().manual_seed(1))
    rate = float((out == 10).float().mean())
    assert abs(rate - 0.1) < 5 * (0.1 * 0.9 / 20_000) ** 0.5
    assert torch.equal(out[out != 10], labels[out != 10])


def drop_in_place(labels, p, null_class, generator):
    labels[torch.rand(labels.shape, generator=generator) < p] = null_class
    return labels


def drop_to_zero(labels, p, null_class, generator):
    return torch.where(torch.rand(labels.shape, generator=generator) < p, torch.zeros_like(labels), labels)


def drop_to_minus_one(labels, p, null_class, generator):
    return torch.where(torch.rand(labels.shape, generator=generator) < p, torch.full_like(labels, -1), labels)


def keep_with_p(labels, p, null_class, generator):
    return torch.where(torch.rand(labels.shape, generator=generator) < p, labels, torch.full_like(labels, null_class))


def whole_batch(labels, p, null_class, generator):
    return torch.full_like(labels, null_class) if float(torch.rand(1, generator=generator)) < p else labels.clone()


def float_labels(labels, p, null_class, generator):
    return torch.where(torch.rand(labels.shape, generator=generator) < p, float(null_class), labels.float())


def no_generator(labels, p, null_class, generator):
    return torch.where(torch.rand(labels.shape) < p, torch.full_like(labels, null_class), labels)


def exactly_k(labels, p, null_class, generator):
    out = labels.clone()
    out[torch.randperm(len(labels), generator=generator)[: round(p * len(labels))]] = null_class
    return out


def wrong_rate(labels, p, null_class, generator):
    return drop_where(labels, p / 2, null_class, generator)


def returns_list(labels, p, null_class, generator):
    return drop_where(labels, p, null_class, generator).tolist()


@pytest.mark.parametrize("wrong, hint", [
    (drop_in_place, "in place"),
    (drop_to_zero, "airplane"),
    (drop_to_minus_one, "-1 is not a class"),
    (keep_with_p, "1 - p"),
    (whole_batch, "independently"),
    (float_labels, "integers"),
    (no_generator, "generator"),
    (exactly_k, "binomial"),
    (wrong_rate, "expected 30%"),
    (returns_list, "torch.Tensor"),
])
def test_named_mistakes(wrong, hint):
    with pytest.raises(ExerciseError, match=hint):
        check_drop_labels(wrong)
