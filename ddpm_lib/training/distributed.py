"""Multi-GPU (or multi-process CPU) training with DistributedDataParallel, launched by ``torchrun``.

    torchrun --nproc_per_node 4 -m ddpm_lib train --preset cifar10_ddpm --dataset cifar10 --out runs/c10 ...

``torchrun`` starts one process per GPU and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``. The :class:`~ddpm_lib.training.trainer.Trainer` calls
:func:`init_distributed`, which joins the process group (NCCL on GPUs, gloo on CPUs), and then

- wraps the model in ``DistributedDataParallel`` (gradients are averaged across processes in the
  backward pass, so every process holds the same weights after each step);
- splits each epoch's shuffled order between processes with a ``DistributedSampler`` (the order is a
  function of the seed and the epoch, the same in every process);
- logs, samples and writes checkpoints on rank 0 only; the others stay silent.

``batch_size`` in the config is the global batch (all processes, all accumulation steps together), so
the same config gives the same optimisation whatever the number of GPUs.
"""

from __future__ import annotations

import datetime
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from ddpm_lib.files import atomic_write
from ddpm_lib.training.checkpoint import sha256_of_weights


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    """True when the environment describes a multi-process launch (WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_distributed(device: torch.device | None = None, timeout_s: float = 600.0) -> DistInfo:
    """Join the process group described by torchrun's environment variables (no-op for a single process).

    The backend is NCCL when each process drives a CUDA GPU, gloo otherwise (CPU). Returns this
    process's :class:`DistInfo`. Safe to call twice.
    """
    if not launched_by_torchrun():
        return DistInfo()
    rank = int(os.environ["RANK"])
    world = int(os.environ["WORLD_SIZE"])
    local = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = torch.cuda.is_available() and (device is None or torch.device(device).type == "cuda")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(local)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
    return DistInfo(rank=rank, world_size=world, local_rank=local, backend=dist.get_backend())


def device_for(info: DistInfo, requested: torch.device) -> torch.device:
    """The device this process trains on: ``cuda:LOCAL_RANK`` under a CUDA launch, else ``requested``."""
    if info.enabled and requested.type == "cuda":
        return torch.device("cuda", info.local_rank)
    return requested


def all_reduce_mean(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """The mean of ``x`` over all processes (``x`` itself when not distributed)."""
    if not info.enabled:
        return x
    y = x.detach().clone()
    dist.all_reduce(y, op=dist.ReduceOp.SUM)
    return y / info.world_size


def all_gather_objects(obj, info: DistInfo) -> list:
    """Every process's ``obj`` (a small picklable value), in rank order."""
    if not info.enabled:
        return [obj]
    out = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def cleanup(info: DistInfo) -> None:
    """Leave the process group (call at the end of a torchrun launch)."""
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def broadcast_object(obj, info: DistInfo):
    """Rank 0's ``obj`` (a small picklable value) in every process."""
    if not info.enabled:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def rank_weight_hashes(model: torch.nn.Module, info: DistInfo, run_dir) -> list[str]:
    """SHA-256 of the weights in every process (identical when DDP kept them in sync); rank 0 writes them
    with the world size and backend to ``run_dir/distributed.json``."""

    hashes = all_gather_objects(sha256_of_weights(model.state_dict()), info)
    if info.is_main:
        atomic_write(Path(run_dir) / "distributed.json", json.dumps(
            {"world_size": info.world_size, "backend": info.backend, "weight_sha256": hashes}, indent=2))
    return hashes


def any_process(flag: bool, info: DistInfo, device: torch.device | None = None) -> bool:
    """True in every process when ``flag`` is true in at least one (e.g. a stop signal that reached only some)."""
    if not info.enabled:
        return bool(flag)
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
