"""Evaluation results that are the same on 1 process as on N.

A DistributedSampler pads the evaluation set so that every process gets as many samples: a few samples are seen
twice. Averaging per process and then across processes counts them twice; this metric keeps one row of sums per
sample, keyed by the sample's index in the dataset, gathers the rows of every process, drops repeated indices and
only then adds up, in float64 and in index order.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat


class SampleSums(Metric):
    """Per-sample sums (any number of columns) summed over the distinct samples of an evaluation epoch."""

    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("index", default=[], dist_reduce_fx="cat")
        self.add_state("sums", default=[], dist_reduce_fx="cat")

    def update(self, index: Tensor, sums: Tensor) -> None:
        """``index (B,)``: each sample's index in its dataset; ``sums (B, K)``: its K sums."""
        if index.shape[0] != sums.shape[0]:
            raise ValueError(f"index has {index.shape[0]} samples but sums has {sums.shape[0]}")
        self.index.append(index.detach().long())
        self.sums.append(sums.detach().double())

    def compute(self) -> tuple[Tensor, int]:
        """The K sums over distinct samples, and how many distinct samples there were."""
        index, sums = dim_zero_cat(self.index), dim_zero_cat(self.sums)
        index, order = torch.sort(index, stable=True)
        first = torch.ones_like(index, dtype=torch.bool)
        first[1:] = index[1:] != index[:-1]
        return sums[order][first].sum(0), int(first.sum())


def gather_by_index(trainer: pl.Trainer, rows: list[tuple]) -> list[tuple]:
    """Every process's evaluation rows (tuples whose first item is the sample's index), each sample once, in index
    order: the repeats a DistributedSampler adds are dropped."""
    if trainer.world_size > 1:
        parts: list[list] = [[] for _ in range(trainer.world_size)]
        torch.distributed.all_gather_object(parts, rows)
        rows = [row for part in parts for row in part]
    return sorted({row[0]: row for row in rows}.values(), key=lambda row: row[0])


def token_nll_sums(logits: Tensor, targets: Tensor, pad: int) -> Tensor:
    """Per sequence, the summed cross-entropy of its tokens and how many there are (padding left out): (B, 2),
    the rows SampleSums adds up into a loss per token. logits (B, T, V), targets (B, T)."""
    nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=pad, reduction="none")
    return torch.stack((nll.sum(1), (targets != pad).sum(1).to(nll.dtype)), dim=1)
