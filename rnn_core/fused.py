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
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.autograd.function import once_differentiable

from rnn_core.kernels import Kernel


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
        rows = _gate_rows(kernel, H, x.device)
        if rows is not None:
            w_ih, w_hh, b_ih, b_hh = (t.index_select(0, rows) for t in (w_ih, w_hh, b_ih, b_hh))
        bias = b_ih + b_hh if kernel.fold_hidden_bias else b_ih
        # time-major: each step's rows are contiguous, which the per-step ops need more than a saved copy of x
        x = x.contiguous()
        gates = torch.addmm(bias, x.view(T * B, -1), w_ih.t()).view(T, B, -1)
        out, cells, saved = kernel.forward(gates, h0, c0, w_hh, b_hh, extras, sizes)
        if lengths is None:
            finals = [s[-1].clone() for s in (out, cells) if s is not None]
        else:
            last = (lengths.to(x.device) - 1, torch.arange(B, device=x.device))
            finals = [s[last] for s in (out, cells) if s is not None]
        ctx.kernel, ctx.sizes, ctx.rows, ctx.saved = kernel, sizes, rows, saved
        ctx.has_c = cells is not None
        ctx.save_for_backward(x, h0, c0 if ctx.has_c else None, w_ih, w_hh, out, *extras)
        return (out, *finals)

    @staticmethod
    @once_differentiable
    def backward(ctx, d_out, d_hn, d_cn=None):
        x, h0, c0, w_ih, w_hh, out, *extras = ctx.saved_tensors
        kernel = ctx.kernel
        T, B, _ = x.shape
        dh = d_hn.clone(memory_format=torch.contiguous_format)
        dc = d_cn.clone(memory_format=torch.contiguous_format) if ctx.has_c else None
        d_in, d_hid, dh0, dc0, d_extras = kernel.backward(ctx.saved, d_out, dh, dc, h0, c0, w_hh, extras, ctx.sizes)
        d_in_flat = d_in.view(T * B, -1)
        dx = torch.mm(d_in_flat, w_ih).view(T, B, -1) if ctx.needs_input_grad[1] else None
        dw_ih = d_in_flat.t().mm(x.view(T * B, -1))
        dw_hh = d_hid[0].t().mm(h0)  # sum_t dG_t^T h_{t-1}: step 0 with h0, the rest in one matmul
        if T > 1:
            dw_hh.addmm_(d_hid[1:].reshape((T - 1) * B, -1).t(), out[:-1].reshape((T - 1) * B, -1))
        db_ih = d_in_flat.sum(0)
        db_hh = db_ih if kernel.fold_hidden_bias else d_hid.sum((0, 1))
        if ctx.rows is not None:
            inverse = torch.argsort(ctx.rows)
            dw_ih, dw_hh, db_ih, db_hh = (t.index_select(0, inverse) for t in (dw_ih, dw_hh, db_ih, db_hh))
        return (None, dx, None, None, dh0, dc0, dw_ih, dw_hh, db_ih, db_hh, *d_extras)
