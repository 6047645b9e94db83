"""Recurrent and its backends against torch.nn, against each other, and against finite differences."""

import itertools

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from rnn_core import CELLS, GRUCell, Recurrent
from rnn_core.cells import LSTMCell

TOL = {"atol": 1e-5, "rtol": 1e-5}
TORCH_CELLS = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}
LENGTHS = [7, 3, 1, 7, 5]  # unsorted, with the longest twice and a length of one
SHAPES = list(itertools.product([1, 2], [False, True], [False, True]))  # layers, bidirectional, with lengths
SHAPE_IDS = [f"L{layers}-{'bi' if bi else 'uni'}-{'lengths' if lens else 'full'}" for layers, bi, lens in SHAPES]


def _inputs(batch_first=True, input_size=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    shape = (len(LENGTHS), 7, input_size) if batch_first else (7, len(LENGTHS), input_size)
    return torch.randn(shape, generator=gen)


def _initial_state(cell: str, layers: int, directions: int, hidden: int = 6, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    names = Recurrent(cell, 4, hidden).cell.state_names
    tensors = tuple(torch.randn(layers * directions, len(LENGTHS), hidden, generator=gen) for _ in names)
    return tensors if len(tensors) > 1 else tensors[0]


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def _loss(out, state, seed=2):
    """A loss that weights every output and final-state element differently, so no gradient hides."""
    gen = torch.Generator().manual_seed(seed)
    total = (out * torch.randn(out.shape, generator=gen)).sum()
    for s in _as_tuple(state):
        total = total + (s * torch.randn(s.shape, generator=gen)).sum()
    return total


def _run(module, x, lengths, state):
    """Forward and backward; returns output, final state and the gradients of input, state and parameters."""
    x = x.clone().requires_grad_()
    state = tuple(s.clone().requires_grad_() for s in _as_tuple(state))
    given = state if len(state) > 1 else state[0]
    if isinstance(module, torch.nn.RNNBase) and lengths is not None:
        packed = pack_padded_sequence(x, torch.tensor(lengths), batch_first=module.batch_first, enforce_sorted=False)
        out, final = module(packed, given)
        out, _ = pad_packed_sequence(out, batch_first=module.batch_first, total_length=7)
    elif isinstance(module, torch.nn.RNNBase):
        out, final = module(x, given)
    else:
        out, final = module(x, lengths, given)
    _loss(out, final).backward()
    grads = {name: p.grad for name, p in module.named_parameters()}
    return out, _as_tuple(final), x.grad, tuple(s.grad for s in state), grads


def _assert_same(expected, actual):
    out_e, final_e, dx_e, dstate_e, grads_e = expected
    out_a, final_a, dx_a, dstate_a, grads_a = actual
    torch.testing.assert_close(out_a, out_e, **TOL)
    for e, a in zip(final_e, final_a, strict=True):
        torch.testing.assert_close(a, e, **TOL)
    torch.testing.assert_close(dx_a, dx_e, **TOL)
    for e, a in zip(dstate_e, dstate_a, strict=True):
        torch.testing.assert_close(a, e, **TOL)
    assert grads_a.keys() == grads_e.keys()
    for name in grads_e:
        torch.testing.assert_close(grads_a[name], grads_e[name], **TOL, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize(("layers", "bidirectional", "with_lengths"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("backend", ["torch", "fused", "loop"])
@pytest.mark.parametrize("cell", list(TORCH_CELLS))
def test_matches_torch_nn(cell, backend, layers, bidirectional, with_lengths):
    torch.manual_seed(0)
    reference = TORCH_CELLS[cell](4, 6, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    ours = Recurrent(cell, 4, 6, num_layers=layers, bidirectional=bidirectional, backend=backend)
    ours.load_state_dict(reference.state_dict())
    lengths = LENGTHS if with_lengths else None
    state = _initial_state(cell, layers, 2 if bidirectional else 1)
    _assert_same(_run(reference, _inputs(), lengths, state), _run(ours, _inputs(), lengths, state))


@pytest.mark.parametrize("backend", ["torch", "fused", "loop"])
def test_time_major_input(backend):
    torch.manual_seed(0)
    reference = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    ours = Recurrent("lstm", 4, 6, num_layers=2, bidirectional=True, batch_first=False, backend=backend)
    ours.load_state_dict(reference.state_dict())
    state = _initial_state("lstm", 2, 2)
    x = _inputs(batch_first=False)
    _assert_same(_run(reference, x, LENGTHS, state), _run(ours, x, LENGTHS, state))


ALL_CELLS = [*CELLS, "gru_lecture"]


def _make(cell, backend, layers=1, bidirectional=False, input_size=4, hidden=6):
    spec = GRUCell(input_size, hidden, reset_after=False) if cell == "gru_lecture" else cell
    return Recurrent(spec, input_size, hidden, num_layers=layers, bidirectional=bidirectional, backend=backend)


@pytest.mark.parametrize(("layers", "bidirectional", "with_lengths"), SHAPES, ids=SHAPE_IDS)
@pytest.mark.parametrize("cell", ALL_CELLS)
def test_fused_matches_loop(cell, layers, bidirectional, with_lengths):
    torch.manual_seed(0)
    loop = _make(cell, "loop", layers, bidirectional)
    fused = _make(cell, "fused", layers, bidirectional)
    fused.load_state_dict(loop.state_dict())
    lengths = LENGTHS if with_lengths else None
    state = _initial_state("lstm" if "lstm" in cell else "gru", layers, 2 if bidirectional else 1)
    expected, actual = _run(loop, _inputs(), lengths, state), _run(fused, _inputs(), lengths, state)
    _assert_same(expected, actual)
    if with_lengths:
        padded = torch.arange(7) >= torch.tensor(LENGTHS).unsqueeze(1)
        assert actual[0][padded].abs().sum() == 0, "outputs past a sequence's end must be zero"


@pytest.mark.parametrize("backend", ["fused", "loop"])
@pytest.mark.parametrize("cell", ALL_CELLS)
def test_lengths_equal_running_each_sequence_alone(cell, backend):
    torch.manual_seed(0)
    module = _make(cell, backend, layers=2, bidirectional=True)
    x = _inputs()
    out, state = module(x, LENGTHS)
    for i, n in enumerate(LENGTHS):
        alone_out, alone_state = module(x[i : i + 1, :n])
        torch.testing.assert_close(out[i : i + 1, :n], alone_out, **TOL)
        assert out[i, n:].abs().sum() == 0
        for s, a in zip(_as_tuple(state), _as_tuple(alone_state), strict=True):
            torch.testing.assert_close(s[:, i : i + 1], a, **TOL)


@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize("cell", ALL_CELLS)
def test_fused_gradcheck(cell, with_lengths):
    """The hand-written backward against finite differences, for inputs, initial state and every parameter."""
    torch.manual_seed(0)
    module = _make(cell, "fused", input_size=3, hidden=2).double()
    names = [name for name, _ in module.named_parameters()]
    lengths = [4, 2, 3] if with_lengths else None
    x = torch.randn(3, 4, 3, dtype=torch.double, requires_grad=True)
    state = tuple(
        torch.randn(1, 3, 2, dtype=torch.double, requires_grad=True) for _ in module.cell.state_names
    )

    def run(x, *tensors):
        initial, params = tensors[: len(state)], tensors[len(state) :]
        given = initial if len(initial) > 1 else initial[0]
        out, final = torch.func.functional_call(module, dict(zip(names, params, strict=True)), (x, lengths, given))
        return (out, *_as_tuple(final))

    params = tuple(p.detach().clone().requires_grad_() for p in module.parameters())
    assert torch.autograd.gradcheck(run, (x, *state, *params))


def test_standalone_cell_matches_torch_cell():
    torch.manual_seed(0)
    reference = torch.nn.LSTMCell(4, 6)
    ours = LSTMCell(4, 6)
    ours.load_state_dict(reference.state_dict())
    x, h, c = torch.randn(3, 4), torch.randn(3, 6), torch.randn(3, 6)
    h_ref, c_ref = reference(x, (h, c))
    h_ours, (h_state, c_ours) = ours(x, (h, c))
    torch.testing.assert_close(h_ours, h_ref, **TOL)
    torch.testing.assert_close(c_ours, c_ref, **TOL)
    assert h_state is h_ours


def test_lecture_gru_is_a_different_function():
    torch.manual_seed(0)
    after = _make("gru", "loop")
    before = _make("gru_lecture", "loop")
    before.load_state_dict(after.state_dict())
    x = _inputs()
    assert not torch.allclose(after(x)[0], before(x)[0])


def test_auto_backend():
    cpu = torch.device("cpu")
    assert Recurrent("lstm", 4, 6).resolved_backend(cpu) == "torch"
    assert Recurrent("peephole_lstm", 4, 6).resolved_backend(cpu) == "fused"
    assert Recurrent(GRUCell(4, 6, reset_after=False), 4, 6).resolved_backend(cpu) == "fused"


def test_parameter_names_follow_torch_nn():
    ours = Recurrent("lstm", 4, 6, num_layers=2, bidirectional=True)
    reference = torch.nn.LSTM(4, 6, num_layers=2, bidirectional=True)
    assert [(n, p.shape) for n, p in ours.named_parameters()] == [
        (n, p.shape) for n, p in reference.named_parameters()
    ]
    peephole = Recurrent("peephole_lstm", 4, 6, bidirectional=True)
    assert "weight_ci_l0_reverse" in dict(peephole.named_parameters())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "lstmm"}, "unknown cell 'lstmm'"),
        ({"cell": "peephole_lstm", "backend": "torch"}, "backend 'torch' runs only the standard cells"),
        ({"cell": GRUCell(4, 6, reset_after=False), "backend": "torch"}, "backend 'torch'"),
        ({"backend": "cudnn"}, "unknown backend 'cudnn'"),
        ({"cell": LSTMCell(5, 6)}, "input_size=5"),
        ({"num_layers": 0}, "num_layers must be at least 1"),
        ({"dropout": 1.0}, "dropout must be in"),
    ],
)
def test_bad_construction(kwargs, message):
    args = {"cell": "lstm", "input_size": 4, "hidden_size": 6} | kwargs
    with pytest.raises(ValueError, match=message):
        Recurrent(**args)


BACKENDS = ["torch", "fused", "loop"]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("x_shape", "lengths", "message"),
    [
        ((5, 7, 3), None, r"Recurrent's input x has 3 features per step \(shape \(5, 7, 3\)\); expected input_size=4"),
        ((5, 7, 6), None, r"has 6 features per step .* expected input_size=4"),
        ((7, 4), None, r"must be 3-D \(batch, time, input_size=4\); got shape \(7, 4\); a single sequence needs a "
                       r"batch dimension: x.unsqueeze\(0\)"),
        ((2, 5, 7, 4), None, r"must be 3-D \(batch, time, input_size=4\); got shape \(2, 5, 7, 4\)$"),
        ((4,), None, r"must be 3-D .* got shape \(4,\)$"),
        ((5, 0, 4), None, r"x has 0 time steps \(shape \(5, 0, 4\), time is dim 1\); every sequence needs at least"),
        ((0, 0, 4), None, r"x has 0 time steps"),
        ((5, 7, 4), [7, 0, 3, 3, 3], r"lengths\[1\] = 0; every length must be in \[1, 7\]"),
        ((5, 7, 4), [7, 3, 3, 3, -2], r"lengths\[4\] = -2; every length must be in \[1, 7\]"),
        ((5, 7, 4), [7, 8, 3, 3, 3], r"lengths\[1\] = 8; every length must be in \[1, 7\] \(the sequence has 7"),
        ((5, 7, 4), [7, 3], r"lengths must have shape \(5,\), one per sequence of the batch; got \(2,\)"),
        ((5, 7, 4), [[7], [3], [3], [3], [3]], r"lengths must have shape \(5,\).* got \(5, 1\)"),
        ((5, 7, 4), 7, r"lengths must have shape \(5,\).* got \(\)"),
    ],
)
def test_bad_input(backend, x_shape, lengths, message):
    module = Recurrent("lstm", 4, 6, backend=backend)
    with pytest.raises(ValueError, match=message):
        module(torch.randn(x_shape), lengths)


def test_time_major_input_names_its_own_layout():
    module = Recurrent("gru", 4, 6, batch_first=False)
    with pytest.raises(ValueError, match=r"3-D \(time, batch, input_size=4\); got shape \(7, 4\); .* x.unsqueeze\(1\)"):
        module(torch.randn(7, 4))
    with pytest.raises(ValueError, match=r"x has 0 time steps \(shape \(0, 5, 4\), time is dim 0\)"):
        module(torch.randn(0, 5, 4))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ([7, 2.5, 3, 3, 3], r"lengths must hold integers .* got a torch.float32 tensor of shape \(5,\)$"),
        (torch.tensor([7.0, 2, 3, 3, 3]), r"lengths must hold integers .* torch.float32"),
        (torch.ones(5, dtype=torch.bool), r"lengths must hold integers .* torch.bool"),
        (["7", "2", "3", "3", "3"],
         r"lengths must be 5 integers \(a list or an integer tensor of shape \(5,\)\); got list"),
        # torch.nn's call forms: lstm(x, (h0, c0)) and gru(x, h0) put the state where Recurrent takes lengths
        ((torch.zeros(1, 5, 6), torch.zeros(1, 5, 6)), r"lengths \(the second positional argument\) was given a tuple "
         r"of tensors of shapes \(1, 5, 6\), \(1, 5, 6\), which looks like an initial state; .* module\(x, state="),
        ([torch.zeros(1, 5, 6)],
         r"was given a list of tensors of shapes \(1, 5, 6\), which looks like an initial state"),
        (torch.zeros(1, 5, 6), r"lengths must hold integers .* shape \(1, 5, 6\); an initial state goes in by keyword: "
         r"module\(x, state=h0\)"),
    ],
)
def test_lengths_of_the_wrong_kind_are_a_type_error(backend, lengths, message):
    module = Recurrent("lstm", 4, 6, backend=backend)
    with pytest.raises(TypeError, match=message):
        module(torch.randn(5, 7, 4), lengths)


@pytest.mark.parametrize("backend", BACKENDS)
def test_lengths_of_any_integer_dtype_or_tensor_run(backend):
    module = Recurrent("lstm", 4, 6, backend=backend)
    x = torch.randn(5, 7, 4)
    expected, _ = module(x, LENGTHS)
    for lengths in (tuple(LENGTHS), torch.tensor(LENGTHS, dtype=torch.int32), torch.tensor(LENGTHS).numpy()):
        torch.testing.assert_close(module(x, lengths)[0], expected)


@pytest.mark.parametrize("cell", sorted(CELLS))
@pytest.mark.parametrize("backend", BACKENDS)
def test_an_empty_batch_gives_empty_results_as_torch_nn(cell, backend):
    """torch.nn.LSTM returns empty outputs and states for a batch of 0 (and raises for 0 steps, as Recurrent does)."""
    if backend == "torch" and cell not in TORCH_CELLS:
        pytest.skip("the torch backend runs only the standard cells")
    module = Recurrent(cell, 4, 6, num_layers=2, bidirectional=True, backend=backend)
    x = torch.randn(0, 7, 4, requires_grad=True)
    for lengths in (None, [], torch.zeros(0, dtype=torch.int64)):
        out, state = module(x, lengths)
        assert out.shape == (0, 7, 12)
        assert all(s.shape == (4, 0, 6) for s in _as_tuple(state))
        _loss(out, state).backward()
        assert x.grad.shape == x.shape
    reference = TORCH_CELLS.get(cell, torch.nn.LSTM)(4, 6, num_layers=2, bidirectional=True, batch_first=True)
    assert reference(torch.randn(0, 7, 4))[0].shape == out.shape


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(
    ("state", "error", "message"),
    [
        (torch.zeros(1, 5, 6), TypeError, r"state must be a tuple \(h, c\) of tensors of shape \(1, 5, 6\) for a "
         r"Recurrent of LSTMCell; got one tensor of shape \(1, 5, 6\)"),
        ((torch.zeros(1, 5, 6),), TypeError, r"state must be a tuple \(h, c\).* got a tuple of Tensor$"),
        ((0, 0), TypeError, r"state must be a tuple \(h, c\).* got a tuple of int, int"),
        ({"h": 0}, TypeError, r"state must be a tuple \(h, c\).* got dict"),
        ((torch.zeros(1, 5, 6), torch.zeros(1, 4, 6)), ValueError,
         r"initial state c has shape \(1, 4, 6\); expected \(1, 5, 6\) \(num_layers \* num_directions, batch, hid"),
        ((torch.zeros(5, 6), torch.zeros(5, 6)), ValueError,
         r"initial state h has shape \(5, 6\); expected \(1, 5, 6\)"),
        ((torch.zeros(2, 5, 6), torch.zeros(2, 5, 6)), ValueError, r"initial state h has shape \(2, 5, 6\)"),
        ((torch.zeros(1, 5, 7), torch.zeros(1, 5, 6)), ValueError, r"initial state h has shape \(1, 5, 7\)"),
        ((torch.zeros(1, 5, 6, device="meta"),) * 2, ValueError, r"initial state h is on meta but the input is on cpu"),
    ],
)
def test_bad_state(backend, state, error, message):
    module = Recurrent("lstm", 4, 6, backend=backend)
    with pytest.raises(error, match=message):
        module(torch.randn(5, 7, 4), state=state)


def test_bad_state_of_a_one_tensor_cell():
    module = Recurrent("gru", 4, 6, num_layers=2)
    with pytest.raises(TypeError, match=r"state must be a tensor h of shape \(2, 5, 6\) for a Recurrent of GRUCell; "
                                        r"got a tuple of Tensor, Tensor"):
        module(torch.randn(5, 7, 4), state=(torch.zeros(2, 5, 6), torch.zeros(2, 5, 6)))


def test_input_on_another_device_than_the_parameters():
    with pytest.raises(ValueError, match=r"Recurrent's input x is on meta but the module's parameters are on cpu"):
        Recurrent("lstm", 4, 6)(torch.randn(5, 7, 4, device="meta"))
