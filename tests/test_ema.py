"""EMA against a sequence computed by hand (plain Python floats)."""

import pytest
import torch
from torch import nn

from ddpm_lib.models.ema import EMA, ema_decay_at


class Scalar(nn.Module):
    def __init__(self, v=0.0):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([v]))
        self.register_buffer("count", torch.tensor([0.0]))


def set_w(m, v):
    with torch.no_grad():
        m.w.fill_(v)
        m.count.fill_(v * 10)


def test_warmup_decay_sequence_by_hand():
    m = Scalar(1.0)
    ema = EMA(m, decay=0.9, warmup=True)
    values = [2.0, 4.0, 3.0, 5.0, 0.0, 1.0]
    # by hand: decay d_n = min(0.9, (1+n)/(10+n)) = 0.1, 2/11, 3/12, 4/13, 5/14, 6/15 ... (all < 0.9 here)
    shadow = 1.0
    for n, v in enumerate(values):
        d = min(0.9, (1 + n) / (10 + n))
        shadow = d * shadow + (1 - d) * v
        set_w(m, v)
        ema.update(m)
        assert ema.shadow["w"].item() == pytest.approx(shadow, rel=1e-6)
        assert ema.shadow["count"].item() == v * 10  # buffers are copied, not averaged
    assert ema.num_updates == len(values)
    assert ema_decay_at(10_000, 0.9999) == pytest.approx(10001 / 10010)
    assert ema_decay_at(100_000, 0.9999) == 0.9999


def test_fixed_decay_and_copy_and_swap():
    m = Scalar(0.0)
    ema = EMA(m, decay=0.5, warmup=False)
    for v in [1.0, 1.0]:
        set_w(m, v)
        ema.update(m)
    assert ema.shadow["w"].item() == pytest.approx(0.75)  # 0 -> 0.5 -> 0.75
    set_w(m, 9.0)
    with ema.swap_into(m) as inner:
        assert inner is m and m.w.item() == pytest.approx(0.75)
    assert m.w.item() == 9.0  # raw weights restored
    other = Scalar(0.0)
    ema.copy_to(other)
    assert other.w.item() == pytest.approx(0.75)
    avg = ema.averaged_model(m)
    assert avg.w.item() == pytest.approx(0.75) and m.w.item() == 9.0


def test_state_dict_round_trip(tmp_path):
    m = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(m, decay=0.99)
    for _ in range(3):
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.1)
        ema.update(m)
    torch.save(ema.state_dict(), tmp_path / "ema.pt")
    ema2 = EMA(nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)), decay=0.5)
    ema2.load_state_dict(torch.load(tmp_path / "ema.pt", weights_only=True))
    assert ema2.num_updates == 3 and ema2.decay == 0.99
    for k in ema.shadow:
        assert torch.equal(ema.shadow[k], ema2.shadow[k])
    with pytest.raises(ValueError, match="does not match"):
        EMA(nn.Linear(3, 4)).load_state_dict(ema.state_dict())


def test_bad_decay():
    with pytest.raises(ValueError, match="decay"):
        EMA(nn.Linear(1, 1), decay=1.0)
