"""Feature extractors for FID/KID/IS: Inception-v3 "pool3" features, and batching helpers.

FID as published (Heusel et al. 2017) is the Fréchet distance between Inception-v3 features: the
2048-d output of the last average pool ("pool3") of the 2015 TensorFlow Inception graph, on images
resized to 299x299. Two weight files fit torchvision's ``inception_v3`` layout:

- ``pt_inception-2015-12-05-6726825d.pth`` (``variant="fid"``): the TF FID graph's weights ported
  by pytorch-fid. With the four small block changes of that graph (average pools that ignore padding,
  a max pool in the last block, 1008 classes) this gives FIDs close to the published TF numbers
  (pytorch-fid reports differences well under 1%, mostly from resizing). **Use this to compare
  with papers.** ``make fid-weights`` downloads it.
- ``inception_v3_google-0cc3c7bd.pth`` (``variant="torchvision"``): torchvision's ImageNet weights.
  A different training of the network: FIDs are **not** comparable to published ones (often off by
  several points), but fine for comparing your own models with each other.

No file is downloaded implicitly: without one, :func:`find_inception_weights` raises an error naming
the files, the folders searched and how to get them. The course's notebooks use the small
dataset-specific classifier of :mod:`ddpm_lib.evaluation.classifier` instead, which works offline (its FIDs are
not comparable to published FIDs either).
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ddpm_lib.files import sha256
from ddpm_lib.progress import is_interactive
from ddpm_lib.settings import settings

FID_WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
FID_WEIGHTS_URL = (
    "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + FID_WEIGHTS_FILE
)
TORCHVISION_WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
TORCHVISION_WEIGHTS_URL = "https://download.pytorch.org/models/" + TORCHVISION_WEIGHTS_FILE
WEIGHTS = {"fid": (FID_WEIGHTS_FILE, FID_WEIGHTS_URL), "torchvision": (TORCHVISION_WEIGHTS_FILE, TORCHVISION_WEIGHTS_URL)}


class InceptionWeightsNotFoundError(FileNotFoundError):
    """No Inception-v3 weight file was found (the message says where we looked and how to get one)."""


def default_weights_dir() -> Path:
    """``<data_dir>/fid_weights``, where ``make fid-weights`` puts the file."""

    return settings.data_dir / "fid_weights"


def _search_dirs() -> list[Path]:
    return [default_weights_dir(), Path(torch.hub.get_dir()) / "checkpoints"]


def find_inception_weights(path: str | Path | None = None) -> Path:
    """The Inception weight file to use: ``path`` if given, else the first of the two known files
    (FID weights first) in ``<data_dir>/fid_weights`` or torch hub's checkpoint cache."""
    if path is not None:
        p = Path(path).expanduser()
        if p.is_file():
            return p
        raise InceptionWeightsNotFoundError(
            f"Inception weights file {p} does not exist. Pass the path of {FID_WEIGHTS_FILE} "
            f"(download: {FID_WEIGHTS_URL}) or run `make fid-weights`."
        )
    looked = []
    for name in (FID_WEIGHTS_FILE, TORCHVISION_WEIGHTS_FILE):
        for d in _search_dirs():
            looked.append(d / name)
            if (d / name).is_file():
                return d / name
    where = "\n  ".join(str(p) for p in looked)
    raise InceptionWeightsNotFoundError(
        "No Inception-v3 weights found for FID. Looked for:\n  "
        f"{where}\n"
        f"Get the FID weights (matches published FIDs) with `make fid-weights` (needs internet), or "
        f"download {FID_WEIGHTS_URL} into {default_weights_dir()}, or pass --inception-weights PATH. "
        "Offline, use the course's classifier features instead (--features classifier)."
    )


# --- The TF FID graph's block variants (branch_pool differs from torchvision's blocks) ---------------


def _fid_blocks():
    from torchvision.models import inception as tvi  # slow import (~1 s)

    class FIDInceptionA(tvi.InceptionA):
        def _forward(self, x):
            b1 = self.branch1x1(x)
            b5 = self.branch5x5_2(self.branch5x5_1(x))
            b3 = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
            bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return [b1, b5, b3, bp]

    class FIDInceptionC(tvi.InceptionC):
        def _forward(self, x):
            b1 = self.branch1x1(x)
            b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
            bd = x
            for conv in (self.branch7x7dbl_1, self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4, self.branch7x7dbl_5):
                bd = conv(bd)
            bp = self.branch_pool(F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))
            return [b1, b7, bd, bp]

    def _e_branches(block, x, pooled):
        b1 = block.branch1x1(x)
        b3 = block.branch3x3_1(x)
        b3 = torch.cat([block.branch3x3_2a(b3), block.branch3x3_2b(b3)], 1)
        bd = block.branch3x3dbl_2(block.branch3x3dbl_1(x))
        bd = torch.cat([block.branch3x3dbl_3a(bd), block.branch3x3dbl_3b(bd)], 1)
        return [b1, b3, bd, block.branch_pool(pooled)]

    class FIDInceptionE1(tvi.InceptionE):  # Mixed_7b: average pool without the padding
        def _forward(self, x):
            return _e_branches(self, x, F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False))

    class FIDInceptionE2(tvi.InceptionE):  # Mixed_7c: a max pool (a quirk of the TF graph)
        def _forward(self, x):
            return _e_branches(self, x, F.max_pool2d(x, 3, stride=1, padding=1))

    return FIDInceptionA, FIDInceptionC, FIDInceptionE1, FIDInceptionE2


def build_inception(variant: str = "fid") -> nn.Module:
    """torchvision's Inception-v3 layout with random weights; ``variant="fid"`` swaps in the TF FID
    graph's blocks and 1008 classes, ``"torchvision"`` is the stock ImageNet model (1000 classes)."""
    from torchvision.models import inception_v3  # slow import (~1 s)

    if variant not in WEIGHTS:
        raise ValueError(f"variant must be 'fid' or 'torchvision', got {variant!r}.")
    num_classes = 1008 if variant == "fid" else 1000
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=num_classes, transform_input=False)
    if variant == "fid":
        A, C, E1, E2 = _fid_blocks()
        net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = A(192, 32), A(256, 64), A(288, 64)
        net.Mixed_6b, net.Mixed_6c = C(768, 128), C(768, 160)
        net.Mixed_6d, net.Mixed_6e = C(768, 160), C(768, 192)
        net.Mixed_7b, net.Mixed_7c = E1(1280), E2(2048)
    return net


class InceptionFeatures(nn.Module):
    """Inception-v3 pool3 features (B, 2048) and logits for images in [-1, 1] of any size.

    Gray images are repeated to 3 channels; images are resized to 299x299 (bilinear), as in FID.
    The Google weights expect inputs in [-1, 1], which is the course's image range, so no further
    normalisation is applied.
    """

    num_features = 2048

    def __init__(self, weights_path: str | Path | None = None, *, variant: str | None = None, random_init: bool = False):
        super().__init__()
        if random_init:
            self.variant = variant or "fid"
            self.net = build_inception(self.variant)
            self.weights_path = None
        else:
            path = find_inception_weights(weights_path)
            state = torch.load(path, map_location="cpu", weights_only=True)
            state = {k: v for k, v in state.items() if not k.startswith("AuxLogits.")}
            detected = "fid" if state["fc.weight"].shape[0] == 1008 else "torchvision"
            if variant is not None and variant != detected:
                raise ValueError(f"{path} holds the {detected!r} weights, not {variant!r}.")
            self.variant = detected
            self.net = build_inception(detected)
            self.net.load_state_dict(state)
            self.weights_path = path
        self.eval()

    def _prepare(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"images must be (B, 1 or 3, H, W) in [-1, 1], got shape {tuple(x.shape)}.")
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        x = x.float()
        if x.shape[-2:] != (299, 299):
            x = F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)
        return x

    def features(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = self._prepare(x)
        for layer in (
            n.Conv2d_1a_3x3, n.Conv2d_2a_3x3, n.Conv2d_2b_3x3, n.maxpool1, n.Conv2d_3b_1x1, n.Conv2d_4a_3x3,
            n.maxpool2, n.Mixed_5b, n.Mixed_5c, n.Mixed_5d, n.Mixed_6a, n.Mixed_6b, n.Mixed_6c, n.Mixed_6d,
            n.Mixed_6e, n.Mixed_7a, n.Mixed_7b, n.Mixed_7c,
        ):
            x = layer(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.fc(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@torch.no_grad()
def compute_features(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor | Iterable,
    batch_size: int = 256,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Apply ``fn`` (e.g. ``classifier.features``) batch by batch; returns float64 CPU features (N, D).

    ``images`` is a tensor (N, C, H, W), or an iterable of batches (tensors, or (images, labels)
    tuples as a DataLoader yields them).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}.")
    if isinstance(images, torch.Tensor):
        batches = images.split(batch_size)
    else:
        batches = images
    out = []
    for batch in batches:
        if isinstance(batch, (tuple, list)):
            batch = batch[0]
        if device is not None:
            batch = batch.to(device)
        out.append(fn(batch).detach().to("cpu", torch.float64))
    if not out:
        raise ValueError("compute_features got no images.")
    return torch.cat(out)


def hash_prefix_from_name(name: str) -> str | None:
    """The sha256 prefix a weights file name carries, torch hub's convention: ``name-<hex>.pth`` -> ``<hex>``."""
    m = re.search(r"-([0-9a-f]{8,64})\.[A-Za-z0-9]+$", name)
    return m.group(1) if m else None


class WeightsDownloadError(OSError):
    """A download failed or gave a file whose sha256 does not match its name (nothing is left behind)."""


def fetch_verified(url: str, target: str | Path, progress: bool = True) -> Path:
    """Download ``url`` to ``target``, keeping it only if its sha256 starts with the prefix in its name.

    torch hub's ``download_url_to_file`` writes the bytes to a temporary ``<target>.<uuid>.partial``
    file, checks the prefix, and moves the file into place only when complete and verified; on any
    failure (a dropped connection, Ctrl-C, a wrong hash) it removes the partial file, so nothing is left
    behind and the next run starts clean.
    """
    target = Path(target)
    prefix = hash_prefix_from_name(target.name)
    if prefix is None:
        raise ValueError(f"{target.name}: the file name carries no sha256 prefix (name-<hex>.ext), nothing to verify against.")
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, str(target), hash_prefix=prefix, progress=progress)
    except RuntimeError as err:  # the hash mismatch
        raise WeightsDownloadError(f"{url}: {err}; nothing was kept.") from None
    except OSError as err:  # URLError, connection reset, disk full
        raise WeightsDownloadError(f"{url}: download failed ({err}); nothing was kept. Are you online?") from None
    return target


def download_weights(variant: str = "fid", dest_dir: str | Path | None = None) -> Path:
    """Download the Inception weights (needs internet) into ``dest_dir`` (default: data_dir/fid_weights).

    The file's sha256 must start with the prefix its name carries (``...-6726825d.pth``); a file
    already there is checked the same way (and left in place, with the fix named, if it does not match).
    """
    if variant not in WEIGHTS:
        raise ValueError(f"variant must be 'fid' or 'torchvision', got {variant!r}.")
    name, url = WEIGHTS[variant]
    dest = Path(dest_dir) if dest_dir is not None else default_weights_dir()
    target = dest / name
    if target.is_file():
        digest, prefix = sha256(target), hash_prefix_from_name(name)
        if not digest.startswith(prefix):
            raise WeightsDownloadError(f"{target} exists but its sha256 starts with {digest[:len(prefix)]}, not {prefix}: "
                                       "delete it and run `make fid-weights` again.")
        print(f"{target} already exists (sha256 {digest[:len(prefix)]}... verified).")
        return target

    fetch_verified(url, target, progress=is_interactive(sys.stderr))  # tqdm writes to stderr: no bar in a log
    print(f"saved {target} (sha256 verified)")
    return target


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m ddpm_lib.evaluation.features", description="Inception-v3 weights for FID.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("download", help="download the Inception-v3 weights (needs internet), verifying their sha256",
                       description="Download the Inception-v3 weights, keeping them only if their sha256 matches the file name.")
    d.add_argument("--variant", choices=sorted(WEIGHTS), default="fid",
                   help="fid: the TF FID graph's weights, as in papers (default); torchvision: ImageNet weights")
    d.add_argument("--dir", default=None, help="target folder (default: <data_dir>/fid_weights)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        download_weights(args.variant, args.dir)
    except WeightsDownloadError as err:
        print(f"python -m ddpm_lib.evaluation.features download: error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
