"""`evaluate` end to end on a FAST-sized run: tiny conditional model, tiny classifier, a few samples."""

import dataclasses
import json

import pytest
import torch

import ddpm_lib.settings as settings_mod
from ddpm_lib.evaluation.classifier import FeatureClassifier, save_classifier, train_classifier
from ddpm_lib.evaluation.evaluate import balanced_labels, metrics_from_features
from ddpm_lib.evaluation.features import InceptionWeightsNotFoundError


@pytest.fixture()
def fast_settings(tmp_path, monkeypatch):
    s = dataclasses.replace(
        settings_mod.settings, mode="fast", data_dir=tmp_path / "data", runs_dir=tmp_path / "runs",
        device=torch.device("cpu"),
    )
    monkeypatch.setattr(settings_mod, "settings", s)
    return s


def _tiny_run(tmp_path):
    from ddpm_lib.training.trainer import TrainConfig, Trainer

    cfg = TrainConfig(
        dataset="cifar10", preset="tiny", unet={"in_channels": 3, "out_channels": 3, "image_size": 16},
        class_conditional=True, label_dropout=0.2, steps=1, batch_size=4, num_timesteps=50, max_items=16,
        warmup_steps=1, log_every=1, checkpoint_every=0, tensorboard=False, progress=False,
        out_dir=str(tmp_path / "run"), device="cpu",
    )
    Trainer(cfg).fit()
    return tmp_path / "run" / "final.pt"


def test_cli_evaluate_and_guided_sample_end_to_end(tmp_path, fast_settings, capsys):
    from ddpm_lib.cli import main as cli_main
    from ddpm_lib.diffusion.samplers import sample
    from ddpm_lib.loading import load_model
    from ddpm_lib.viz import to_uint8

    ckpt = _tiny_run(tmp_path)
    clf = FeatureClassifier(in_channels=3, num_classes=10, width=4, feature_dim=8)
    g = torch.Generator().manual_seed(0)
    train_classifier(clf, (torch.rand(16, 3, 16, 16) * 2 - 1, torch.arange(16) % 10), steps=2, batch_size=8, generator=g)
    clf_path = save_classifier(clf, tmp_path / "clf.pt", dataset="cifar10")
    out = tmp_path / "report.json"
    rc = cli_main([
        "evaluate", "--ckpt", str(ckpt), "--num", "8", "--sampler", "ddim", "--steps", "2", "--batch", "8",
        "--classifier", str(clf_path), "--guidance", "2", "--max-real", "24", "--out", str(out),
        "--device", "cpu",
    ])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "FID" in printed and "KID" in printed and "IS" in printed
    report = json.loads(out.read_text())
    assert report["num_samples"] == 8 and report["num_real"] == 24
    assert report["settings"]["guidance"] == 2.0 and report["settings"]["steps"] == 2
    m = report["metrics"]
    assert m["fid"] > 0 and 1.0 <= m["is"] <= 10.0
    assert report["seconds"]["total"] >= report["seconds"]["sampling"] > 0
    assert report["comparable_to_published"] is False
    # the floor: the same metrics for as many real training images, so no FID stands without what real images score
    floor = report["floor"]
    assert floor["num"] == 8 and "training images" in floor["what"] and "floor" in printed
    assert 0 <= floor["fid"] < m["fid"]  # real images beat a 1-step model's noise
    # the classifier's verdict on the requested classes, recomputed here from the same noise and labels i % 10
    from ddpm_lib.diffusion.samplers import sample_batched
    from ddpm_lib.evaluation.classifier import load_classifier

    model, schedule, _, _ = load_model(ckpt, device="cpu")
    wanted = torch.arange(8) % 10
    fake = sample_batched(model, schedule, 8, (3, 16, 16), batch_size=8, labels=wanted, sampler="ddim", num_steps=2,
                          guidance_scale=2.0, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        named = load_classifier(clf_path).logits(fake).argmax(1)
    assert m["class_accuracy"] == pytest.approx((named == wanted).double().mean().item())
    assert "requested class" in printed
    # the extractor is checked before any sampling: a missing Inception file fails at once, in one line
    rc = cli_main(["evaluate", "--ckpt", str(ckpt), "--num", "2", "--features", "inception",
                   "--inception-weights", str(tmp_path / "no.pth")])
    err = capsys.readouterr().err
    assert rc == 2 and "does not exist" in err and "make fid-weights" in err and err.count("\n") == 1
    with pytest.raises(InceptionWeightsNotFoundError):
        from ddpm_lib.evaluation.evaluate import evaluate

        evaluate(ckpt, num=2, features="inception", inception_weights=tmp_path / "no.pth")

    # `sample --class --guidance` gives exactly what samplers.sample gives for that label and scale
    rc = cli_main(["sample", "--ckpt", str(ckpt), "--num", "3", "--steps", "2", "--class", "2", "--guidance", "3",
                   "--seed", "5", "--out", str(tmp_path / "g.png"), "--out-dir", str(tmp_path / "png"), "--device", "cpu"])
    assert rc == 0
    model, schedule, _, _ = load_model(ckpt, device="cpu")
    ref = sample(model, schedule, (3, 3, 16, 16), sampler="ddim", num_steps=2, labels=torch.full((3,), 2),
                 guidance_scale=3.0, generator=torch.Generator().manual_seed(5), progress=False)
    import numpy as np
    from PIL import Image

    got = np.stack([np.asarray(Image.open(p)) for p in sorted((tmp_path / "png").glob("*.png"))])
    np.testing.assert_array_equal(got, to_uint8(ref).permute(0, 2, 3, 1).numpy())


def test_metrics_from_features_and_labels():
    assert balanced_labels(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    g = torch.Generator().manual_seed(0)
    real = torch.randn(200, 4, generator=g)
    same = metrics_from_features(torch.randn(200, 4, generator=g), real, kid_subsets=10, kid_subset_size=100)
    shifted = metrics_from_features(torch.randn(200, 4, generator=g) + 2, real, kid_subsets=10, kid_subset_size=100)
    assert same["fid"] < 0.5 and 10 < shifted["fid"] < 22  # a shift of 2 in 4 dims: FD = 16 + sampling noise
    assert abs(same["kid"]) < 0.05 < shifted["kid"]
