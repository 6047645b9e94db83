"""Recurrent and ConvRecurrent under autocast and in float64: every cell and backend runs, returns the parameters'
dtype (float32 outputs, states and gradients under autocast, as torch.nn's own CPU LSTM kernel), matches float32
within the autocast dtype's round-off, takes inputs in the autocast dtype, and leaves float64 alone."""

import pytest
import torch

from rnn_core import CELLS, ConvRecurrent, GRUCell, LSTMCell, Recurrent

LENGTHS = [7, 3, 1, 7, 5]  # unsorted, with the longest twice and a length of one
#: every output, state and gradient under autocast: max |autocast - float32| <= RELATIVE * max |float32|, about eight
#: times bfloat16's unit round-off (2^-8); the largest measured on the CPU is 1.5e-2
RELATIVE = 3e-2
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
AUTOCASTS = [
    pytest.param("cpu", torch.bfloat16, id="cpu-bf16"),
    pytest.param("cuda", torch.float16, id="cuda-fp16", marks=needs_cuda),
    pytest.param("cuda", torch.bfloat16, id="cuda-bf16", marks=needs_cuda),
]
STANDARD = ("rnn", "lstm", "gru")
RUNS = [(cell, backend) for cell in [*CELLS, "gru_lecture"] for backend in ("auto", "torch", "fused", "loop")
        if backend != "torch" or cell in STANDARD]
RUN_IDS = [f"{cell}-{backend}" for cell, backend in RUNS]


def _make(cell: str, backend: str) -> Recurrent:
    torch.manual_seed(0)
    spec = GRUCell(4, 6, reset_after=False) if cell == "gru_lecture" else cell
    return Recurrent(spec, 4, 6, num_layers=2, bidirectional=True, backend=backend)


def _results(module, inputs: tuple, autocast: tuple | None) -> dict[str, torch.Tensor]:
    """Outputs, final states and every gradient (input, initial states, parameters) of one forward and backward,
    under ``autocast = (device, dtype)`` or none."""
    leaves = []

    def leaf(t):
        if isinstance(t, tuple):
            return tuple(leaf(s) for s in t)
        if torch.is_tensor(t) and t.is_floating_point():
            leaves.append(t.detach().clone().requires_grad_())
            return leaves[-1]
        return t

    inputs = leaf(inputs)
    device = next(module.parameters()).device.type
    with torch.autocast(device, dtype=autocast[1] if autocast else None, enabled=autocast is not None):
        out, final = module(*inputs)
    final = final if isinstance(final, tuple) else (final,)
    gen = torch.Generator().manual_seed(2)  # weights every element differently, so no gradient hides
    loss = sum((t * torch.randn(t.shape, generator=gen).to(t.device)).sum() for t in (out, *final))
    loss.backward()
    results = {"output": out, **{f"final {i}": f for i, f in enumerate(final)}}
    results |= {f"grad input {i}": t.grad for i, t in enumerate(leaves)}
    results |= {f"grad {name}": p.grad for name, p in module.named_parameters()}
    module.zero_grad()
    return results


def _recurrent_inputs(module: Recurrent, device, dtype=torch.float32) -> tuple:
    x = torch.randn(len(LENGTHS), 7, 4, generator=torch.Generator().manual_seed(0))
    gen = torch.Generator().manual_seed(1)
    state = tuple(torch.randn(4, len(LENGTHS), 6, generator=gen) for _ in module.cell.state_names)
    state = tuple(s.to(device, dtype) for s in state)
    return x.to(device, dtype), LENGTHS, state if len(state) > 1 else state[0]


def _cast(inputs, dtype):
    """inputs with every floating tensor, in tuples too, cast to dtype."""
    if isinstance(inputs, tuple):
        return tuple(_cast(t, dtype) for t in inputs)
    return inputs.to(dtype) if torch.is_tensor(inputs) and inputs.is_floating_point() else inputs


def _assert_within_round_off(expected: dict, actual: dict) -> None:
    assert expected.keys() == actual.keys()
    for name, e in expected.items():
        a = actual[name]
        assert a.dtype == e.dtype == torch.float32, f"{name}: {a.dtype}"
        error, scale = (a - e).abs().max().item(), e.abs().max().item()
        assert error <= RELATIVE * scale, f"{name}: max error {error:.3g} against max value {scale:.3g}"
    assert not torch.equal(actual["output"], expected["output"]), "the matmuls must run in the autocast dtype"


@pytest.mark.parametrize(("device", "dtype"), AUTOCASTS)
@pytest.mark.parametrize(("cell", "backend"), RUNS, ids=RUN_IDS)
@pytest.mark.parametrize("with_lengths", [False, True], ids=["full", "lengths"])
def test_autocast_matches_float32(cell, backend, with_lengths, device, dtype):
    module = _make(cell, backend).to(device)
    x, lengths, state = _recurrent_inputs(module, device)
    inputs = (x, lengths if with_lengths else None, state)
    expected = _results(module, inputs, None)
    actual = _results(module, inputs, (device, dtype))
    _assert_within_round_off(expected, actual)
    assert torch.backends.mkldnn.enabled, "the torch backend must turn oneDNN back on"


@pytest.mark.parametrize(("cell", "backend"), RUNS, ids=RUN_IDS)
def test_inputs_in_the_autocast_dtype_run_as_their_float32_values(cell, backend):
    """Under autocast a Linear hands Recurrent its output, and a Bridge its state, in bfloat16."""
    module = _make(cell, backend)
    low = _cast(_recurrent_inputs(module, "cpu"), torch.bfloat16)
    expected = _results(module, _cast(low, torch.float32), ("cpu", torch.bfloat16))
    actual = _results(module, low, ("cpu", torch.bfloat16))
    for name, e in expected.items():
        assert actual[name].dtype == (torch.bfloat16 if name.startswith("grad input") else torch.float32), name
        torch.testing.assert_close(actual[name], e.to(actual[name].dtype), atol=0, rtol=0)


@pytest.mark.parametrize(("device", "dtype"), AUTOCASTS)
@pytest.mark.parametrize("cell", sorted(CELLS))
def test_conv_recurrent_under_autocast_matches_float32(cell, device, dtype):
    torch.manual_seed(0)
    conv = ConvRecurrent(cell, 3, 4, num_layers=2).to(device)
    maps = torch.randn(3, 5, 3, 4, 3, generator=torch.Generator().manual_seed(0)).to(device)
    inputs = (maps, [5, 2, 4])
    _assert_within_round_off(_results(conv, inputs, None), _results(conv, inputs, (device, dtype)))


@pytest.mark.parametrize("autocast", [None, ("cpu", torch.bfloat16)], ids=["plain", "autocast"])
@pytest.mark.parametrize(("cell", "backend"), RUNS, ids=RUN_IDS)
def test_float64_runs_in_float64_even_under_autocast(cell, backend, autocast):
    """Every backend in float64, plain and under autocast, equals the loop's plain float64 far below float32's
    round-off: nothing was cast."""
    reference = _make(cell, "loop").double()
    module = _make(cell, backend).double()
    inputs = _recurrent_inputs(module, "cpu", torch.float64)
    expected = _results(reference, inputs, None)
    actual = _results(module, inputs, autocast)
    for name, e in expected.items():
        assert actual[name].dtype == torch.float64, name
        torch.testing.assert_close(actual[name], e, atol=1e-12, rtol=1e-12, msg=lambda m, n=name: f"{n}: {m}")


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_conv_recurrent_float64_runs_in_float64_even_under_autocast(cell):
    torch.manual_seed(0)
    conv = ConvRecurrent(cell, 3, 4).double()
    inputs = (torch.randn(3, 5, 3, 4, 3, dtype=torch.float64), [5, 2, 4])
    expected, actual = _results(conv, inputs, None), _results(conv, inputs, ("cpu", torch.bfloat16))
    for name, e in expected.items():
        assert actual[name].dtype == torch.float64, name
        torch.testing.assert_close(actual[name], e, atol=1e-12, rtol=1e-12)


@pytest.mark.parametrize("backend", ["torch", "fused", "loop"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16, torch.int64])
def test_an_input_of_another_dtype_outside_autocast_is_an_error_naming_both(backend, dtype):
    module = Recurrent("lstm", 4, 6, backend=backend)
    both = f"has dtype {dtype} but the module's parameters are torch.float32"
    with pytest.raises(TypeError, match=f"Recurrent's input x {both}"):
        module(torch.randn(2, 3, 4).to(dtype))
    with pytest.raises(TypeError, match=f"initial state h {both}"):
        module(torch.randn(2, 3, 4), state=(torch.zeros(1, 2, 6, dtype=dtype), torch.zeros(1, 2, 6)))
    with pytest.raises(TypeError, match=f"ConvRecurrent's input x {both}"):
        ConvRecurrent("lstm", 3, 4)(torch.randn(2, 3, 3, 4, 4).to(dtype))
    with pytest.raises(TypeError, match=f"the cell's input {both}"):
        LSTMCell(4, 6)(torch.randn(2, 4).to(dtype))


def test_integer_input_says_token_ids_need_an_embedding():
    with pytest.raises(TypeError, match=r"torch.int64 .*token ids go through an nn.Embedding first"):
        Recurrent("gru", 4, 6)(torch.randint(0, 9, (2, 3, 4)))
