"""Encoders that turn inputs into a memory (vectors to attend over) and a summary (a vector to start a decoder)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rnn_core.cells import RecurrentCell
from rnn_core.recurrent import Recurrent


class SequenceEncoder(nn.Module):
    """Token embeddings, then Recurrent over the sequence (any cell, layers, both directions).

    Args:
        vocab_size: input vocabulary size.
        embedding_size: width of the token embeddings.
        hidden_size: width of the recurrent state per direction.
        cell: "rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm", or a RecurrentCell.
        num_layers: stacked layers.
        bidirectional: read the sequence both ways; memory vectors are then 2 * hidden_size wide.
        dropout: on the embeddings and between layers.
        padding_idx: the padding token.
        backend: the Recurrent backend.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        cell: str | RecurrentCell = "lstm",
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        padding_idx: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.rnn = Recurrent(
            cell, embedding_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            dropout=dropout, backend=backend,
        )
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """tokens (B, S) and lengths (B,) -> memory (B, S, output_size), mask (B, S) True on real tokens, and
        summary (B, output_size): the top layer's final h of each direction, concatenated."""
        out, state = self.rnn(self.dropout(self.embedding(tokens)), lengths)
        h = state[0] if isinstance(state, tuple) else state
        directions = 2 if self.rnn.bidirectional else 1
        summary = torch.cat(tuple(h[-directions:]), dim=-1)
        mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths.to(tokens.device).unsqueeze(1)
        return out, mask, summary
