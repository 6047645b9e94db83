"""What Recurrent, ConvRecurrent and the cells are called with: each fault a ValueError (a wrong shape or value) or a
TypeError (a wrong kind or dtype) whose message names the argument, what was expected and what came.

The checks read shapes, dtypes and devices only; lengths are copied to the host once (packing needs them there).
Where torch.nn decides a case, the checks follow it: no sequence of 0 steps, lengths in [1, T], an empty batch runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def check_stack(num_layers: int, dropout: float) -> None:
    """The layer count and the dropout between layers of a stacked recurrence, or a ValueError naming the bad one."""
    if num_layers < 1:
        raise ValueError(f"num_layers must be at least 1, got {num_layers}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def in_parameter_dtype(x: Tensor, dtype: torch.dtype, what: str) -> Tensor:
    """``x`` in the parameters' ``dtype``: as it is, or cast from the autocast dtype (under autocast a Linear or a
    CNN hands over its output in it). Any other dtype is an error naming both, as torch.nn's modules raise."""
    if x.dtype == dtype:
        return x
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype == torch.get_autocast_dtype(device):
        return x.to(dtype)
    hint = "" if x.is_floating_point() else " (token ids go through an nn.Embedding first)"
    raise TypeError(f"{what} has dtype {x.dtype} but the module's parameters are {dtype}{hint}; cast the input (e.g. "
                    f"x.to({dtype})), the module (e.g. module.to({x.dtype})), or run under torch.autocast")


def check_sequence(x, input_size: int, batch_first: bool, parameter: Tensor) -> None:
    """Recurrent's input: a 3-D tensor of ``input_size`` features, at least one step, on the parameters' device."""
    layout = f"(batch, time, input_size={input_size})" if batch_first else f"(time, batch, input_size={input_size})"
    _check_tensor(x, "Recurrent's input x", layout, parameter)
    if x.dim() != 3:
        hint = ""
        if x.dim() == 2 and x.shape[-1] == input_size:
            hint = f"; a single sequence needs a batch dimension: x.unsqueeze({0 if batch_first else 1})"
        raise ValueError(f"Recurrent's input x must be 3-D {layout}; got shape {tuple(x.shape)}{hint}")
    if x.shape[-1] != input_size:
        raise ValueError(f"Recurrent's input x has {x.shape[-1]} features per step (shape {tuple(x.shape)}); "
                         f"expected input_size={input_size}")
    _check_steps(x, 1 if batch_first else 0, "Recurrent's input x")


def check_maps(x, channels: int, parameter: Tensor) -> None:
    """ConvRecurrent's input: a 5-D tensor of 2-D maps with ``channels`` channels, at least one step, on the
    parameters' device."""
    layout = f"(batch, time, channels={channels}, height, width)"
    _check_tensor(x, "ConvRecurrent's input x", layout, parameter)
    if x.dim() != 5:
        hint = f"; ConvRecurrent runs 2-D maps, this has {x.dim() - 3} spatial dimension(s)"
        if x.dim() == 4 and x.shape[1] == channels:
            hint = "; a single sequence needs a batch dimension: x.unsqueeze(0)"
        raise ValueError(f"ConvRecurrent's input x must be 5-D {layout}; got shape {tuple(x.shape)}{hint}")
    if x.shape[2] != channels:
        hint = "; channels-last maps need x.permute(0, 1, 4, 2, 3)" if x.shape[-1] == channels else ""
        raise ValueError(f"ConvRecurrent's input x has {x.shape[2]} channels (dim 2 of shape {tuple(x.shape)}); "
                         f"expected input_channels={channels}{hint}")
    _check_steps(x, 1, "ConvRecurrent's input x")


def _check_tensor(x, what: str, layout: str, parameter: Tensor) -> None:
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a tensor {layout}; got {type(x).__name__}")
    if x.device != parameter.device:
        raise ValueError(f"{what} is on {x.device} but the module's parameters are on {parameter.device}; move one "
                         f"to the other (x.to(device) or module.to(device))")


def _check_steps(x: Tensor, time_axis: int, what: str) -> None:
    """At least one time step, as torch.nn.LSTM requires (an empty batch is fine: it yields empty outputs)."""
    if x.shape[time_axis] == 0:
        raise ValueError(f"{what} has 0 time steps (shape {tuple(x.shape)}, time is dim {time_axis}); every sequence "
                         f"needs at least one step, as in torch.nn.LSTM")


def check_lengths(lengths, T: int, B: int, takes_state: bool = True) -> Tensor | None:
    """Valid steps per sequence as a CPU int64 (B,) tensor, each in [1, T] as torch.nn's pack_padded_sequence
    requires; None when absent or all T. Any device is accepted (one copy to the host). ``takes_state``: whether the
    module takes an initial state, which a torch.nn-style call ``module(x, (h0, c0))`` passes here by mistake."""
    if lengths is None:
        return None
    if isinstance(lengths, Sequence) and any(isinstance(v, Tensor) and v.dim() > 0 for v in lengths):
        shapes = ", ".join(str(tuple(v.shape)) if isinstance(v, Tensor) else type(v).__name__ for v in lengths)
        fix = ("the call is module(x, lengths=None, state=None): pass it by keyword, module(x, state=(h0, c0))"
               if takes_state else "this module takes no initial state (it starts from zeros): module(x, lengths)")
        raise TypeError(f"lengths (the second positional argument) was given a {type(lengths).__name__} of tensors "
                        f"of shapes {shapes}, which looks like an initial state; {fix}")
    try:
        lengths = torch.as_tensor(lengths)
    except (TypeError, ValueError, RuntimeError) as error:
        raise TypeError(f"lengths must be {B} integers (a list or an integer tensor of shape ({B},)); got "
                        f"{type(lengths).__name__} {str(lengths)[:60]} ({error})") from None
    shape = tuple(lengths.shape)
    # an empty list becomes a float tensor: it is the lengths of an empty batch
    if lengths.numel() and (lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool):
        hint = "; an initial state goes in by keyword: module(x, state=h0)" if takes_state and lengths.dim() > 2 else ""
        raise TypeError(f"lengths must hold integers (valid steps per sequence); got a {lengths.dtype} tensor of "
                        f"shape {shape}{hint}")
    if shape != (B,):
        raise ValueError(f"lengths must have shape ({B},), one per sequence of the batch; got {shape}")
    lengths = lengths.to(device="cpu", dtype=torch.int64)
    bad = ((lengths < 1) | (lengths > T)).nonzero().flatten()
    if len(bad):
        i = int(bad[0])
        raise ValueError(
            f"lengths[{i}] = {int(lengths[i])}; every length must be in [1, {T}] (the sequence has {T} steps)"
        )
    return None if bool((lengths == T).all()) else lengths


def check_state(state, names: tuple[str, ...], shape: tuple[int, ...], like: Tensor, owner: str) -> tuple[Tensor, ...]:
    """The initial state as a tuple of tensors, one per name, each of ``shape`` on ``like``'s device and in its
    dtype (or the autocast dtype, cast to it)."""
    states = (state,) if isinstance(state, Tensor) else tuple(state) if isinstance(state, Sequence) else None
    if states is None or len(states) != len(names) or not all(isinstance(s, Tensor) for s in states):
        if isinstance(state, Tensor):
            given = f"one tensor of shape {tuple(state.shape)}"
        elif states is None:
            given = type(state).__name__
        else:
            given = f"a {type(state).__name__} of " + ", ".join(type(s).__name__ for s in states)
        form = "a tensor h" if len(names) == 1 else "a tuple (" + ", ".join(names) + ") of tensors"
        raise TypeError(f"state must be {form} of shape {shape} for {owner}; got {given}")
    for name, s in zip(names, states, strict=True):
        if tuple(s.shape) != shape:
            raise ValueError(f"initial state {name} has shape {tuple(s.shape)}; expected {shape} "
                             f"(num_layers * num_directions, batch, hidden_size)")
        if s.device != like.device:
            raise ValueError(f"initial state {name} is on {s.device} but the input is on {like.device}")
    return tuple(in_parameter_dtype(s, like.dtype, f"initial state {name}") for name, s in zip(names, states,
                                                                                               strict=True))
