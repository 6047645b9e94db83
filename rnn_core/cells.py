"""Recurrent cells: one step of a recurrence, in the lecture's textbook form.

A cell maps an input x_t and a state to (h_t, new state). Every cell here follows one interface:

- ``num_gates``: how many hidden-sized blocks its input and hidden projections produce;
- ``state_names``: ``("h",)`` or ``("h", "c")``: the state is a tuple of ``(batch, hidden)`` tensors;
- parameters ``weight_ih (G*H, I)``, ``weight_hh (G*H, H)``, ``bias_ih``, ``bias_hh`` in torch.nn's layout and gate
  order, plus whatever a variant adds (``parameter_shapes``);
- ``pointwise(gi, gh, state, p)``: the step given the input projection ``gi = W_ih x + b_ih`` and the hidden
  projection ``gh = W_hh h + b_hh``. Most cells only write this method.

A cell holds its own parameters when used alone, like ``torch.nn.LSTMCell``; ``rnn_core.Recurrent`` runs it over
time and holds the parameters of every layer itself under torch.nn's names. The math methods therefore take the
parameters explicitly as ``p``, a mapping from the names above to tensors.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnn_core.checks import in_parameter_dtype

State = tuple[Tensor, ...]


class RecurrentCell(nn.Module):
    """Base class of all cells; see the module docstring for the interface."""

    num_gates: ClassVar[int]
    state_names: ClassVar[tuple[str, ...]] = ("h",)
    #: the torch._VF kernel computing the same function with the same parameters, if any
    torch_kernel: ClassVar[str | None] = None

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        if input_size < 1 or hidden_size < 1:
            raise ValueError(f"input_size and hidden_size must be positive, got {input_size} and {hidden_size}")
        self.input_size = input_size
        self.hidden_size = hidden_size
        for name, param in self.make_parameters(input_size).items():
            self.register_parameter(name, param)

    def parameter_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        """Shapes of the parameters for a given input width (layers above the first see other widths)."""
        gates, hidden = self.num_gates * self.hidden_size, self.hidden_size
        return {
            "weight_ih": (gates, input_size),
            "weight_hh": (gates, hidden),
            "bias_ih": (gates,),
            "bias_hh": (gates,),
        }

    def make_parameters(self, input_size: int) -> dict[str, nn.Parameter]:
        """Fresh parameters, initialised as torch.nn does: uniform in +-1/sqrt(hidden_size)."""
        bound = 1.0 / math.sqrt(self.hidden_size)
        return {
            name: nn.Parameter(torch.empty(shape).uniform_(-bound, bound))
            for name, shape in self.parameter_shapes(input_size).items()
        }

    def spawn(self, input_size: int) -> RecurrentCell:
        """A cell of the same kind and options for another input width; override if __init__ takes more."""
        return type(self)(input_size, self.hidden_size)

    @property
    def has_cell_state(self) -> bool:
        return len(self.state_names) > 1

    def initial_state(self, batch_size: int, like: Tensor) -> State:
        """Zeros for every state tensor, on the device and dtype of ``like``."""
        return tuple(like.new_zeros(batch_size, self.hidden_size) for _ in self.state_names)

    def own_parameters(self) -> dict[str, Tensor]:
        return dict(self.named_parameters(recurse=False))

    def forward(self, x: Tensor, state: State | None = None) -> tuple[Tensor, State]:
        """One step with the cell's own parameters: ``x (batch, input_size)`` -> ``(h, state)``."""
        p = self.own_parameters()
        x = in_parameter_dtype(x, p["weight_ih"].dtype, "the cell's input")
        if state is None:
            state = self.initial_state(x.shape[0], x)
        return self.step(F.linear(x, p["weight_ih"], p["bias_ih"]).to(x.dtype), state, p)

    def step(self, gi: Tensor, state: State, p: Mapping[str, Tensor]) -> tuple[Tensor, State]:
        """One step given the input projection ``gi``; cells whose hidden matmul is not ``W_hh h`` override this."""
        gh = F.linear(state[0], p["weight_hh"], p["bias_hh"])
        return self.pointwise(gi, gh, state, p)

    def pointwise(self, gi: Tensor, gh: Tensor, state: State, p: Mapping[str, Tensor]) -> tuple[Tensor, State]:
        raise NotImplementedError(f"{type(self).__name__} must implement pointwise() or step()")

    def extra_repr(self) -> str:
        return f"{self.input_size}, {self.hidden_size}"


class ElmanCell(RecurrentCell):
    """The lecture's simple RNN: c_t = tanh(U x_t + W c_{t-1} + b) (torch.nn.RNN with tanh)."""

    num_gates = 1
    torch_kernel = "rnn_tanh"

    def pointwise(self, gi, gh, state, p):
        h = torch.tanh(gi + gh)
        return h, (h,)


class LSTMCell(RecurrentCell):
    """Long short-term memory (Hochreiter & Schmidhuber 1997, with a forget gate), torch.nn.LSTM's gates i, f, g, o.

    i = sigma(.), f = sigma(.), g = tanh(.), o = sigma(.) of W_ih x + W_hh h + b;
    C_t = f * C_{t-1} + i * g;  h_t = o * tanh(C_t).
    """

    num_gates = 4
    state_names = ("h", "c")
    torch_kernel = "lstm"

    def pointwise(self, gi, gh, state, p):
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        c = torch.sigmoid(f) * state[1] + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


class GRUCell(RecurrentCell):
    """Gated recurrent unit, gates r, z, n in torch.nn.GRU's order and layout.

    Default (``reset_after=True``, torch.nn.GRU and cuDNN): the reset gate applies after the hidden matmul,
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn)), h' = (1 - z) * n + z * h.

    The lecture's form (Cho et al. 2014, ``reset_after=False``): the reset gate applies before it,
    h~ = tanh(W_in x + b_in + W_hn (r * h) + b_hn), and h' = (1 - z) * h + z * h~.
    Both have the same parameters; only the first is what torch.nn.GRU computes.
    """

    num_gates = 3

    def __init__(self, input_size: int, hidden_size: int, reset_after: bool = True) -> None:
        super().__init__(input_size, hidden_size)
        self.reset_after = reset_after

    @property
    def torch_kernel(self) -> str | None:  # type: ignore[override]
        return "gru" if self.reset_after else None

    def spawn(self, input_size):
        return GRUCell(input_size, self.hidden_size, reset_after=self.reset_after)

    def step(self, gi, state, p):
        if self.reset_after:
            return super().step(gi, state, p)
        h = state[0]
        hidden = self.hidden_size
        w_hh, b_hh = p["weight_hh"], p["bias_hh"]
        gh_rz = F.linear(h, w_hh[: 2 * hidden], b_hh[: 2 * hidden])
        r, z = torch.sigmoid(gi[:, : 2 * hidden] + gh_rz).chunk(2, dim=-1)
        candidate = torch.tanh(gi[:, 2 * hidden :] + F.linear(r * h, w_hh[2 * hidden :], b_hh[2 * hidden :]))
        h_new = (1 - z) * h + z * candidate
        return h_new, (h_new,)

    def pointwise(self, gi, gh, state, p):
        i_r, i_z, i_n = gi.chunk(3, dim=-1)
        h_r, h_z, h_n = gh.chunk(3, dim=-1)
        r = torch.sigmoid(i_r + h_r)
        z = torch.sigmoid(i_z + h_z)
        n = torch.tanh(i_n + r * h_n)
        h = (1 - z) * n + z * state[0]
        return h, (h,)

    def extra_repr(self):
        return super().extra_repr() + f", reset_after={self.reset_after}"


class PeepholeLSTMCell(RecurrentCell):
    """LSTM with peephole connections (Gers & Schmidhuber 2000): the gates look at the cell state.

    i = sigma(. + w_ci * C_{t-1}), f = sigma(. + w_cf * C_{t-1}), g = tanh(.);
    C_t = f * C_{t-1} + i * g;  o = sigma(. + w_co * C_t);  h_t = o * tanh(C_t).
    Parameters: LSTM's, plus diagonal peephole weights ``weight_ci``, ``weight_cf``, ``weight_co`` (hidden,).
    """

    num_gates = 4
    state_names = ("h", "c")

    def parameter_shapes(self, input_size):
        shapes = super().parameter_shapes(input_size)
        shapes.update({name: (self.hidden_size,) for name in ("weight_ci", "weight_cf", "weight_co")})
        return shapes

    def pointwise(self, gi, gh, state, p):
        c_prev = state[1]
        i, f, g, o = (gi + gh).chunk(4, dim=-1)
        i = torch.sigmoid(i + p["weight_ci"] * c_prev)
        f = torch.sigmoid(f + p["weight_cf"] * c_prev)
        c = f * c_prev + i * torch.tanh(g)
        o = torch.sigmoid(o + p["weight_co"] * c)
        h = o * torch.tanh(c)
        return h, (h, c)


class CoupledLSTMCell(RecurrentCell):
    """LSTM with coupled input and forget gates: the input gate is 1 - f, one gate fewer (gates f, g, o).

    C_t = f * C_{t-1} + (1 - f) * g;  h_t = o * tanh(C_t).
    """

    num_gates = 3
    state_names = ("h", "c")

    def pointwise(self, gi, gh, state, p):
        f, g, o = (gi + gh).chunk(3, dim=-1)
        f = torch.sigmoid(f)
        c = f * state[1] + (1 - f) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, (h, c)


CELLS: dict[str, type[RecurrentCell]] = {
    "rnn": ElmanCell,
    "lstm": LSTMCell,
    "gru": GRUCell,
    "peephole_lstm": PeepholeLSTMCell,
    "coupled_lstm": CoupledLSTMCell,
}


def make_cell(cell: str | RecurrentCell, input_size: int, hidden_size: int) -> RecurrentCell:
    """A cell by name (one of CELLS), or a given cell instance checked against the sizes."""
    if isinstance(cell, RecurrentCell):
        if (cell.input_size, cell.hidden_size) != (input_size, hidden_size):
            raise ValueError(
                f"cell {type(cell).__name__} has input_size={cell.input_size}, hidden_size={cell.hidden_size}; "
                f"expected {input_size} and {hidden_size} to match the Recurrent"
            )
        return cell
    if cell not in CELLS:
        raise ValueError(f"unknown cell {cell!r}; expected one of {sorted(CELLS)} or a RecurrentCell instance")
    return CELLS[cell](input_size, hidden_size)
