"""ConvRecurrent: a cell's recurrence over a sequence of feature maps, its two matmuls made convolutions.

ConvLSTM (Shi et al. 2015) and ConvGRU (Ballas et al. 2016) for any cell of ``rnn_core.cells`` whose step is
``pointwise`` on the two projections: every position of the grid keeps its own state, the weights are shared over the
grid, and a k x k kernel lets each state read its neighbours' previous states. So motion, which carries content from
one position to the next, is what the gates see, and what is learnt at one place of the frame holds at every other.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnn_core.cells import CELLS, RecurrentCell, State, make_cell
from rnn_core.checks import check_lengths, check_maps, check_stack, in_parameter_dtype

#: the parameters that become convolution kernels; a cell's others (peepholes) stay per channel
_PROJECTIONS = {"weight_ih": "bias_ih", "weight_hh": "bias_hh"}


class ConvRecurrent(nn.Module):
    """Runs a cell over a sequence of feature maps ``(B, T, C, H, W)`` with convolutional gates.

    Args:
        cell: "rnn", "lstm", "gru", "peephole_lstm" or "coupled_lstm" (``rnn_core.CELLS``; a GRU resets after the
            hidden projection, as torch.nn.GRU).
        input_channels: channels of each input map.
        hidden_channels: channels of the state at every position.
        kernel_size: odd side of the square kernels of the input and hidden convolutions ("same" padding, so the
            state keeps the input's grid).
        num_layers: stacked layers; each layer above the first reads the one below.
        dropout: dropout on the outputs of every layer but the last.

    Each layer is a cell of the named kind whose ``weight_ih (G * hidden, C, k, k)`` and ``weight_hh
    (G * hidden, hidden, k, k)`` are convolution kernels (initialised as ``torch.nn.Conv2d``'s); its gates are the
    cell's own ``pointwise`` on the two convolutions, channels last. States are ``(B, hidden, H, W)`` tensors.
    """

    def __init__(self, cell: str, input_channels: int, hidden_channels: int, kernel_size: int = 3,
                 num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r}; expected one of {sorted(CELLS)}")
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd and positive (the state keeps the grid), got {kernel_size}")
        check_stack(num_layers, dropout)
        self.kernel_size, self.input_channels, self.hidden_channels = kernel_size, input_channels, hidden_channels
        self.layers = nn.ModuleList(
            self._conv_cell(cell, input_channels if layer == 0 else hidden_channels, hidden_channels)
            for layer in range(num_layers))
        self.dropout = nn.Dropout(dropout)

    def _conv_cell(self, name: str, input_channels: int, hidden_channels: int) -> RecurrentCell:
        """A cell whose two projection weights are replaced by convolution kernels of the same rows."""
        cell = make_cell(name, input_channels, hidden_channels)
        k = self.kernel_size
        for weight, bias in _PROJECTIONS.items():
            rows, columns = cell.parameter_shapes(input_channels)[weight]
            bound = 1 / math.sqrt(columns * k * k)  # torch.nn.Conv2d's default: uniform in +-1/sqrt(fan_in)
            setattr(cell, weight, nn.Parameter(torch.empty(rows, columns, k, k).uniform_(-bound, bound)))
            setattr(cell, bias, nn.Parameter(torch.empty(rows).uniform_(-bound, bound)))
        return cell

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.layers[0].state_names

    def _step(self, cell: RecurrentCell, p: dict[str, Tensor], x: Tensor, state: State) -> State:
        padding = self.kernel_size // 2
        # under autocast the convolutions come in the autocast dtype; the cell's pointwise math runs in x's
        gi = F.conv2d(x, p["weight_ih"], p["bias_ih"], padding=padding).movedim(1, -1).to(x.dtype)
        gh = F.conv2d(state[0], p["weight_hh"], p["bias_hh"], padding=padding).movedim(1, -1)
        _, new = cell.pointwise(gi, gh, tuple(s.movedim(1, -1) for s in state), p)
        return tuple(s.movedim(-1, 1) for s in new)

    def _checked(self, x, lengths) -> tuple[Tensor, Tensor | None]:
        """forward's arguments checked (rnn_core.checks): x in the parameters' dtype, lengths None when all are T."""
        weight = self.layers[0].weight_hh
        check_maps(x, self.input_channels, weight)
        B, T = x.shape[:2]
        x = in_parameter_dtype(x, weight.dtype, "ConvRecurrent's input x")
        return x, check_lengths(lengths, T, B, takes_state=False)

    def forward(self, x: Tensor, lengths: Tensor | Sequence[int] | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """Runs every layer over the sequence.

        Args:
            x: feature maps (B, T, C, H, W).
            lengths: valid steps per sequence, each in [1, T]; past a sequence's end its state stays as it was and its
                outputs are zero. None: every sequence has T steps.

        Returns:
            outputs (B, T, hidden, H, W) of the top layer, and the final state: one tensor
            (num_layers, B, hidden, H, W) per state name (h, or h and c). An empty batch gives empty ones.

        Raises ValueError (a wrong shape or value) or TypeError (a wrong kind or dtype) naming the argument at fault.
        """
        x, lengths = self._checked(x, lengths)
        B, T = x.shape[:2]
        valid = None if lengths is None else (torch.arange(T).unsqueeze(1) < lengths).to(x.device)  # (T, B)
        finals = []
        for index, cell in enumerate(self.layers):
            if index:
                x = self.dropout(x)
            state = tuple(x.new_zeros(B, self.hidden_channels, *x.shape[-2:]) for _ in cell.state_names)
            p = cell.own_parameters()
            outputs = []
            for t in range(T):
                new = self._step(cell, p, x[:, t], state)
                if valid is not None:
                    keep = valid[t].view(B, 1, 1, 1)
                    new = tuple(torch.where(keep, n, s) for n, s in zip(new, state, strict=True))
                    outputs.append(new[0] * keep)
                else:
                    outputs.append(new[0])
                state = new
            x = torch.stack(outputs, dim=1)
            finals.append(state)
        return x, tuple(torch.stack(layer_states) for layer_states in zip(*finals, strict=True))

