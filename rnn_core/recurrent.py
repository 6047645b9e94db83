"""Recurrent: any cell over time, with layers, both directions, dropout, variable lengths and three backends."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import _VF, Tensor, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from rnn_core.cells import RecurrentCell, make_cell
from rnn_core.checks import check_lengths, check_sequence, check_stack, check_state, in_parameter_dtype
from rnn_core.fused import FusedRecurrence
from rnn_core.kernels import kernel_for

BACKENDS = ("auto", "torch", "fused", "loop")

StateLike = Tensor | tuple[Tensor, ...]


class Recurrent(nn.Module):
    """Runs a cell over a sequence, like torch.nn.RNN/LSTM/GRU but for any cell.

    Args:
        cell: "rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm", or a RecurrentCell instance (its weights become
            layer 0's, its kind and options every layer's).
        input_size: width of each input step.
        hidden_size: width of the state.
        num_layers: stacked layers; each layer above the first reads the one below.
        bidirectional: also run each layer backwards and concatenate both directions' outputs.
        dropout: dropout on the outputs of every layer but the last (as torch.nn).
        batch_first: inputs and outputs are (batch, time, feature) instead of (time, batch, feature).
        backend: "torch" (torch.nn's kernels: oneDNN on CPU, cuDNN on GPU; standard cells only), "fused"
            (hand-written backpropagation through time; every cell), "loop" (autograd through a Python loop; the
            reference), or "auto" (the fastest correct one for the cell and device).

    Parameters are named and laid out as torch.nn's (``weight_ih_l0``, ``bias_hh_l1_reverse``, ...), so a
    ``torch.nn.LSTM`` state dict loads into ``Recurrent("lstm", ...)``; variant cells add their own
    (``weight_ci_l0``, ...).
    """

    def __init__(
        self,
        cell: str | RecurrentCell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        batch_first: bool = True,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        check_stack(num_layers, dropout)
        template = copy.deepcopy(make_cell(cell, input_size, hidden_size))
        if backend == "torch" and template.torch_kernel is None:
            raise ValueError(
                f"backend 'torch' runs only the standard cells (rnn, lstm, gru with reset_after=True), not "
                f"{type(template).__name__}; use backend 'fused', 'loop' or 'auto'"
            )
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bidirectional, self.dropout, self.batch_first = bidirectional, dropout, batch_first
        self.backend = backend
        self.num_directions = 2 if bidirectional else 1
        # The template keeps the cell's math and options; its weights move to layer 0 under torch.nn's names.
        first = dict(template.named_parameters(recurse=False))
        template._parameters.clear()
        self.cell = template
        self.param_names = list(first)
        for layer in range(num_layers):
            layer_input = input_size if layer == 0 else hidden_size * self.num_directions
            for direction in range(self.num_directions):
                fresh = first if layer == direction == 0 else template.make_parameters(layer_input)
                for name in self.param_names:
                    self.register_parameter(self._name(name, layer, direction), fresh[name])

    @staticmethod
    def _name(name: str, layer: int, direction: int) -> str:
        return f"{name}_l{layer}" + ("_reverse" if direction else "")

    def layer_parameters(self, layer: int, direction: int) -> dict[str, Tensor]:
        """The cell's parameters for one layer and direction, under the cell's own names."""
        return {name: getattr(self, self._name(name, layer, direction)) for name in self.param_names}

    def resolved_backend(self, device: torch.device) -> str:
        """The backend "auto" picks: torch.nn's kernels for the cells they run (cuDNN on GPU; on CPU oneDNN is as
        fast or faster than the fused BPTT, see benchmarks.cells), the fused BPTT for every other cell."""
        if self.backend != "auto":
            return self.backend
        return "torch" if self.cell.torch_kernel is not None else "fused"

    def extra_repr(self) -> str:
        return (
            f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}, "
            f"bidirectional={self.bidirectional}, dropout={self.dropout}, batch_first={self.batch_first}, "
            f"backend={self.backend!r}"
        )

    # ---------------------------------------------------------------- forward

    def forward(
        self, x: Tensor, lengths: Tensor | Sequence[int] | None = None, state: StateLike | None = None
    ) -> tuple[Tensor, StateLike]:
        """Runs the sequence.

        Args:
            x: (batch, time, input_size), or (time, batch, input_size) when batch_first=False.
            lengths: valid steps per sequence, each in [1, time]; outputs past a sequence's end are zero and its
                final state is taken at its own last step (the reverse direction: after its first step).
            state: initial h of shape (num_layers * num_directions, batch, hidden_size), or (h, c) for cells
                with a memory cell; zeros when omitted.

        Returns:
            output: (batch, time, num_directions * hidden_size) (time first when batch_first=False), and the final
            state in the same form as ``state``. An empty batch gives empty ones, as torch.nn.LSTM.

        Raises ValueError (a wrong shape or value) or TypeError (a wrong kind or dtype) naming the argument at fault.
        """
        x, lengths, states = self._checked(x, lengths, state)
        backend = self.resolved_backend(x.device)
        if backend == "torch":
            out, states = self._run_torch(x, lengths, states)
        else:
            out, states = self._run_layers(x, lengths, states, backend)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, (states if self.cell.has_cell_state else states[0])

    def _checked(self, x, lengths, state) -> tuple[Tensor, Tensor | None, tuple[Tensor, ...]]:
        """forward's arguments checked (rnn_core.checks) and made time-major: x, lengths (None when all are T) and
        the initial states (zeros when omitted)."""
        weight = getattr(self, self._name("weight_hh", 0, 0))
        check_sequence(x, self.input_size, self.batch_first, weight)
        x = in_parameter_dtype(x, weight.dtype, "Recurrent's input x")
        if self.batch_first:
            x = x.transpose(0, 1)
        T, B = x.shape[0], x.shape[1]
        lengths = check_lengths(lengths, T, B)
        shape = (self.num_layers * self.num_directions, B, self.hidden_size)
        if state is None:
            return x, lengths, tuple(x.new_zeros(shape) for _ in self.cell.state_names)
        owner = f"a Recurrent of {type(self.cell).__name__}"
        return x, lengths, check_state(state, self.cell.state_names, shape, x, owner)

    def _run_torch(self, x, lengths, states):
        kernel = getattr(_VF, self.cell.torch_kernel)
        weights = [
            getattr(self, self._name(name, layer, direction))
            for layer in range(self.num_layers)
            for direction in range(self.num_directions)
            for name in self.param_names
        ]
        hx = list(states) if self.cell.has_cell_state else states[0]
        flags = (True, self.num_layers, self.dropout, self.training, self.bidirectional)
        # Under CPU autocast, oneDNN's LSTM is handed bfloat16 weights and, on CPUs without bfloat16 support, cannot
        # build its primitive; torch's native kernel runs there instead (matmuls in bfloat16, states in float32).
        cpu_autocast = x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
        with _without_onednn() if cpu_autocast else contextlib.nullcontext():
            if lengths is None:
                out, *final = kernel(x, hx, weights, *flags, False)
            else:
                packed = pack_padded_sequence(x, lengths, enforce_sorted=False)
                order = packed.sorted_indices
                hx = [h.index_select(1, order) for h in hx] if self.cell.has_cell_state else hx.index_select(1, order)
                data, *final = kernel(packed.data, packed.batch_sizes, hx, weights, *flags)
                packed_out = PackedSequence(data, packed.batch_sizes, order, packed.unsorted_indices)
                out, _ = pad_packed_sequence(packed_out, total_length=x.shape[0])
                final = [f.index_select(1, packed.unsorted_indices) for f in final]
        # cuDNN (and the native Elman RNN) return the autocast dtype; every backend returns the parameters'
        return out.to(x.dtype), tuple(f.to(x.dtype) for f in final)

    def _run_layers(self, x, lengths, states, backend):
        T = x.shape[0]
        kernel = kernel_for(self.cell) if backend == "fused" else None
        order = None
        if lengths is not None and kernel is not None:
            # the fused kernels run packed: longest sequence first
            lengths, order = torch.sort(lengths, descending=True, stable=True)
            x = x.index_select(1, order.to(x.device))
            states = tuple(s.index_select(1, order.to(x.device)) for s in states)
        reverse_index = None if lengths is None else _reverse_index(lengths, T).to(x.device)
        finals: list[list[Tensor]] = [[] for _ in states]
        layer_input = x
        for layer in range(self.num_layers):
            outputs = []
            for direction in range(self.num_directions):
                k = layer * self.num_directions + direction
                initial = tuple(s[k] for s in states)
                seq = layer_input
                if direction:
                    seq = seq.flip(0) if reverse_index is None else _gather_time(seq, reverse_index)
                p = self.layer_parameters(layer, direction)
                if kernel is not None:
                    out, *final = self._run_fused(kernel, seq, lengths, initial, p)
                else:
                    out, final = _run_loop(self.cell, seq, lengths, initial, p)
                if direction:
                    out = out.flip(0) if reverse_index is None else _gather_time(out, reverse_index)
                outputs.append(out)
                for kept, f in zip(finals, final, strict=True):
                    kept.append(f)
            layer_input = torch.cat(outputs, dim=-1) if len(outputs) > 1 else outputs[0]
            if self.dropout and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, self.training)
        out = layer_input
        final_states = tuple(torch.stack(kept) for kept in finals)
        if order is not None:
            restore = torch.argsort(order).to(x.device)
            out = out.index_select(1, restore)
            final_states = tuple(s.index_select(1, restore) for s in final_states)
        return out, final_states

    def _run_fused(self, kernel, seq, lengths, initial, p):
        T, B = seq.shape[0], seq.shape[1]
        sizes = [B] * T if lengths is None else (lengths.unsqueeze(0) > torch.arange(T).unsqueeze(1)).sum(1).tolist()
        h0 = initial[0].contiguous()
        c0 = initial[1].contiguous() if len(initial) > 1 else None
        extras = [p[name] for name in kernel.extras]
        return FusedRecurrence.apply(
            kernel, seq, sizes, lengths, h0, c0,
            p["weight_ih"], p["weight_hh"], p["bias_ih"], p["bias_hh"], *extras,
        )


@contextlib.contextmanager
def _without_onednn():
    """oneDNN off for a block; only that flag, where torch.backends.mkldnn.flags resets its other flags too."""
    before = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = before


def _reverse_index(lengths: Tensor, T: int) -> Tensor:
    """(T, B) time indices that reverse each sequence within its own length and leave its padding in place."""
    t = torch.arange(T).unsqueeze(1)
    return torch.where(t < lengths, lengths - 1 - t, t)


def _gather_time(seq: Tensor, index: Tensor) -> Tensor:
    return seq.gather(0, index.unsqueeze(-1).expand_as(seq))


def _run_loop(cell: RecurrentCell, seq, lengths, initial, p):
    """Autograd through a plain loop over time; past a sequence's end the state is held and the output is zero."""
    # under autocast the projection comes in the autocast dtype; the cell's pointwise math runs in the parameters'
    inputs = F.linear(seq, p["weight_ih"], p["bias_ih"]).to(seq.dtype)
    alive = None if lengths is None else (torch.arange(seq.shape[0]).unsqueeze(1) < lengths).to(seq.device)
    state, outputs = initial, []
    for t in range(seq.shape[0]):
        h, new_state = cell.step(inputs[t], state, p)
        if alive is not None:
            keep = alive[t].unsqueeze(1)
            h = h * keep
            new_state = tuple(torch.where(keep, new, old) for new, old in zip(new_state, state, strict=True))
        outputs.append(h)
        state = new_state
    return torch.stack(outputs), state
