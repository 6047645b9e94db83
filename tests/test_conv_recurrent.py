"""ConvRecurrent: with 1 x 1 kernels it is Recurrent at every grid position; wider kernels reach exactly one more
neighbour per step; lengths hold the state; bad options and inputs are named."""

import pytest
import torch

from rnn_core import CELLS, ConvRecurrent, Recurrent

LENGTHS = [5, 2, 4]


def _maps(channels=3, height=4, width=3, seed=0):
    return torch.randn(len(LENGTHS), 5, channels, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_one_by_one_kernels_are_recurrent_at_every_position(cell):
    torch.manual_seed(0)
    conv = ConvRecurrent(cell, 3, 6, kernel_size=1, num_layers=2)
    flat = Recurrent(cell, 3, 6, num_layers=2, backend="loop")
    flat.load_state_dict({f"{name}_l{layer}": p.flatten(1) if p.dim() == 4 else p
                          for layer, cell_ in enumerate(conv.layers) for name, p in cell_.named_parameters()})
    x = _maps()
    out, state = conv(x, LENGTHS)
    B, T, C, H, W = x.shape
    sequences = x.permute(0, 3, 4, 1, 2).reshape(B * H * W, T, C)  # every position of every clip on its own
    flat_out, flat_state = flat(sequences, torch.tensor(LENGTHS).repeat_interleave(H * W))
    torch.testing.assert_close(out, flat_out.view(B, H, W, T, 6).permute(0, 3, 4, 1, 2))
    flat_state = flat_state if isinstance(flat_state, tuple) else (flat_state,)
    assert len(state) == len(flat_state) == len(conv.state_names)
    for s, f in zip(state, flat_state, strict=True):
        torch.testing.assert_close(s, f.view(2, B, H, W, 6).permute(0, 1, 4, 2, 3))


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_a_change_spreads_one_kernel_radius_per_step(kernel_size):
    torch.manual_seed(0)
    conv = ConvRecurrent("lstm", 2, 4, kernel_size=kernel_size)
    x = torch.randn(1, 3, 2, 15, 15)
    poked = x.clone()
    poked[0, 0, :, 7, 7] += 1.0  # one position of the first frame
    changed = (conv(poked)[0] - conv(x)[0]).abs().amax(2)[0] > 0  # (T, H, W)
    distance = torch.maximum(*torch.meshgrid(*(torch.arange(15).sub(7).abs(),) * 2, indexing="ij"))
    for t in range(3):
        reach = (t + 1) * (kernel_size // 2)
        assert changed[t][distance <= reach].all() and not changed[t][distance > reach].any()


def test_lengths_equal_running_each_sequence_alone():
    torch.manual_seed(0)
    conv = ConvRecurrent("gru", 3, 4, num_layers=2)
    x = _maps()
    out, (h,) = conv(x, LENGTHS)
    for i, n in enumerate(LENGTHS):
        alone, (h_alone,) = conv(x[i : i + 1, :n])
        torch.testing.assert_close(out[i, :n], alone[0])
        torch.testing.assert_close(h[:, i], h_alone[:, 0])
        assert out[i, n:].abs().sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cell": "transformer"}, "unknown cell 'transformer'"),
        ({"kernel_size": 2}, "kernel_size must be odd"),
        ({"num_layers": 0}, "num_layers must be at least 1"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_construction(kwargs, message):
    options = {"cell": "gru", "input_channels": 3, "hidden_channels": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        ConvRecurrent(**options)


@pytest.mark.parametrize(
    ("shape", "lengths", "message"),
    [
        ((3, 5, 1, 4, 5), None,
         r"ConvRecurrent's input x has 1 channels \(dim 2 of shape \(3, 5, 1, 4, 5\)\); expected input_channels=3$"),
        ((3, 5, 4, 5, 3), None,
         r"x has 4 channels .*expected input_channels=3; channels-last maps need x.permute\(0, 1, 4, 2, 3\)"),
        ((3, 5, 3), None, r"x must be 5-D \(batch, time, channels=3, height, width\); got shape \(3, 5, 3\); "
                          r"ConvRecurrent runs 2-D maps, this has 0 spatial"),
        ((3, 5, 3, 4), None, r"got shape \(3, 5, 3, 4\); ConvRecurrent runs 2-D maps, this has 1 spatial"),
        ((3, 5, 3, 2, 4, 3), None, r"must be 5-D .* got shape \(3, 5, 3, 2, 4, 3\); .* this has 3 spatial"),
        ((5, 3, 4, 3), None, r"must be 5-D .*; a single sequence needs a batch dimension: x.unsqueeze\(0\)"),
        ((3, 0, 3, 4, 3), None, r"ConvRecurrent's input x has 0 time steps \(shape \(3, 0, 3, 4, 3\), time is dim"),
        ((3, 5, 3, 4, 3), [5, 0, 4], r"lengths\[1\] = 0; every length must be in \[1, 5\]"),
        ((3, 5, 3, 4, 3), [5, 6, 4], r"lengths\[1\] = 6; every length must be in \[1, 5\]"),
        ((3, 5, 3, 4, 3), [5, 4], r"lengths must have shape \(3,\), one per sequence of the batch; got \(2,\)"),
    ],
)
def test_bad_input(shape, lengths, message):
    with pytest.raises(ValueError, match=message):
        ConvRecurrent("gru", 3, 4)(torch.zeros(shape), lengths)


@pytest.mark.parametrize(
    ("lengths", "message"),
    [
        ([5, 2.5, 4], r"lengths must hold integers .* got a torch.float32 tensor of shape \(3,\)$"),
        (torch.ones(3, dtype=torch.bool), r"lengths must hold integers .* torch.bool"),
        ((torch.zeros(1, 3, 4, 4, 3),), r"lengths \(the second positional argument\) was given a tuple of tensors .* "
                                        r"looks like an initial state; this module takes no initial state"),
    ],
)
def test_lengths_of_the_wrong_kind_are_a_type_error(lengths, message):
    with pytest.raises(TypeError, match=message):
        ConvRecurrent("gru", 3, 4)(_maps(), lengths)


def test_an_empty_batch_gives_empty_results():
    conv = ConvRecurrent("lstm", 3, 4, num_layers=2)
    x = torch.randn(0, 5, 3, 4, 3, requires_grad=True)
    out, (h, c) = conv(x, [])
    assert out.shape == (0, 5, 4, 4, 3) and h.shape == c.shape == (2, 0, 4, 4, 3)
    (out.sum() + h.sum()).backward()
    assert x.grad.shape == x.shape
