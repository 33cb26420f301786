"""The FID feature classifier: learns a separable stand-in quickly; save/load round trip."""

import pytest
import torch

from ddpm_lib.evaluation.classifier import (
    ClassifierConfig,
    FeatureClassifier,
    accuracy,
    load_classifier,
    save_classifier,
    train_classifier,
)


def _quadrant_images(n, generator, channels=1):
    """4 classes: a bright square in quadrant k of a noisy 16x16 image."""
    y = torch.randint(0, 4, (n,), generator=generator)
    x = torch.randn(n, channels, 16, 16, generator=generator) * 0.3 - 0.5
    for k in range(4):
        r, c = divmod(k, 2)
        x[y == k, :, r * 8 + 2 : r * 8 + 6, c * 8 + 2 : c * 8 + 6] += 1.5
    return x.clamp(-1, 1), y


def test_trains_above_chance_quickly():
    g = torch.Generator().manual_seed(0)
    train, test = _quadrant_images(256, g), _quadrant_images(128, g)
    torch.manual_seed(0)
    model = FeatureClassifier(in_channels=1, num_classes=4, width=4, feature_dim=16, image_size=16)
    assert accuracy(model, test) < 0.6  # untrained: near chance (0.25)
    hist = train_classifier(model, train, steps=40, batch_size=32, lr=5e-3, generator=g)
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert accuracy(model, test) > 0.9
    f = model.features(test[0][:5])
    assert f.shape == (5, 16) and model.logits(test[0][:5]).shape == (5, 4)


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(1)
    model = FeatureClassifier(ClassifierConfig(in_channels=3, num_classes=10, width=4, feature_dim=8))
    model.eval()
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    path = save_classifier(model, tmp_path / "sub" / "clf.pt", dataset="cifar10", test_accuracy=0.5)
    assert not list((tmp_path / "sub").glob("*.tmp"))
    # weights_only loading works: the file holds plain data only
    torch.load(path, weights_only=True)
    loaded = load_classifier(path)
    assert loaded.meta == {"dataset": "cifar10", "test_accuracy": 0.5}
    assert loaded.config == model.config
    with torch.no_grad():
        torch.testing.assert_close(loaded.features(x), model.features(x))
        torch.testing.assert_close(loaded.logits(x), model.logits(x))


def test_bad_inputs_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="width"):
        ClassifierConfig(width=0)
    with pytest.raises(ValueError, match="multiple of 8"):
        ClassifierConfig(image_size=20)
    model = FeatureClassifier(in_channels=1, num_classes=4, width=4)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        model.features(torch.zeros(2, 3, 32, 32))
    with pytest.raises(ValueError, match="labels must lie"):
        train_classifier(model, (torch.zeros(4, 1, 16, 16), torch.tensor([0, 1, 2, 9])), steps=1)
    torch.save({"format": "something else"}, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="not a feature-classifier file"):
        load_classifier(tmp_path / "x.pt")
