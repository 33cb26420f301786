"""benchmarks/starter_trials.py soup: the written weights are the interpolation of the two EMA states, element by
element, and load as a sampling checkpoint; two architectures that differ are refused."""
import importlib.util
from pathlib import Path

import pytest
import torch
from test_runs import full_payload  # tests/ is on sys.path under pytest

from ddpm_lib.loading import load_model
from ddpm_lib.training.checkpoint import save_checkpoint

spec = importlib.util.spec_from_file_location("starter_trials", Path(__file__).parents[1] / "benchmarks/starter_trials.py")
trials = importlib.util.module_from_spec(spec)
spec.loader.exec_module(trials)


def test_soup_interpolates_the_ema_weights(tmp_path):
    a, b = full_payload(), full_payload()
    for v in b["ema"]["shadow"].values():
        if v.is_floating_point():
            v.normal_(0, 0.5)
    save_checkpoint(tmp_path / "a.pt", a)
    save_checkpoint(tmp_path / "b.pt", b)
    for w in (0.0, 0.25, 1.0):
        out = tmp_path / f"soup{w}.pt"
        trials.soup(str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), w, str(out))
        model, _, _, _ = load_model(out, device="cpu")
        for k, v in model.state_dict().items():
            wa, wb = a["ema"]["shadow"][k].float(), b["ema"]["shadow"][k].float()
            if v.is_floating_point():
                torch.testing.assert_close(v, wa + w * (wb - wa), rtol=0, atol=1e-6)
    assert not torch.equal(a["ema"]["shadow"][k], b["ema"]["shadow"][k])  # the two really differ


def test_soup_refuses_different_architectures(tmp_path):
    a, b = full_payload(), full_payload()
    b["ema"]["shadow"]["extra.weight"] = torch.zeros(1)
    save_checkpoint(tmp_path / "a.pt", a)
    save_checkpoint(tmp_path / "b.pt", b)
    with pytest.raises(SystemExit, match="different architectures"):
        trials.soup(str(tmp_path / "a.pt"), str(tmp_path / "b.pt"), 0.5, str(tmp_path / "s.pt"))
    assert not (tmp_path / "s.pt").exists()
