"""Inception feature extractor: shapes with random weights (no download) and the missing-file error."""

import pytest
import torch

from ddpm_lib.evaluation import features as feats


def test_missing_weights_error_names_file_places_and_fix(tmp_path, monkeypatch):
    monkeypatch.setattr(feats, "_search_dirs", lambda: [tmp_path / "fid_weights", tmp_path / "hub"])
    monkeypatch.setattr(feats, "default_weights_dir", lambda: tmp_path / "fid_weights")
    with pytest.raises(feats.InceptionWeightsNotFoundError) as err:
        feats.InceptionFeatures()
    msg = str(err.value)
    assert feats.FID_WEIGHTS_FILE in msg and str(tmp_path / "fid_weights") in msg
    assert "make fid-weights" in msg and feats.FID_WEIGHTS_URL in msg
    with pytest.raises(feats.InceptionWeightsNotFoundError, match="does not exist"):
        feats.find_inception_weights(tmp_path / "nope.pth")


@pytest.mark.parametrize("variant", ["fid", "torchvision"])
def test_inception_shapes_and_weight_loading(tmp_path, variant):
    torch.manual_seed(0)
    model = feats.InceptionFeatures(random_init=True, variant=variant)
    x = torch.rand(2, 1, 32, 32) * 2 - 1  # gray 32x32: repeated to RGB and resized to 299
    with torch.no_grad():
        f = model(x)
        logits = model.logits(x)
    assert f.shape == (2, 2048) and torch.isfinite(f).all()
    assert logits.shape == (2, 1008 if variant == "fid" else 1000)
    # a saved state dict is found, its variant detected, and it gives the same features
    path = tmp_path / feats.WEIGHTS[variant][0]
    torch.save(model.net.state_dict(), path)
    loaded = feats.InceptionFeatures(path)
    assert loaded.variant == variant
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), f)
    with pytest.raises(ValueError, match="images must be"):
        model(torch.zeros(2, 2, 8, 8))


def test_fid_blocks_differ_from_torchvision_blocks_only_in_pooling():
    torch.manual_seed(0)
    fid = feats.build_inception("fid").eval()
    tv = feats.build_inception("torchvision").eval()
    state = {k: v for k, v in fid.state_dict().items() if not k.startswith("fc.")}
    tv.load_state_dict(state, strict=False)
    x = torch.randn(1, 192, 35, 35)
    with torch.no_grad():
        a, b = fid.Mixed_5b(x), tv.Mixed_5b(x)
    # same weights; only the border pixels see a different average pool (count_include_pad=False)
    torch.testing.assert_close(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1])
    assert not torch.allclose(a, b)


def test_compute_features_batches():
    x = torch.randn(10, 3)
    out = feats.compute_features(lambda b: b * 2, x, batch_size=3)
    assert out.dtype == torch.float64 and out.shape == (10, 3)
    torch.testing.assert_close(out, (x * 2).double())
    loader = [(x[:4], None), (x[4:], None)]
    torch.testing.assert_close(feats.compute_features(lambda b: b, loader), x.double())
