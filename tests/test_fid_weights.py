"""`make fid-weights`: the download is kept only if its sha256 matches the prefix in its name (no network)."""

from __future__ import annotations

import hashlib
import io

import pytest
import torch.hub

from ddpm_lib.evaluation import features
from ddpm_lib.evaluation.features import (
    WeightsDownloadError,
    download_weights,
    fetch_verified,
    hash_prefix_from_name,
)

CONTENT = b"not really inception weights\n" * 1000
SHA = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def served(tmp_path):
    """A local file and its file:// URL (urllib reads it exactly as it would an https download)."""
    src = tmp_path / "server" / "weights.bin"
    src.parent.mkdir()
    src.write_bytes(CONTENT)
    return src.as_uri()


def test_known_weight_files_carry_a_prefix():
    assert hash_prefix_from_name(features.FID_WEIGHTS_FILE) == "6726825d"
    assert hash_prefix_from_name(features.TORCHVISION_WEIGHTS_FILE) == "0cc3c7bd"
    assert hash_prefix_from_name("weights.pth") is None


def test_matching_file_is_kept(tmp_path, served):
    target = tmp_path / "dest" / f"fake-{SHA[:8]}.pth"
    assert fetch_verified(served, target, progress=False) == target
    assert target.read_bytes() == CONTENT
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_wrong_hash_leaves_nothing(tmp_path, served):
    wrong = "0" * 8 if not SHA.startswith("0" * 8) else "f" * 8
    target = tmp_path / "dest" / f"fake-{wrong}.pth"
    with pytest.raises(WeightsDownloadError, match=wrong):
        fetch_verified(served, target, progress=False)
    assert list(target.parent.iterdir()) == []


def test_dropped_connection_leaves_no_partial_file(tmp_path, monkeypatch):
    class Dropping(io.BytesIO):
        """Serves half the file, then the connection drops."""

        def info(self):
            return _Headers(len(CONTENT))

        def read(self, n=-1):
            if self.tell() >= len(CONTENT) // 2:
                raise ConnectionResetError("connection reset by peer")
            return super().read(min(n, 4096))

    class _Headers:
        def __init__(self, n):
            self.n = n

        def get_all(self, key):
            return [str(self.n)]

    monkeypatch.setattr(torch.hub, "urlopen", lambda req: Dropping(CONTENT))
    target = tmp_path / "dest" / f"fake-{SHA[:8]}.pth"
    with pytest.raises(WeightsDownloadError, match="connection reset"):
        fetch_verified("https://example.invalid/weights.pth", target, progress=False)
    assert list(target.parent.iterdir()) == []


def test_download_weights_verifies_new_and_existing_files(tmp_path, served, monkeypatch, capsys):
    name = f"fake-{SHA[:8]}.pth"
    monkeypatch.setitem(features.WEIGHTS, "fid", (name, served))
    dest = tmp_path / "fid_weights"
    assert download_weights("fid", dest).read_bytes() == CONTENT
    assert "verified" in capsys.readouterr().out
    assert download_weights("fid", dest) == dest / name  # present and verified: no second download
    (dest / name).write_bytes(b"corrupted")
    with pytest.raises(WeightsDownloadError, match="delete it"):
        download_weights("fid", dest)
    assert (dest / name).read_bytes() == b"corrupted"  # never deleted without being told
    assert features.main(["download", "--variant", "fid", "--dir", str(dest)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "delete it" in err
