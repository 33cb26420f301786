"""Fixtures shared by several test files."""

import numpy as np
import pytest
import torch
from helpers import squares

from ddpm_lib import settings as settings_mod


@pytest.fixture
def env():
    """Set (or, with None, unset) environment variables for one test and re-read the settings.

    ``settings = env(DDPM_FAST="1", DDPM_DATA_DIR=tmp_path)``; both are restored afterwards.
    """
    mp = pytest.MonkeyPatch()

    def set_env(**kw):
        for k, v in kw.items():
            if v is None:
                mp.delenv(k, raising=False)
            else:
                mp.setenv(k, str(v))
        return settings_mod.reload_settings()

    yield set_env
    mp.undo()
    settings_mod.reload_settings()


@pytest.fixture
def one_thread():
    """Run a test on one torch thread: many tiny ops stall when two threads fight other processes for 2 cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture
def squares_npy(tmp_path):
    """``make(n)``: a ``.npy`` file of n 16x16 uint8 images, each a white 6x6 square at a seeded place (a tiny
    data set the ``npy`` loader reads); returns its path."""
    def make(n: int = 16):
        path = tmp_path / "squares.npy"
        np.save(path, squares(n))
        return path

    return make
