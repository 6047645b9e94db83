"""Attention over a memory (encoder states, image grid cells): additive (Bahdanau) or multiplicative (Luong).

score(q, k) for a query q (the decoder state) and each memory vector k:
- "additive" (Bahdanau et al. 2015): v^T tanh(W_q q + W_k k)
- "dot" (Luong et al. 2015): q^T k (query and memory of the same width)
- "general" (Luong et al. 2015): q^T W k
The weights are a softmax of the scores over the memory, with padded positions masked out; the context is the
weighted sum of the memory.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

ATTENTION_KINDS = ("additive", "dot", "general")


class Attention(nn.Module):
    """Scores one query per sequence against its memory; ``prepare`` once per memory, then ``forward`` per step."""

    def __init__(self, kind: str, query_size: int, memory_size: int, attention_size: int | None = None) -> None:
        super().__init__()
        if kind not in ATTENTION_KINDS:
            raise ValueError(f"unknown attention {kind!r}; expected one of {ATTENTION_KINDS}")
        if kind == "dot" and query_size != memory_size:
            raise ValueError(
                f"dot attention needs query_size == memory_size, got {query_size} and {memory_size}; "
                f"use 'general' or 'additive'"
            )
        self.kind = kind
        if kind == "additive":
            attention_size = attention_size or query_size
            self.query_proj = nn.Linear(query_size, attention_size, bias=False)
            self.memory_proj = nn.Linear(memory_size, attention_size)
            self.v = nn.Linear(attention_size, 1, bias=False)
        elif kind == "general":
            self.memory_proj = nn.Linear(memory_size, query_size, bias=False)

    def prepare(self, memory: Tensor) -> Tensor:
        """The query-independent part of the scores, computed once per memory: (B, S, M) -> (B, S, A)."""
        return memory if self.kind == "dot" else self.memory_proj(memory)

    def forward(
        self, query: Tensor, memory: Tensor, keys: Tensor, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor]:
        """Attends with ``query (B, Q)`` or a block of queries ``(B, T, Q)``.

        Args:
            memory: (B, S, M) the vectors to mix.
            keys: ``prepare(memory)``.
            mask: (B, S), True where the memory is real (not padding); None when nothing is padded.

        Returns:
            context (B, M) or (B, T, M), and weights (B, S) or (B, T, S), summing to one over S.
        """
        single = query.dim() == 2
        q = query.unsqueeze(1) if single else query  # (B, T, Q)
        if self.kind == "additive":
            scores = self.v(torch.tanh(self.query_proj(q).unsqueeze(2) + keys.unsqueeze(1))).squeeze(-1)
        else:
            scores = torch.bmm(q, keys.transpose(1, 2))  # (B, T, S)
        if mask is not None:
            scores = scores.masked_fill(~mask.unsqueeze(1), float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, memory)
        return (context.squeeze(1), weights.squeeze(1)) if single else (context, weights)
