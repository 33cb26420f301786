"""tools/rename_imports.py: old flat import paths -> the layered ones, written out by hand; idempotent."""

from __future__ import annotations

from tools.rename_imports import rewrite

OLD = '''from ddpm_lib.checkpoint import load_model_from_checkpoint
from ddpm_lib import forward as F, settings
from ddpm_lib.runs import atomic_write, RunFolder, NoSpaceError
from ddpm_lib.pretrained import sha256, resolve
from ddpm_lib.data import load_dataset
from ddpm_lib.data import sources
model, schedule, cfg = load_model_from_checkpoint(ckpt)
FORMAT = "ddpm_lib.checkpoint/1"
see ddpm_lib/samplers.py and ddpm_lib.exercises.forward; python -m ddpm_lib.pretrained.build
'''

NEW = '''from ddpm_lib.loading import load_model
from ddpm_lib.diffusion import forward as F
from ddpm_lib import settings
from ddpm_lib.files import NoSpaceError, atomic_write
from ddpm_lib.training.runs import RunFolder
from ddpm_lib.files import sha256
from ddpm_lib.pretrained import resolve
from ddpm_lib.data.sources import load_dataset
from ddpm_lib.data import sources
model, schedule, cfg, _ = load_model(ckpt)
FORMAT = "ddpm_lib.checkpoint/1"
see ddpm_lib/diffusion/samplers.py and ddpm_lib.course.exercises.forward; python -m tools.build_pretrained
'''


def test_old_paths_become_the_new_ones_and_format_tags_stay():
    assert rewrite(OLD) == NEW


def test_rewriting_twice_changes_nothing():
    assert rewrite(NEW) == NEW
