"""ddpm_lib.data.sources: formats, scaling, padding, flips, loaders, the offline error and FAST stand-ins.

Every test builds its own tiny files in tmp_path (never ../shared, never the repo's data/); file
contents are checked against torchvision's own readers or against values written by hand.
"""

from __future__ import annotations

import gzip
import time
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from ddpm_lib.data import sources as data

# gpu mode (no stand-in fallback) on this CPU-only machine warns about its cost: expected here
pytestmark = pytest.mark.filterwarnings("ignore:DDPM_MODE=gpu without a CUDA GPU")


def write_fmnist(root, train_images, train_labels, test_images=None, test_labels=None, gz=False):
    raw = root / "FashionMNIST" / "raw"
    if test_images is None:
        test_images, test_labels = train_images[:2], train_labels[:2]
    for prefix, imgs, labs in (("train", train_images, train_labels), ("t10k", test_images, test_labels)):
        data.write_idx(raw / f"{prefix}-images-idx3-ubyte", imgs)
        data.write_idx(raw / f"{prefix}-labels-idx1-ubyte", labs)
        if gz:
            for kind in ("images-idx3", "labels-idx1"):
                p = raw / f"{prefix}-{kind}-ubyte"
                (raw / f"{p.name}.gz").write_bytes(gzip.compress(p.read_bytes()))
                p.unlink()
    return raw


def random_fmnist(n=12, seed=0):
    rng = np.random.default_rng(seed)
    imgs = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    imgs[0, 0, 0], imgs[0, 0, 1] = 0, 255
    labels = (np.arange(n) % 10).astype(np.uint8)
    return imgs, labels


# ---------------------------------------------------------------- idx files and Fashion-MNIST


def test_idx_round_trip_through_torchvision(tmp_path):
    from torchvision.datasets import FashionMNIST

    imgs, labels = random_fmnist(7)
    write_fmnist(tmp_path, imgs, labels, imgs[:3], labels[:3])
    tv = FashionMNIST(str(tmp_path), train=True, download=False)  # torchvision's own idx reader
    assert np.array_equal(tv.data.numpy(), imgs)
    assert np.array_equal(tv.targets.numpy(), labels)
    tv_test = FashionMNIST(str(tmp_path), train=False, download=False)
    assert np.array_equal(tv_test.data.numpy(), imgs[:3])


def test_fashion_mnist_scaled_and_padded_to_32(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    imgs, labels = random_fmnist(12)
    write_fmnist(tmp_path, imgs, labels)
    ds = data.load_dataset("fashion_mnist", root=tmp_path)
    assert len(ds) == 12 and not ds.synthetic
    for i in (0, 5, 11):
        x, y = ds[i]
        assert x.dtype == torch.float32 and x.shape == (1, 32, 32)
        assert isinstance(y, int) and y == int(labels[i])
        # pixel p -> p / 127.5 - 1, centred with a 2-pixel border of background (-1)
        expected = torch.full((1, 32, 32), -1.0)
        expected[0, 2:30, 2:30] = torch.from_numpy(imgs[i].astype(np.float32)) / 127.5 - 1
        assert torch.allclose(x, expected, atol=1e-6)
    x0, _ = ds[0]
    assert x0[0, 2, 2].item() == -1.0 and x0[0, 2, 3].item() == 1.0  # 0 -> -1 and 255 -> 1 exactly
    assert x0.min() >= -1 and x0.max() <= 1


def test_fashion_mnist_native_28_and_test_split(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    imgs, labels = random_fmnist(6)
    write_fmnist(tmp_path, imgs, labels, imgs[3:], labels[3:])
    x, _ = data.load_dataset("fashion_mnist", root=tmp_path, image_size=28)[1]
    assert torch.allclose(x[0], torch.from_numpy(imgs[1].astype(np.float32)) / 127.5 - 1)
    test = data.load_dataset("fashion_mnist", root=tmp_path, train=False)
    assert len(test) == 3 and test[0][1] == int(labels[3])


def test_gz_files_are_unpacked(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    imgs, labels = random_fmnist(5)
    write_fmnist(tmp_path, imgs, labels, gz=True)
    ds = data.load_dataset("fashion_mnist", root=tmp_path, image_size=28)
    assert len(ds) == 5
    assert torch.allclose(ds[4][0][0], torch.from_numpy(imgs[4].astype(np.float32)) / 127.5 - 1)


def test_hflip_gives_original_or_mirror(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    imgs, labels = random_fmnist(3)
    write_fmnist(tmp_path, imgs, labels)
    plain = data.load_dataset("fashion_mnist", root=tmp_path)
    flipping = data.load_dataset("fashion_mnist", root=tmp_path, hflip=True)
    ref = plain[1][0]
    torch.manual_seed(0)
    seen = {"same": 0, "mirrored": 0}
    for _ in range(40):
        x = flipping[1][0]
        if torch.equal(x, ref):
            seen["same"] += 1
        else:
            assert torch.equal(x, torch.from_numpy(ref.numpy()[:, :, ::-1].copy()))
            seen["mirrored"] += 1
    assert seen["same"] >= 8 and seen["mirrored"] >= 8  # p = 1/2 each; 40 draws


def test_max_items_is_a_fixed_mixed_subset(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    imgs, labels = random_fmnist(100)
    write_fmnist(tmp_path, imgs, labels)
    a = data.load_dataset("fashion_mnist", root=tmp_path, max_items=30)
    b = data.load_dataset("fashion_mnist", root=tmp_path, max_items=30)
    assert len(a) == 30
    assert a.targets == b.targets and torch.equal(a[7][0], b[7][0])
    assert len(set(a.targets)) >= 8  # not just the first few images' classes
    with pytest.raises(ValueError, match="max_items"):
        data.load_dataset("fashion_mnist", root=tmp_path, max_items=0)


# ---------------------------------------------------------------- CIFAR-10 image-folder layout


def write_cifar_folder(root, per_class=2):
    colours = {}
    for split in ("train", "test"):
        for c, name in enumerate(data.CIFAR10_CLASSES):
            d = root / "cifar10" / split / name
            d.mkdir(parents=True)
            for k in range(per_class):
                rgb = (10 * c, 20 + k, 255 - 10 * c)
                colours[(split, c, k)] = rgb
                Image.new("RGB", (32, 32), rgb).save(d / f"{k:04d}.png")
    return colours


def test_cifar10_image_folder_layout(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    write_cifar_folder(tmp_path, per_class=2)
    ds = data.load_dataset("cifar10", root=tmp_path)
    assert len(ds) == 20 and ds.classes == list(data.CIFAR10_CLASSES)
    x, y = ds[5]  # sorted by class then file: class 2 ("bird"), file 1
    assert y == 2 and x.shape == (3, 32, 32)
    expected = torch.tensor([20, 21, 235], dtype=torch.float32) / 127.5 - 1
    assert torch.allclose(x[:, 10, 10], expected, atol=1e-6)
    assert len(data.load_dataset("cifar10", root=tmp_path, train=False)) == 20
    assert data.data_status(tmp_path)["cifar10"].present


# ---------------------------------------------------------------- folder and npy loaders


def test_folder_loader_resizes_and_labels(tmp_path):
    for cls, rgb in (("cats", (255, 0, 0)), ("dogs", (0, 0, 255))):
        (tmp_path / cls).mkdir()
        for k in range(3):
            Image.new("RGB", (48, 40), rgb).save(tmp_path / cls / f"{k}.png")
    (tmp_path / "cats" / "notes.txt").write_text("not an image")
    ds = data.load_dataset("folder", root=tmp_path, image_size=16)
    assert len(ds) == 6 and ds.classes == ["cats", "dogs"]
    x, y = ds[4]
    assert y == 1 and x.shape == (3, 16, 16)
    assert torch.allclose(x, torch.tensor([-1.0, -1.0, 1.0])[:, None, None].expand(3, 16, 16), atol=1e-5)
    g = data.load_dataset("folder", root=tmp_path, image_size=16, grayscale=True)
    assert g[0][0].shape == (1, 16, 16)
    with pytest.raises(ValueError, match="test"):
        data.load_dataset("folder", root=tmp_path, train=False)
    with pytest.raises(ValueError, match="root"):
        data.load_dataset("folder")


def test_folder_without_class_subfolders_explains(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "a.png")
    with pytest.raises(ValueError, match="sub-folders"):
        data.load_dataset("folder", root=tmp_path)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW", "NHW"])
def test_npy_uint8_layouts(tmp_path, layout):
    rng = np.random.default_rng(1)
    nchw = rng.integers(0, 256, (4, 3 if layout != "NHW" else 1, 8, 8), dtype=np.uint8)
    arr = {"NHWC": nchw.transpose(0, 2, 3, 1), "NCHW": nchw, "NHW": nchw[:, 0]}[layout]
    np.save(tmp_path / "x.npy", arr)
    ds = data.load_dataset("npy", root=tmp_path / "x.npy", image_size=8)
    x, y = ds[2]
    assert y == 0
    assert torch.allclose(x, torch.from_numpy(nchw[2].astype(np.float32)) / 127.5 - 1)


def test_npz_float_with_labels(tmp_path):
    rng = np.random.default_rng(2)
    imgs01 = rng.random((5, 1, 8, 8)).astype(np.float32)
    np.savez(tmp_path / "d.npz", images=imgs01, labels=np.array([0, 3, 1, 3, 2]))
    ds = data.load_dataset("npy", root=tmp_path / "d.npz", image_size=8)
    x, y = ds[1]
    assert y == 3 and torch.allclose(x, torch.from_numpy(imgs01[1]) * 2 - 1, atol=1e-6)
    assert data.dataset_info("npy", root=tmp_path / "d.npz").num_classes == 4
    np.save(tmp_path / "bad.npy", (imgs01 * 5).astype(np.float32))
    with pytest.raises(ValueError, match=r"\[0, 1\] or \[-1, 1\]"):
        data.load_dataset("npy", root=tmp_path / "bad.npy")
    np.save(tmp_path / "bad_shape.npy", np.zeros((2, 5, 7, 9), np.uint8))
    with pytest.raises(ValueError, match="channel"):
        data.load_dataset("npy", root=tmp_path / "bad_shape.npy")


def test_unknown_name_and_bad_size():
    with pytest.raises(ValueError, match="fashion_mnist"):
        data.load_dataset("mnist")
    with pytest.raises(ValueError, match="image_size"):
        data.load_dataset("fashion_mnist", image_size=0)


# ---------------------------------------------------------------- offline error and FAST stand-ins


@pytest.mark.parametrize("how", ["DDPM_OFFLINE=1", "download=False", "download=True offline"])
def test_offline_error_is_clear_and_quick(tmp_path, env, how):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1 if how == "DDPM_OFFLINE=1" else None)
    kw = {"download=False": {"download": False}, "download=True offline": {"download": True}}.get(how, {})
    if how == "download=True offline":
        # no network here: make sure of it whatever machine runs the test
        import socket

        def no_net(*a, **k):
            raise OSError("network disabled by the test")

        monkey = pytest.MonkeyPatch()
        monkey.setattr(socket, "create_connection", no_net)
    t0 = time.perf_counter()
    try:
        with pytest.raises(data.DatasetNotFoundError) as info:
            data.load_dataset("fashion_mnist", root=tmp_path, **kw)
    finally:
        if how == "download=True offline":
            monkey.undo()
    assert time.perf_counter() - t0 < 5.0
    err = info.value
    assert isinstance(err, FileNotFoundError)
    assert err.__cause__ is None and err.__suppress_context__  # no torchvision traceback chained
    msg = str(err)
    assert "Fashion-MNIST" in msg and str(tmp_path / "FashionMNIST" / "raw") in msg
    for f in data.FASHION_MNIST_FILES:
        assert f in msg
    assert "DDPM_DATA_DIR" in msg and "http" in msg and "make data" in msg
    assert not (tmp_path / "_synthetic").exists()


def test_offline_error_cifar10_names_both_layouts(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load_dataset("cifar10", root=tmp_path)
    msg = str(info.value)
    assert "cifar-10-batches-py" in msg and "data_batch_1" in msg and "cifar-10-python.tar.gz" in msg
    assert str(tmp_path / "cifar10") in msg and "DDPM_DATA_DIR" in msg


def test_fast_mode_uses_loud_standin_in_real_format(tmp_path, env, monkeypatch, capsys):
    from torchvision.datasets import FashionMNIST

    env(DDPM_FAST=1, DDPM_DATA_DIR=tmp_path, DDPM_OFFLINE=1)
    monkeypatch.setattr(data, "_STANDIN_FMNIST", {"train": 60, "test": 20})
    with pytest.warns(data.SyntheticDataWarning, match="SYNTHETIC"):
        ds = data.load_dataset("fashion_mnist")
    assert "SYNTHETIC DATA" in capsys.readouterr().out
    assert ds.synthetic and len(ds) == 60 and "SYNTHETIC" in repr(ds)
    x, y = ds[0]
    assert x.shape == (1, 32, 32) and -1 <= x.min() and x.max() <= 1 and 0 <= y < 10
    # written as real idx files that torchvision reads by itself
    tv = FashionMNIST(str(tmp_path / "_synthetic"), train=True)
    assert tv.data.shape == (60, 28, 28) and sorted(set(tv.targets.tolist())) == list(range(10))
    assert not data.data_status(tmp_path)["fashion_mnist"].present  # a stand-in is not the real data
    # the real data wins as soon as it is there
    imgs, labels = random_fmnist(4)
    write_fmnist(tmp_path, imgs, labels)
    with warnings.catch_warnings():
        warnings.simplefilter("error", data.SyntheticDataWarning)
        assert not data.load_dataset("fashion_mnist").synthetic
    with pytest.raises(data.DatasetNotFoundError):
        data.load_dataset("cifar10", synthetic=False)


def test_fast_mode_cifar10_standin_is_an_image_folder(tmp_path, env, monkeypatch):
    env(DDPM_FAST=1, DDPM_DATA_DIR=tmp_path, DDPM_OFFLINE=1)
    monkeypatch.setattr(data, "_STANDIN_CIFAR_PER_CLASS", {"train": 3, "test": 1})
    with pytest.warns(data.SyntheticDataWarning):
        ds = data.load_dataset("cifar10")
    assert ds.synthetic and len(ds) == 30
    top = tmp_path / "_synthetic" / "cifar10" / "train"
    assert sorted(p.name for p in top.iterdir()) == sorted(data.CIFAR10_CLASSES)
    assert len(list((top / "ship").glob("*.png"))) == 3
    assert ds[29][1] == 9 and ds[0][0].shape == (3, 32, 32)


def test_fast_mode_tries_the_download_first_then_falls_back(tmp_path, env, monkeypatch, capsys):
    env(DDPM_FAST=1, DDPM_DATA_DIR=tmp_path, DDPM_OFFLINE=None)
    monkeypatch.setattr(data, "_STANDIN_FMNIST", {"train": 20, "test": 10})
    probed = []

    def no_network(url, timeout=0):
        probed.append(url)
        return "cannot reach the host (network disabled by the test)"

    monkeypatch.setattr(data, "_probe", no_network)
    with pytest.warns(data.SyntheticDataWarning, match="download failed"):
        ds = data.load_dataset("fashion_mnist")
    assert ds.synthetic and probed == [data.FASHION_MNIST_URL]
    assert "network disabled by the test" in capsys.readouterr().out
    with pytest.raises(data.DatasetNotFoundError, match="download was attempted"):
        data.load_dataset("fashion_mnist", download=True)  # an explicit request that fails raises


def test_standin_is_deterministic_and_classes_differ(tmp_path):
    a = data.write_fashion_mnist_standin(tmp_path / "a", n_train=200, n_test=10)
    b = data.write_fashion_mnist_standin(tmp_path / "b", n_train=200, n_test=10)
    for f in data.FASHION_MNIST_FILES:
        assert (a / f).read_bytes() == (b / f).read_bytes()
    from torchvision.datasets import FashionMNIST

    tv = FashionMNIST(str(tmp_path / "a"), train=True)
    x, y = tv.data.float().flatten(1), tv.targets
    # nearest class mean (fit on the first half, tested on the second) must tell the garments apart
    means = torch.stack([x[:100][y[:100] == c].mean(0) for c in range(10)])
    pred = torch.cdist(x[100:], means).argmin(1)
    assert (pred == y[100:]).float().mean() > 0.9


# ---------------------------------------------------------------- loaders, info, status, CLI


def test_make_dataloader_defaults_and_errors(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1, DDPM_DEVICE="cpu")
    imgs, labels = random_fmnist(10)
    write_fmnist(tmp_path, imgs, labels)
    ds = data.load_dataset("fashion_mnist", root=tmp_path)
    loader = data.make_dataloader(ds, batch_size=4)
    assert loader.num_workers == 0 and not loader.pin_memory
    batches = list(loader)
    assert len(batches) == 2 and batches[0][0].shape == (4, 1, 32, 32) and batches[0][1].dtype == torch.int64
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    l1 = [b[1].tolist() for b in data.make_dataloader(ds, 4, generator=g1)]
    l2 = [b[1].tolist() for b in data.make_dataloader(ds, 4, generator=g2)]
    assert l1 == l2
    assert data.make_dataloader(ds, 4, device="cuda").pin_memory  # not iterated: no GPU needed
    with pytest.raises(ValueError, match="drop_last"):
        data.make_dataloader(ds, batch_size=11)
    assert len(data.make_dataloader(ds, batch_size=11, drop_last=False)) == 1
    with pytest.raises(ValueError, match="batch_size"):
        data.make_dataloader(ds, batch_size=0)


def test_dataset_info():
    f = data.dataset_info("fashion_mnist")
    assert (f.channels, f.num_classes, f.class_names[9]) == (1, 10, "Ankle boot")
    c = data.dataset_info("cifar10")
    assert (c.channels, c.num_classes, c.class_names[0]) == (3, 10, "airplane")
    with pytest.raises(ValueError, match="root"):
        data.dataset_info("folder")


def test_data_status_never_downloads_and_cli(tmp_path, env, monkeypatch, capsys):
    env(DDPM_DATA_DIR=tmp_path, DDPM_OFFLINE=None)

    def boom(*a, **k):
        raise AssertionError("data_status must not download")

    monkeypatch.setattr(data, "_download", boom)
    st = data.data_status()
    assert not st["fashion_mnist"].present and not st["cifar10"].present
    assert "MISSING" in st["cifar10"].line()
    imgs, labels = random_fmnist(3)
    write_fmnist(tmp_path, imgs, labels)
    assert data.data_status()["fashion_mnist"].present
    assert data.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "fashion_mnist" in out and "present" in out


def test_cli_download_reports_failure(tmp_path, env, monkeypatch, capsys):
    env(DDPM_DATA_DIR=tmp_path)
    imgs, labels = random_fmnist(3)
    write_fmnist(tmp_path, imgs, labels)
    monkeypatch.setattr(data, "_probe", lambda url, timeout=0: "network disabled by the test")
    assert data.main(["download", "fashion_mnist", "cifar10"]) == 1  # fmnist present, cifar10 fails
    captured = capsys.readouterr()
    assert "already present" in captured.out and "cifar-10-python.tar.gz" in captured.err


def test_truncated_idx_file_is_a_clear_error(tmp_path, env):
    env(DDPM_FAST=None, DDPM_MODE="gpu", DDPM_OFFLINE=1)
    imgs, labels = random_fmnist(4)
    raw = write_fmnist(tmp_path, imgs, labels)
    path = raw / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:500])  # cut short
    with pytest.raises(data.DatasetNotFoundError, match="cannot be used") as info:
        data.load_dataset("fashion_mnist", root=tmp_path)
    assert info.value.__suppress_context__ and "DDPM_DATA_DIR" in str(info.value)
