"""The hand-written forward and backward steps of the built-in cells, which the "fused" backend runs over time.

Each kernel writes one step's pointwise ops in place into preallocated buffers (the gate activations overwrite the
projection) and, going back, the step's gate gradients; it keeps the cell's sigmoid gates side by side
(``gate_order``) so one call activates them all.

The buffers, states and pointwise ops are in the input's dtype; every matmul runs in the dtype of its weight
(``w_hh``), which under autocast is the autocast dtype (see ``matmul_into``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rnn_core.cells import CoupledLSTMCell, ElmanCell, GRUCell, LSTMCell, PeepholeLSTMCell, RecurrentCell

# the derivatives through an activation y, each one kernel: grad * y * (1 - y) and grad * (1 - y^2)
_sigmoid_backward = torch.ops.aten.sigmoid_backward.grad_input
_tanh_backward = torch.ops.aten.tanh_backward.grad_input
_tanh_grad = torch.ops.aten.tanh_backward.default


def matmul_into(out: Tensor, a: Tensor, w: Tensor, add: Tensor | None = None) -> Tensor:
    """out = a @ w (+ add). Under autocast the weight w comes in the autocast dtype: the product runs in it (a cast
    to it) and is then added in out's wider dtype, as torch.nn's own CPU kernels do; otherwise it is one (add)mm."""
    if w.dtype == out.dtype:
        return torch.mm(a, w, out=out) if add is None else torch.addmm(add, a, w, out=out)
    product = torch.mm(a.to(w.dtype), w)
    return out.copy_(product) if add is None else torch.add(add, product, out=out)


class Kernel:
    """The per-step forward and backward of one cell; subclasses are stateless."""

    #: b_hh only ever adds to b_ih: fold it into the input projection once
    fold_hidden_bias = True
    #: internal order of the gate blocks, as indices into torch.nn's order; None keeps it
    gate_order: tuple[int, ...] | None = None
    #: names of the cell's extra parameters, in the order the Function receives them
    extras: tuple[str, ...] = ()

    def forward(self, gates, h0, c0, w_hh, b_hh, extras, sizes):
        """Runs over time; returns (out, cells or None, saved tensors for backward)."""
        raise NotImplementedError

    def backward(self, saved, d_out, dh, dc, h0, c0, w_hh, extras, sizes):
        """Returns (d_input_projection, d_hidden_projection, dh0, dc0, extra-parameter grads)."""
        raise NotImplementedError


def _alloc(like: Tensor, width: int, padded: bool) -> Tensor:
    """A time-major (T, B, width) buffer; padded rows are never written, so then they must start as zero."""
    shape = (like.shape[0], like.shape[1], width)
    return like.new_zeros(shape) if padded else like.new_empty(shape)


class ElmanKernel(Kernel):
    def forward(self, gates, h0, c0, w_hh, b_hh, extras, sizes):
        T = gates.shape[0]
        out = _alloc(gates, gates.shape[-1], len(set(sizes)) > 1)
        w_t = w_hh.t().contiguous()  # addmm is slower on a transposed view
        h = h0
        for t in range(T):
            b = sizes[t]
            a = gates[t, :b]
            matmul_into(a, h[:b], w_t, add=a)
            torch.tanh(a, out=out[t, :b])
            h = out[t]
        return out, None, (out,)

    def backward(self, saved, d_out, dh, dc, h0, c0, w_hh, extras, sizes):
        (out,) = saved
        d_gates = _alloc(out, out.shape[-1], len(set(sizes)) > 1)
        for t in reversed(range(len(sizes))):
            b = sizes[t]
            dh_t = dh[:b]
            dh_t += d_out[t, :b]
            dg = d_gates[t, :b]
            _tanh_backward(dh_t, out[t, :b], grad_input=dg)
            matmul_into(dh_t, dg, w_hh)
        return d_gates, d_gates, dh, None, ()


class LSTMKernel(Kernel):
    gate_order = (0, 1, 3, 2)  # i, f, o, g

    def forward(self, gates, h0, c0, w_hh, b_hh, extras, sizes):
        T, G = gates.shape[0], gates.shape[2]
        H = G // 4
        padded = len(set(sizes)) > 1
        out, cells, tanh_c = (_alloc(gates, H, padded) for _ in range(3))
        w_t = w_hh.t().contiguous()  # addmm is slower on a transposed view
        h, c = h0, c0
        for t in range(T):
            b = sizes[t]
            a = gates[t, :b]
            matmul_into(a, h[:b], w_t, add=a)
            a[:, : 3 * H].sigmoid_()
            a[:, 3 * H :].tanh_()
            c_t = cells[t, :b]
            torch.mul(a[:, H : 2 * H], c[:b], out=c_t)
            c_t.addcmul_(a[:, :H], a[:, 3 * H :])
            torch.mul(a[:, 2 * H : 3 * H], torch.tanh(c_t, out=tanh_c[t, :b]), out=out[t, :b])
            h, c = out[t], cells[t]
        return out, cells, (gates, cells, tanh_c)

    def backward(self, saved, d_out, dh, dc, h0, c0, w_hh, extras, sizes):
        gates, cells, tanh_c = saved
        H = gates.shape[-1] // 4
        d_gates = _alloc(gates, gates.shape[-1], len(set(sizes)) > 1)
        for t in reversed(range(len(sizes))):
            b = sizes[t]
            a, dg = gates[t, :b], d_gates[t, :b]
            i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            tc = tanh_c[t, :b]
            c_prev = cells[t - 1, :b] if t else c0[:b]
            dh_t, dc_t = dh[:b], dc[:b]
            dh_t += d_out[t, :b]
            torch.mul(dh_t, tc, out=dg[:, 2 * H : 3 * H])
            dc_t += _tanh_grad(dh_t * o, tc)
            torch.mul(dc_t, g, out=dg[:, :H])
            torch.mul(dc_t, c_prev, out=dg[:, H : 2 * H])
            torch.mul(dc_t, i, out=dg[:, 3 * H :])
            dc_t.mul_(f)
            _sigmoid_backward(dg[:, : 3 * H], a[:, : 3 * H], grad_input=dg[:, : 3 * H])
            _tanh_backward(dg[:, 3 * H :], g, grad_input=dg[:, 3 * H :])
            matmul_into(dh_t, dg, w_hh)
        return d_gates, d_gates, dh, dc, ()


class PeepholeLSTMKernel(Kernel):
    gate_order = (0, 1, 3, 2)  # i, f, o, g
    extras = ("weight_ci", "weight_cf", "weight_co")

    def forward(self, gates, h0, c0, w_hh, b_hh, extras, sizes):
        T, G = gates.shape[0], gates.shape[2]
        H = G // 4
        padded = len(set(sizes)) > 1
        out, cells, tanh_c = (_alloc(gates, H, padded) for _ in range(3))
        w_ci, w_cf, w_co = extras
        w_cif = torch.stack((w_ci, w_cf))  # (2, H): the input and forget peepholes in one op
        w_t = w_hh.t().contiguous()  # addmm is slower on a transposed view
        h, c = h0, c0
        for t in range(T):
            b = sizes[t]
            a = gates[t, :b]
            matmul_into(a, h[:b], w_t, add=a)
            c_prev = c[:b]
            a[:, : 2 * H].view(b, 2, H).addcmul_(c_prev.unsqueeze(1), w_cif).sigmoid_()
            a[:, 3 * H :].tanh_()
            c_t = cells[t, :b]
            torch.mul(a[:, H : 2 * H], c_prev, out=c_t)
            c_t.addcmul_(a[:, :H], a[:, 3 * H :])
            o = a[:, 2 * H : 3 * H]
            o.addcmul_(c_t, w_co).sigmoid_()
            torch.mul(o, torch.tanh(c_t, out=tanh_c[t, :b]), out=out[t, :b])
            h, c = out[t], cells[t]
        return out, cells, (gates, cells, tanh_c)

    def backward(self, saved, d_out, dh, dc, h0, c0, w_hh, extras, sizes):
        gates, cells, tanh_c = saved
        w_ci, w_cf, w_co = extras
        H = gates.shape[-1] // 4
        d_gates = _alloc(gates, gates.shape[-1], len(set(sizes)) > 1)
        for t in reversed(range(len(sizes))):
            b = sizes[t]
            a, dg = gates[t, :b], d_gates[t, :b]
            i, f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H : 3 * H], a[:, 3 * H :]
            d_if, d_o = dg[:, : 2 * H], dg[:, 2 * H : 3 * H]
            tc = tanh_c[t, :b]
            c_prev = cells[t - 1, :b] if t else c0[:b]
            dh_t, dc_t = dh[:b], dc[:b]
            dh_t += d_out[t, :b]
            torch.mul(dh_t, tc, out=d_o)
            _sigmoid_backward(d_o, o, grad_input=d_o)
            dc_t += _tanh_grad(dh_t * o, tc)
            dc_t.addcmul_(d_o, w_co)
            torch.mul(dc_t, g, out=dg[:, :H])
            torch.mul(dc_t, c_prev, out=dg[:, H : 2 * H])
            torch.mul(dc_t, i, out=dg[:, 3 * H :])
            _sigmoid_backward(d_if, a[:, : 2 * H], grad_input=d_if)
            _tanh_backward(dg[:, 3 * H :], g, grad_input=dg[:, 3 * H :])
            dc_t.mul_(f)
            dc_t.addcmul_(dg[:, :H], w_ci)  # two addcmuls: faster than a broadcast product and a sum
            dc_t.addcmul_(dg[:, H : 2 * H], w_cf)
            matmul_into(dh_t, dg, w_hh)
        # the peephole gradients as one reduction over all steps
        c_prev_all = torch.cat((c0.unsqueeze(0), cells[:-1]))
        d_w_cif = (d_gates[..., : 2 * H].unflatten(-1, (2, H)) * c_prev_all.unsqueeze(2)).sum((0, 1))
        d_w_co = (d_gates[..., 2 * H : 3 * H] * cells).sum((0, 1))
        return d_gates, d_gates, dh, dc, (d_w_cif[0], d_w_cif[1], d_w_co)


class CoupledLSTMKernel(Kernel):
    gate_order = (0, 2, 1)  # f, o, g

    def forward(self, gates, h0, c0, w_hh, b_hh, extras, sizes):
        T, G = gates.shape[0], gates.shape[2]
        H = G // 3
        padded = len(set(sizes)) > 1
        out, cells, tanh_c = (_alloc(gates, H, padded) for _ in range(3))
        w_t = w_hh.t().contiguous()  # addmm is slower on a transposed view
        h, c = h0, c0
        for t in range(T):
            b = sizes[t]
            a = gates[t, :b]
            matmul_into(a, h[:b], w_t, add=a)
            a[:, : 2 * H].sigmoid_()
            a[:, 2 * H :].tanh_()
            f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
            c_t = cells[t, :b]
            # f * c + (1 - f) * g == g + f * (c - g)
            torch.sub(c[:b], g, out=c_t)
            c_t.mul_(f).add_(g)
            torch.mul(o, torch.tanh(c_t, out=tanh_c[t, :b]), out=out[t, :b])
            h, c = out[t], cells[t]
        return out, cells, (gates, cells, tanh_c)

    def backward(self, saved, d_out, dh, dc, h0, c0, w_hh, extras, sizes):
        gates, cells, tanh_c = saved
        H = gates.shape[-1] // 3
        d_gates = _alloc(gates, gates.shape[-1], len(set(sizes)) > 1)
        for t in reversed(range(len(sizes))):
            b = sizes[t]
            a, dg = gates[t, :b], d_gates[t, :b]
            f, o, g = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
            d_f, d_o, d_g = dg[:, :H], dg[:, H : 2 * H], dg[:, 2 * H :]
            tc = tanh_c[t, :b]
            c_prev = cells[t - 1, :b] if t else c0[:b]
            dh_t, dc_t = dh[:b], dc[:b]
            dh_t += d_out[t, :b]
            torch.mul(dh_t, tc, out=d_o)
            dc_t += _tanh_grad(dh_t * o, tc)
            torch.sub(c_prev, g, out=d_f)
            d_f.mul_(dc_t)
            torch.mul(dc_t, 1 - f, out=d_g)
            dc_t.mul_(f)
            _sigmoid_backward(dg[:, : 2 * H], a[:, : 2 * H], grad_input=dg[:, : 2 * H])
            _tanh_backward(d_g, g, grad_input=d_g)
            matmul_into(dh_t, dg, w_hh)
        return d_gates, d_gates, dh, dc, ()


class GRUKernel(Kernel):
    fold_hidden_bias = False  # b_hn sits inside r * (W_hn h + b_hn)

    def forward(self, gates, h0, c0, w_hh, b_hh, extras, sizes):
        T, G = gates.shape[0], gates.shape[2]
        H = G // 3
        padded = len(set(sizes)) > 1
        out = _alloc(gates, H, padded)
        hidden = _alloc(gates, G, padded)  # W_hh h + b_hh per step: the backward needs its n block
        w_t = w_hh.t().contiguous()  # addmm is slower on a transposed view
        h = h0
        for t in range(T):
            b = sizes[t]
            a = gates[t, :b]
            gh = matmul_into(hidden[t, :b], h[:b], w_t, add=b_hh)
            a[:, : 2 * H].add_(gh[:, : 2 * H]).sigmoid_()
            r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
            n.addcmul_(r, gh[:, 2 * H :]).tanh_()
            h_t = out[t, :b]
            # (1 - z) * n + z * h == n + z * (h - n)
            torch.sub(h[:b], n, out=h_t)
            h_t.mul_(z).add_(n)
            h = out[t]
        return out, None, (gates, hidden, out)

    def backward(self, saved, d_out, dh, dc, h0, c0, w_hh, extras, sizes):
        gates, hidden, out = saved
        H = gates.shape[-1] // 3
        padded = len(set(sizes)) > 1
        d_hidden, d_input = _alloc(gates, 3 * H, padded), _alloc(gates, 3 * H, padded)
        for t in reversed(range(len(sizes))):
            b = sizes[t]
            a, dgh, dn = gates[t, :b], d_hidden[t, :b], d_input[t, :b, 2 * H :]
            r, z, n = a[:, :H], a[:, H : 2 * H], a[:, 2 * H :]
            h_prev = out[t - 1, :b] if t else h0[:b]
            dh_t = dh[:b]
            dh_t += d_out[t, :b]
            torch.sub(dh_t, dh_t * z, out=dn)
            _tanh_backward(dn, n, grad_input=dn)
            torch.sub(h_prev, n, out=dgh[:, H : 2 * H])
            dgh[:, H : 2 * H].mul_(dh_t)
            torch.mul(dn, hidden[t, :b, 2 * H :], out=dgh[:, :H])
            _sigmoid_backward(dgh[:, : 2 * H], a[:, : 2 * H], grad_input=dgh[:, : 2 * H])
            torch.mul(dn, r, out=dgh[:, 2 * H :])
            dh_t.mul_(z)
            matmul_into(dh_t, dgh, w_hh, add=dh_t)
        d_input[..., : 2 * H] = d_hidden[..., : 2 * H]  # only n's input gradient differs from the hidden one
        return d_input, d_hidden, dh, None, ()


def kernel_for(cell: RecurrentCell) -> Kernel | None:
    """The hand-written kernel for a cell, or None when it has none (it then runs through autograd)."""
    if type(cell) is GRUCell:
        return _KERNELS[GRUCell] if cell.reset_after else None
    return _KERNELS.get(type(cell))


_KERNELS: dict[type, Kernel] = {
    ElmanCell: ElmanKernel(),
    LSTMCell: LSTMKernel(),
    GRUCell: GRUKernel(),
    PeepholeLSTMCell: PeepholeLSTMKernel(),
    CoupledLSTMCell: CoupledLSTMKernel(),
}
