"""The starter weights shipped in ddpm_lib/pretrained: checksums, loading, errors, and real images."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from ddpm_lib import pretrained
from ddpm_lib.diffusion.samplers import sample
from ddpm_lib.files import sha256
from ddpm_lib.loading import load_model
from tools.build_pretrained import image_stats, stats_close

NAMES = ("fashion_mnist", "cifar10")


def test_both_starter_models_are_registered_and_small():
    assert set(NAMES) <= set(pretrained.names())
    for name in NAMES:
        f = pretrained.path(name)  # verifies the sha256
        assert f.stat().st_size < 5 * 2**20, f"{f} is over 5 MB"
        card = (pretrained.HERE / "MODEL_CARD.md").read_text()
        assert pretrained.info(name)["sha256"] in card


@pytest.mark.parametrize("name", NAMES)
def test_load_gives_an_eval_model_schedule_and_config(name):
    model, schedule, cfg, _ = load_model(f"pretrained:{name}", device="cpu")
    assert not model.training and schedule.num_timesteps == cfg.num_timesteps == 1000
    assert cfg.dataset == name and next(model.parameters()).dtype == torch.float32
    assert (model.null_class is not None) == (name == "cifar10")


@pytest.mark.parametrize("name", NAMES)
def test_starter_samples_look_like_the_dataset_not_noise(name, one_thread):
    """16 DDIM samples have the pixel statistics of the real test images recorded in the card; the same
    comparison rejects uniform noise (so the check can fail)."""
    info = pretrained.info(name)
    model, schedule, cfg, _ = load_model(f"pretrained:{name}", device="cpu")
    c = model.config
    labels = torch.arange(16) % model.null_class if model.null_class is not None else None
    x = sample(model, schedule, (16, c.in_channels, c.image_size, c.image_size), sampler="ddim", num_steps=20,
               generator=torch.Generator().manual_seed(0), labels=labels,
               guidance_scale=info["sample"].get("guidance", 1.0))
    bad = stats_close(image_stats(x), info["data_stats"], info["tolerance"])
    assert not bad, f"{name} samples differ from the data: {bad}"
    noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
    assert stats_close(image_stats(noise), info["data_stats"], info["tolerance"])


def test_unknown_name_and_damaged_file_are_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(pretrained.PretrainedError, match="unknown starter model 'mnist'.*cifar10, fashion_mnist"):
        load_model("pretrained:mnist")
    fake = tmp_path / "pretrained"
    shutil.copytree(pretrained.HERE, fake, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pretrained, "HERE", fake)
    pretrained.registry.cache_clear()
    pretrained.classifier_registry.cache_clear()
    try:
        data = bytearray((fake / "fashion_mnist.pt").read_bytes())
        data[-100] ^= 0xFF
        (fake / "fashion_mnist.pt").write_bytes(bytes(data))
        with pytest.raises(pretrained.PretrainedError, match="SHA-256 .* expected .*damaged or replaced"):
            load_model("pretrained:fashion_mnist")
        (fake / "fashion_mnist.pt").unlink()
        with pytest.raises(pretrained.PretrainedError, match="missing from the installed package"):
            pretrained.path("fashion_mnist")
        data = bytearray((fake / "classifier_cifar10.pt").read_bytes())
        data[-100] ^= 0xFF
        (fake / "classifier_cifar10.pt").write_bytes(bytes(data))
        with pytest.raises(pretrained.PretrainedError, match="feature classifier for 'cifar10'.*damaged or replaced"):
            pretrained.classifier_path("cifar10")
    finally:
        pretrained.registry.cache_clear()
        pretrained.classifier_registry.cache_clear()


def test_registry_checksums_match_files():
    for registry_file in ("registry.json", "classifiers.json"):
        reg = json.loads((pretrained.HERE / registry_file).read_text())
        for name, entry in reg.items():
            assert sha256(pretrained.HERE / entry["file"]) == entry["sha256"], (registry_file, name)


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "ddpm_lib", *args], capture_output=True, text=True, cwd=cwd,
                          env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "DDPM_OFFLINE": "1",
                               "DDPM_DEVICE": "cpu", "PYTHONPATH": str(pretrained.HERE.parent.parent)}, timeout=600)


def test_cli_samples_from_pretrained_offline(tmp_path):
    r = _cli("sample", "--ckpt", "pretrained:cifar10", "--num", "4", "--class", "3", "--guidance", "3",
             "--steps", "5", "--out", str(tmp_path / "cats.png"), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "cats.png").is_file()
    r = _cli("sample", "--ckpt", "pretrained:imagenet", "--out", str(tmp_path / "x.png"), cwd=tmp_path)
    assert r.returncode == 2 and "unknown starter model 'imagenet'" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_card_wall_time_adds_the_segments_of_a_resumed_run(tmp_path):
    """metrics.csv's elapsed_s restarts at 0 on resume: the card's wall time is the sum of the segments."""
    from tools.build_pretrained import _wall_time

    rows = [(25, 20.0), (50, 40.0), (75, 12.0), (100, 30.0), (125, 5.0)]  # resumed twice
    (tmp_path / "metrics.csv").write_text("step,elapsed_s\n" + "".join(f"{s},{e}\n" for s, e in rows))
    assert _wall_time(tmp_path) == 40.0 + 30.0 + 5.0
    assert _wall_time(tmp_path / "nothing") is None


# --- the shipped feature classifiers (FID features) ---------------------------------------------------------

@pytest.mark.parametrize("dataset", NAMES)
def test_shipped_classifier_is_verified_small_and_carded(dataset):
    from ddpm_lib.evaluation.classifier import load_classifier

    entry = pretrained.classifier_registry()[dataset]
    f = pretrained.classifier_path(dataset)  # verifies the sha256
    assert f.stat().st_size < 5 * 2**20 and entry["sha256"] in (pretrained.HERE / "MODEL_CARD.md").read_text()
    clf = load_classifier(f)
    assert clf.meta["dataset"] == dataset and clf.meta["test_accuracy"] == entry["test_accuracy"]
    # the card's FID of each starter model was measured with this classifier
    assert pretrained.info(dataset)["quality"]["classifier_test_accuracy"] == entry["test_accuracy"]
    assert pretrained.classifier_path("imagenet") is None


def test_get_classifier_takes_yours_then_the_shipped_one_and_never_trains_then(env, tmp_path, monkeypatch):
    from ddpm_lib.evaluation import classifier as clf_mod

    env(DDPM_MODE="fast", DDPM_RUNS_DIR=tmp_path / "runs", DDPM_DATA_DIR=tmp_path / "data")

    def no_training(*a, **k):
        raise AssertionError("get_classifier trained a classifier although one is shipped")

    monkeypatch.setattr(clf_mod, "train_classifier", no_training)
    shipped = clf_mod.get_classifier("cifar10", device="cpu", verbose=False)
    assert shipped.source == pretrained.classifier_path("cifar10")
    own = clf_mod.FeatureClassifier(in_channels=3, num_classes=10, width=8)
    clf_mod.save_classifier(own, clf_mod.default_classifier_path("cifar10"), dataset="cifar10", test_accuracy=0.5)
    mine = clf_mod.get_classifier("cifar10", device="cpu", verbose=False)
    assert mine.source == clf_mod.default_classifier_path("cifar10") and mine.meta["test_accuracy"] == 0.5
    with pytest.raises(FileNotFoundError, match="no feature classifier at"):  # a path you name is never swapped
        clf_mod.get_classifier("cifar10", path=tmp_path / "nope.pt", train_if_missing=False, verbose=False)


def test_shipped_cifar10_classifier_recognises_the_starter_models_guided_classes(one_thread):
    """Two independent shipped files check each other: guided samples of class c (w = 3) are classified as c
    far above chance (10%), and the same classifier on uniform noise is not."""
    from ddpm_lib.evaluation.classifier import load_classifier

    clf = load_classifier(pretrained.classifier_path("cifar10"))
    model, schedule, _, _ = load_model("pretrained:cifar10", device="cpu")
    labels = torch.arange(30) % 10
    x = sample(model, schedule, (30, 3, 32, 32), sampler="ddim", num_steps=20,
               generator=torch.Generator().manual_seed(0), labels=labels, guidance_scale=3.0)
    with torch.no_grad():
        acc = (clf.logits(x).argmax(1) == labels).float().mean().item()
        noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1
        acc_noise = (clf.logits(noise).argmax(1) == labels).float().mean().item()
    assert acc >= 0.5 and acc_noise <= 0.3, (acc, acc_noise)


def test_model_card_is_generated_from_both_registries():
    """MODEL_CARD.md is what build.py writes from registry.json and classifiers.json: no hand edits, no stale row."""
    from tools.build_pretrained import model_card

    assert (pretrained.HERE / "MODEL_CARD.md").read_text() == model_card(pretrained.registry(), pretrained.classifier_registry())


def test_ship_classifier_records_file_checksum_and_card(tmp_path, monkeypatch):
    from ddpm_lib.evaluation.classifier import FeatureClassifier, save_classifier
    from tools import build_pretrained as build

    fake = tmp_path / "pretrained"
    shutil.copytree(pretrained.HERE, fake, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(pretrained, "HERE", fake)
    monkeypatch.setattr(build, "HERE", fake)
    pretrained.registry.cache_clear()
    pretrained.classifier_registry.cache_clear()
    try:
        src = save_classifier(FeatureClassifier(in_channels=1, num_classes=10, width=8), tmp_path / "c.pt",
                              dataset="fashion_mnist", steps=3, test_accuracy=0.5)
        with pytest.raises(ValueError, match="a classifier for 'fashion_mnist', not 'cifar10'"):
            build.ship_classifier("cifar10", src, "cmd", "machine", "note")
        entry = build.ship_classifier("fashion_mnist", src, "cmd", "machine", "note")
        assert pretrained.classifier_path("fashion_mnist") == fake / "classifier_fashion_mnist.pt"
        assert entry["sha256"] == sha256(src) and entry["steps"] == 3 and entry["test_accuracy"] == 0.5
        assert entry["sha256"] in (fake / "MODEL_CARD.md").read_text()
        assert pretrained.classifier_registry()["cifar10"]["file"] == "classifier_cifar10.pt"  # the other one kept
    finally:
        pretrained.registry.cache_clear()
        pretrained.classifier_registry.cache_clear()


def test_a_fine_tuned_starter_is_carded_with_the_training_it_started_from():
    """A starter fine-tuned from the one it replaces (train --init-from pretrained:NAME) counts both trainings."""
    from tools.build_pretrained import _total_wall_time, fine_tune_base, model_card

    reg = pretrained.registry()
    assert fine_tune_base("cifar10", None, reg) is None
    base = fine_tune_base("cifar10", "pretrained:cifar10", reg)  # the registry's entry: steps and wall time
    assert base["steps"] == reg["cifar10"]["train_steps"] and base["wall_time_s"] == reg["cifar10"]["train_wall_time_s"]
    other = fine_tune_base("cifar10", "pretrained:fashion_mnist", reg)  # another file: its own step, wall unknown
    assert other["steps"] == load_model("pretrained:fashion_mnist", device="cpu").step and other["wall_time_s"] is None
    assert _total_wall_time(600.0, base) == 600.0 + base["wall_time_s"]
    assert _total_wall_time(600.0, other) is None and _total_wall_time(600.0, None) == 600.0
    entry = dict(reg["cifar10"], train_steps=base["steps"] + 3000, fine_tuned_from=base)
    card = model_card({"cifar10": entry}, {})
    assert f"{base['steps'] + 3000:,} steps at batch" in card
    assert f"({base['steps']:,} for the weights it started from, then 3,000 fine-tuning from them" in card
