"""Default data and runs folders: the checkout's, else Colab's /content, else a per-user cache; never the cwd."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ddpm_lib import settings as settings_mod

ROOT = Path(__file__).resolve().parent.parent


def test_in_a_checkout_the_checkout_folders(env):
    s = env(DDPM_DATA_DIR=None, DDPM_RUNS_DIR=None, DDPM_DEVICE="cpu")
    assert (s.data_dir, s.runs_dir) == (ROOT / "data", ROOT / "runs")


def test_outside_a_checkout_a_user_cache_never_the_current_folder(env, monkeypatch, tmp_path):
    monkeypatch.setattr(settings_mod, "_repo_root", lambda: None)  # as when installed in site-packages
    nb_dir = tmp_path / "clone" / "notebooks"
    nb_dir.mkdir(parents=True)
    monkeypatch.chdir(nb_dir)
    monkeypatch.delenv("COLAB_RELEASE_TAG", raising=False)
    s = env(DDPM_DATA_DIR=None, DDPM_RUNS_DIR=None, DDPM_DEVICE="cpu", XDG_CACHE_HOME=tmp_path / "cache")
    if sys.platform == "linux":
        assert s.data_dir == tmp_path / "cache" / "ddpm-course" / "data"
        assert s.runs_dir == tmp_path / "cache" / "ddpm-course" / "runs"
    assert nb_dir not in s.data_dir.parents and nb_dir not in s.runs_dir.parents
    s = env(COLAB_RELEASE_TAG="release-colab_20261101-060000_RC00")
    assert (s.data_dir, s.runs_dir) == (Path("/content/data"), Path("/content/runs"))


def test_gitignore_covers_what_the_course_writes(tmp_path):
    paths = ["data/cifar10/train/cat/0001.jpg", "data/_synthetic/x.png", "data/fid_weights/a.pth",
             "runs/fashion_mnist/latest.pt", "runs/x/tb/events.out.tfevents.1", "build/student/00_welcome.ipynb",
             "notebooks/data/FashionMNIST/raw/x", "notebooks/runs/default/final.pt", ".venv/bin/python",
             ".venv-oldest/bin/python", ".devdata/cifar10-jpeg.tar.gz", ".whl/diffusers.whl",
             "notebooks/.ipynb_checkpoints/00-checkpoint.ipynb", "gpu-out/suite.json"]
    res = subprocess.run(["git", "check-ignore", "--no-index", "-v", *paths], cwd=ROOT, capture_output=True, text=True)
    ignored = {line.split("\t")[-1] for line in res.stdout.splitlines()}
    assert ignored == set(paths), f"not ignored: {sorted(set(paths) - ignored)}"
    res = subprocess.run(["git", "check-ignore", "--no-index", "data/README.md", "notebooks/00_welcome.ipynb"],
                         cwd=ROOT, capture_output=True, text=True)
    assert res.stdout == "", f"ignored but tracked: {res.stdout}"
