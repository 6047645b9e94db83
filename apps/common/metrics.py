"""Evaluation results that are the same on 1 process as on N.

A DistributedSampler pads the evaluation set so that every process gets as many samples: a few samples are seen
twice. Averaging per process and then across processes counts them twice; instead every process keeps one record
per sample, keyed by the sample's index in the dataset, the records of every process are gathered, repeated indices
dropped, and only then are metrics computed, in index order.
"""

from __future__ import annotations

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor


def gather_by_index(trainer: pl.Trainer, records: list[dict]) -> list[dict]:
    """Every process's evaluation records (dicts with the sample's ``index``), each sample once, in index order: the
    repeats a DistributedSampler adds are dropped."""
    if trainer.world_size > 1:
        parts: list[list] = [[] for _ in range(trainer.world_size)]
        torch.distributed.all_gather_object(parts, records)
        records = [record for part in parts for record in part]
    return sorted({record["index"]: record for record in records}.values(), key=lambda record: record["index"])


def token_nll_sums(logits: Tensor, targets: Tensor, pad: int) -> Tensor:
    """Per sequence, the summed cross-entropy of its tokens and how many there are (padding left out): (B, 2).
    logits (B, T, V), targets (B, T)."""
    nll = F.cross_entropy(logits.transpose(1, 2).float(), targets, ignore_index=pad, reduction="none")
    return torch.stack((nll.sum(1), (targets != pad).sum(1).to(nll.dtype)), dim=1)
