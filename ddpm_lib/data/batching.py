"""The training data order: a function of (seed, epoch), split between processes, resumable mid-epoch.

Each epoch is a ``DistributedSampler`` permutation (seed ``seed``, epoch ``epoch``; one process gets
the whole of it) cut into micro-batches, the last incomplete one dropped. :class:`EpochBatches` yields
batches forever and remembers its position ``(epoch, batch_in_epoch)``, which a checkpoint stores, so
that a resumed run sees exactly the batches the uninterrupted one would have seen.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, DistributedSampler


class EpochBatches:
    """Micro-batches of ``dataset`` forever, from position ``(epoch, batch_in_epoch)`` on."""

    def __init__(self, dataset, micro_batch: int, seed: int, rank: int = 0, world_size: int = 1,
                 num_workers: int = 0, pin_memory: bool = False, epoch: int = 0, batch_in_epoch: int = 0):
        self.dataset, self.micro_batch, self.seed = dataset, micro_batch, seed
        self.rank, self.world_size = rank, world_size
        self.num_workers, self.pin_memory = num_workers, pin_memory
        self.epoch, self.batch_in_epoch = epoch, batch_in_epoch
        if len(dataset) // world_size < micro_batch:
            raise ValueError(
                f"the dataset has {len(dataset)} images, fewer than one batch of {micro_batch} per process: "
                "lower TrainConfig.batch_size or use more images (max_items)."
            )

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The index lists of epoch ``epoch``'s micro-batches for this process."""
        sampler = DistributedSampler(self.dataset, num_replicas=self.world_size, rank=self.rank,
                                     shuffle=True, seed=self.seed, drop_last=True)
        sampler.set_epoch(epoch)
        idx = list(sampler)
        n = len(idx) // self.micro_batch
        return [idx[i * self.micro_batch:(i + 1) * self.micro_batch] for i in range(n)]

    def __iter__(self):
        while True:
            batches = self.epoch_batches(self.epoch)[self.batch_in_epoch:]
            loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.num_workers,
                                pin_memory=self.pin_memory,
                                generator=torch.Generator().manual_seed(self.seed + self.epoch))
            for batch in loader:
                self.batch_in_epoch += 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0
