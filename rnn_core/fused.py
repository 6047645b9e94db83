"""Hand-written backpropagation through time for the built-in cells (the "fused" backend).

One autograd node per layer and direction instead of a dozen per time step:

- forward: the input projection of every step in one matmul, then per step one ``addmm`` with ``W_hh`` and the
  cell's pointwise ops, written in place into preallocated buffers (the gate activations overwrite the projection);
- backward: per step the pointwise derivatives (written into a per-step gate-gradient buffer) and one matmul back
  through ``W_hh``; the weight gradients, the input gradient and the biases at the end as one matmul each over all
  steps.

Variable lengths follow packed sequences: the batch is sorted by length (longest first) and step t updates only
the first ``batch_sizes[t]`` rows, so finished sequences keep their state and their outputs stay zero.

Each kernel keeps the cell's sigmoid gates side by side (``gate_order``) so one call activates them all; the
weights are permuted into that order on entry and their gradients permuted back.

Under autocast the matmuls, forward and backward, run in the autocast dtype, and the gates, states and outputs stay
in the input's dtype, as in torch.nn's own CPU LSTM and GRU kernels; float64 is never cast, as autocast leaves it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnn_core.kernels import Kernel, matmul_into


def _matmul_dtype(x: Tensor) -> torch.dtype:
    """The dtype autocast would run a matmul on x in: its own dtype when autocast is off for x's device or x is
    float64."""
    device = x.device.type
    if torch.is_autocast_enabled(device) and x.dtype != torch.float64:
        return torch.get_autocast_dtype(device)
    return x.dtype


def _gate_rows(kernel: Kernel, hidden_size: int, device) -> Tensor | None:
    if kernel.gate_order is None:
        return None
    return torch.cat([torch.arange(k * hidden_size, (k + 1) * hidden_size, device=device) for k in kernel.gate_order])


class FusedRecurrence(torch.autograd.Function):
    """One layer, one direction: ``x (T, B, I)`` sorted by length (longest first) -> ``(out, h_n[, c_n])``."""

    @staticmethod
    def forward(ctx, kernel: Kernel, x: Tensor, sizes: Sequence[int], lengths: Tensor | None, h0, c0,
                w_ih, w_hh, b_ih, b_hh, *extras):
        T, B, _ = x.shape
        H = w_hh.shape[1]
        matmul_dtype = _matmul_dtype(x)
        rows = _gate_rows(kernel, H, x.device)
        # autocast off inside: explicit casts to the matmul dtype, the same in forward and backward
        with torch.autocast(x.device.type, enabled=False):
            if rows is not None:
                w_ih, w_hh, b_ih, b_hh = (t.index_select(0, rows) for t in (w_ih, w_hh, b_ih, b_hh))
            bias = b_ih + b_hh if kernel.fold_hidden_bias else b_ih
            w_ih, w_hh = w_ih.to(matmul_dtype), w_hh.to(matmul_dtype)
            # time-major: each step's rows are contiguous, which the per-step ops need more than a saved copy of x
            x_flat = x.contiguous().view(T * B, x.shape[-1])  # sizes spelt out: B may be 0
            gates = matmul_into(x.new_empty(T * B, w_ih.shape[0]), x_flat, w_ih.t(), add=bias).view(T, B, w_ih.shape[0])
            out, cells, saved = kernel.forward(gates, h0, c0, w_hh, b_hh, extras, sizes)
            if lengths is None:
                finals = [s[-1].clone() for s in (out, cells) if s is not None]
            else:
                last = (lengths.to(x.device) - 1, torch.arange(B, device=x.device))
                finals = [s[last] for s in (out, cells) if s is not None]
        ctx.kernel, ctx.sizes, ctx.rows, ctx.saved = kernel, sizes, rows, saved
        ctx.has_c = cells is not None
        # x in the matmul dtype: the weight gradient reads it only through a matmul
        ctx.save_for_backward(x_flat.to(matmul_dtype), h0, c0 if ctx.has_c else None, w_ih, w_hh, out, *extras)
        return (out, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn=None):
        x_flat, h0, c0, w_ih, w_hh, out, *extras = ctx.saved_tensors
        kernel = ctx.kernel
        T, B, H = out.shape
        with torch.autocast(out.device.type, enabled=False):
            dh = d_hn.clone(memory_format=torch.contiguous_format)
            dc = d_cn.clone(memory_format=torch.contiguous_format) if ctx.has_c else None
            d_in, d_hid, dh0, dc0, d_extras = kernel.backward(ctx.saved, d_out, dh, dc, h0, c0, w_hh, extras,
                                                              ctx.sizes)
            db_ih = d_in.sum((0, 1))
            db_hh = db_ih if kernel.fold_hidden_bias else d_hid.sum((0, 1))
            # the gradient matmuls in the forward's matmul dtype too (the weights' saved dtype); autograd casts each
            # gradient to its input's dtype
            G = d_in.shape[-1]
            d_in_mm = d_in.view(T * B, G).to(w_ih.dtype)
            d_hid_mm = d_in_mm.view(T, B, G) if d_hid is d_in else d_hid.to(w_ih.dtype)
            dx = torch.mm(d_in_mm, w_ih).view(T, B, w_ih.shape[1]) if ctx.needs_input_grad[1] else None
            dw_ih = d_in_mm.t().mm(x_flat)
            # sum_t dG_t^T h_{t-1}: step 0 with h0, the rest in one matmul
            dw_hh = d_hid_mm[0].t().mm(h0.to(w_hh.dtype))
            if T > 1:
                dw_hh.addmm_(d_hid_mm[1:].reshape((T - 1) * B, G).t(),
                             out[:-1].reshape((T - 1) * B, H).to(w_hh.dtype))
        if ctx.rows is not None:
            inverse = torch.argsort(ctx.rows)
            dw_ih, dw_hh, db_ih, db_hh = (t.index_select(0, inverse) for t in (dw_ih, dw_hh, db_ih, db_hh))
        return (None, dx, None, None, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, *d_extras)
