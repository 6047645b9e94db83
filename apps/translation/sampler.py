"""Batches of sentences of similar length, so that padding is small, in a different order every epoch; also under
DDP."""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch
from torch.utils.data import Dataset, DistributedSampler


class BucketSampler(DistributedSampler):
    """Orders a dataset so that each batch holds sentences of similar length, and splits it across processes.

    A DistributedSampler subclass so that Lightning keeps it under DDP instead of wrapping it (which would reshuffle
    the buckets away). Per epoch: shuffle (when training), pad to a multiple of the process count by repeating
    items (evaluation removes the repeats by index), sort pools of 50 batches by length, cut the result into groups
    of batch_size * processes and deal each group round-robin, so every process gets one batch of similar lengths
    per group and all processes get the same number of batches; the order of the groups is shuffled.
    """

    def __init__(self, dataset: Dataset, batch_size: int, shuffle: bool, seed: int = 0,
                 num_replicas: int | None = None, rank: int | None = None):
        """The process count and rank default to torch.distributed's, or one process when it is not running."""
        distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
        if num_replicas is None:
            num_replicas = torch.distributed.get_world_size() if distributed else 1
        if rank is None:
            rank = torch.distributed.get_rank() if distributed else 0
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[int]:
        rng = random.Random(self.seed + self.epoch)
        order = list(range(len(self.dataset)))
        if self.shuffle:
            rng.shuffle(order)
        order += order[: self.total_size - len(order)]
        group = self.batch_size * self.num_replicas
        pool = group * 50 if self.shuffle else len(order)
        by_length = [i for start in range(0, len(order), pool)
                     for i in sorted(order[start : start + pool], key=self.dataset.length)]
        groups = [by_length[i : i + group] for i in range(0, len(by_length), group)]
        if self.shuffle:  # the one short group stays last, so that every other batch is a whole group's share
            full = groups[:-1] if len(groups[-1]) < group else groups
            rng.shuffle(full)
            groups = full + groups[len(full) :]
        return iter([i for g in groups for i in g[self.rank :: self.num_replicas]])


# ----------------------------------------------------------------------------------------------- the module
