"""`evaluate` end to end on a FAST-sized run: tiny conditional model, tiny classifier, a few samples."""

import dataclasses
import json

import pytest
import torch

import ddpm_lib.settings as settings_mod
from ddpm_lib.classifier import FeatureClassifier, save_classifier, train_classifier
from ddpm_lib.evaluate import balanced_labels, metrics_from_features
from ddpm_lib.features import InceptionWeightsNotFoundError


@pytest.fixture()
def fast_settings(tmp_path, monkeypatch):
    s = dataclasses.replace(
        settings_mod.settings, fast=True, data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
        device=torch.device("cpu"),
    )
    monkeypatch.setattr(settings_mod, "settings", s)
    return s


def _tiny_run(tmp_path):
    from ddpm_lib.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        dataset="cifar10", preset="tiny", unet={"in_channels": 3, "out_channels": 3, "image_size": 16},
        class_conditional=True, label_dropout=0.2, steps=1, batch_size=4, num_timesteps=50, max_items=16,
        warmup_steps=1, log_every=1, checkpoint_every=0, tensorboard=False, progress=False,
        out_dir=str(tmp_path / "run"), device="cpu",
    )
    Trainer(cfg).fit()
    return tmp_path / "run" / "final.pt"


def test_evaluate_end_to_end(tmp_path, fast_settings, capsys):
    from ddpm_lib.evaluate import main

    ckpt = _tiny_run(tmp_path)
    clf = FeatureClassifier(in_channels=3, num_classes=10, width=4, feature_dim=8)
    g = torch.Generator().manual_seed(0)
    train_classifier(clf, (torch.rand(16, 3, 16, 16) * 2 - 1, torch.arange(16) % 10), steps=2, batch_size=8, generator=g)
    clf_path = save_classifier(clf, tmp_path / "clf.pt", dataset="cifar10")
    out = tmp_path / "report.json"
    main([
        "--ckpt", str(ckpt), "--num", "8", "--sampler", "ddim", "--steps", "2", "--batch", "8",
        "--classifier", str(clf_path), "--guidance", "2", "--max-real", "24", "--out", str(out),
    ])
    printed = capsys.readouterr().out
    assert "FID" in printed and "KID" in printed and "IS" in printed
    report = json.loads(out.read_text())
    assert report["num_samples"] == 8 and report["num_real"] == 24
    assert report["settings"]["guidance"] == 2.0 and report["settings"]["steps"] == 2
    m = report["metrics"]
    assert m["fid"] > 0 and 1.0 <= m["is"] <= 10.0
    assert report["seconds"]["total"] >= report["seconds"]["sampling"] > 0
    assert report["comparable_to_published"] is False
    # the extractor is checked before any sampling: a missing Inception file fails at once
    with pytest.raises(InceptionWeightsNotFoundError, match="does not exist"):
        main(["--ckpt", str(ckpt), "--num", "2", "--features", "inception", "--inception-weights", str(tmp_path / "no.pth")])


def test_metrics_from_features_and_labels():
    assert balanced_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 4, generator=g)
    same = metrics_from_features(torch.randn(200, 4, generator=g), real, kid_subsets=10, kid_subset_size=100)
    shifted = metrics_from_features(torch.randn(200, 4, generator=g) + 2, real, kid_subsets=10, kid_subset_size=100)
    assert same["fid"] < 0.5 and 10 < shifted["fid"] < 22  # a shift of 2 in 4 dims: FD = 16 + sampling noise
    assert abs(same["kid"]) < 0.05 < shifted["kid"]
