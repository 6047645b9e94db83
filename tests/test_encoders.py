"""The sequence, image and frame-sequence encoders."""

import pytest
import torch

from rnn_core.conv import ConvRecurrent
from rnn_core.encoders import FrameSequenceEncoder, ImageEncoder, SequenceEncoder


def test_sequence_encoder_memory_mask_and_summary():
    torch.manual_seed(0)
    encoder = SequenceEncoder(20, 6, 8, cell="gru", num_layers=2, bidirectional=True)
    tokens = torch.randint(3, 20, (3, 7))
    lengths = torch.tensor([7, 4, 2])
    memory, mask, summary = encoder(tokens, lengths)
    assert memory.shape == (3, 7, 16) and summary.shape == (3, 16)
    assert mask.tolist()[2] == [True, True, False, False, False, False, False]
    # forward half of the summary: the forward direction's state at each sequence's last real token
    for b, n in enumerate(lengths.tolist()):
        torch.testing.assert_close(summary[b, :8], memory[b, n - 1, :8])
        torch.testing.assert_close(summary[b, 8:], memory[b, 0, 8:])


@pytest.mark.parametrize(("backbone", "channels"), [("resnet18", 512), ("mobilenet_v3_small", 576)])
def test_image_encoder_grid_and_freezing(backbone, channels):
    torch.manual_seed(0)
    encoder = ImageEncoder(backbone, weights=None, trainable=False)
    assert encoder.output_size == channels
    grid = encoder(torch.randn(2, 3, 96, 128))
    assert grid.shape == (2, 3 * 4, channels)  # stride 32
    assert not any(p.requires_grad for p in encoder.parameters())
    encoder.train()
    assert not encoder.features.training  # frozen batch norms stay in eval mode
    encoder.set_trainable(True)
    assert all(p.requires_grad for p in encoder.parameters()) and encoder.features.training


def test_image_encoder_names_bad_backbones():
    with pytest.raises(ValueError, match="backbone 'resnet7'"):
        ImageEncoder("resnet7")
    with pytest.raises(ValueError, match=r"stages=5: backbone 'resnet18' has stages 1\.\.4"):
        ImageEncoder("resnet18", stages=5)


def test_image_encoder_keeps_the_first_stages_for_a_finer_grid():
    encoder = ImageEncoder("resnet18", stages=2)
    assert encoder.output_size == 128 and encoder(torch.randn(2, 3, 64, 64)).shape == (2, 8 * 8, 128)
    full = ImageEncoder("resnet18")
    layer3_and_4 = ("features.6", "features.7")
    assert list(encoder.state_dict()) == [k for k in full.state_dict() if not k.startswith(layer3_and_4)]


def test_frame_sequence_encoder_runs_the_recurrence_over_frames():
    torch.manual_seed(0)
    encoder = FrameSequenceEncoder(ImageEncoder("resnet18"), hidden_size=8, cell="gru").eval()
    frames = torch.randn(2, 5, 3, 64, 64)
    out, summary = encoder(frames, torch.tensor([5, 3]))
    assert out.shape == (2, 5, 8) and summary.shape == (2, 8)
    torch.testing.assert_close(summary[1], out[1, 2])  # the second clip's state after its own last frame
    assert out[1, 3:].abs().sum() == 0


def test_frame_sequence_encoder_feature_norm_standardises_what_the_recurrence_reads():
    torch.manual_seed(0)
    encoder = FrameSequenceEncoder(ImageEncoder("resnet18", stages=1), hidden_size=8, cell="gru", spatial_grid=2,
                                   feature_norm=True)
    features = encoder.frame_features(torch.rand(3, 4, 3, 32, 32))  # post-ReLU averages: positive, far from 0
    assert features.shape == (3, 4, 64 * 4) and features.mean() > 0.1
    normalised = encoder.normalise(features)
    torch.testing.assert_close(normalised.mean((0, 1)), torch.zeros(256), atol=1e-5, rtol=0)
    varying = features.var((0, 1), unbiased=False) > 1e-3  # (some channels are 0 for every frame: dead ReLUs)
    assert varying.sum() > 50
    spread = normalised.var((0, 1), unbiased=False)[varying]
    torch.testing.assert_close(spread, torch.ones_like(spread), atol=1e-2, rtol=0)
    plain = FrameSequenceEncoder(ImageEncoder("resnet18", stages=1), hidden_size=8, cell="gru", spatial_grid=2)
    assert torch.equal(plain.normalise(features), features)  # off by default: the features as they are
    plain.rnn.load_state_dict(encoder.rnn.state_dict())
    torch.testing.assert_close(encoder.recur(features)[0], plain.recur(normalised)[0])


def test_frame_sequence_encoder_conv_recurrence_keeps_the_grid():
    torch.manual_seed(0)
    encoder = FrameSequenceEncoder(ImageEncoder("resnet18", stages=1), hidden_size=8, cell="gru", spatial_grid=4,
                                   feature_norm=True, recurrence="conv").eval()
    assert isinstance(encoder.rnn, ConvRecurrent) and encoder.output_size == 16
    features = encoder.frame_features(torch.rand(2, 5, 3, 32, 32))
    assert features.shape == (2, 5, 64 * 16)  # flattened as for a cache; recur reads them as (64, 4, 4) maps
    out, summary = encoder.recur(features, torch.tensor([5, 3]))
    assert out.shape == (2, 5, 16) and summary.shape == (2, 16)
    torch.testing.assert_close(summary[1], out[1, 2])  # the second clip's state after its own last frame
    _, (h,) = encoder.rnn(encoder.normalise(features).unflatten(2, (64, 4, 4)), torch.tensor([5, 3]))
    torch.testing.assert_close(summary, torch.cat((h[-1].mean((2, 3)), h[-1].amax((2, 3))), 1))


def test_frame_sequence_encoder_conv_feature_norm_is_per_channel():
    torch.manual_seed(0)
    encoder = FrameSequenceEncoder(ImageEncoder("resnet18", stages=1), hidden_size=8, cell="gru", spatial_grid=2,
                                   feature_norm=True, recurrence="conv")
    normalised = encoder.normalise(encoder.frame_features(torch.rand(3, 4, 3, 32, 32)))
    per_channel = normalised.unflatten(2, (64, 4)).transpose(2, 3).flatten(0, 2)  # (frames * cells, channels)
    torch.testing.assert_close(per_channel.mean(0), torch.zeros(64), atol=1e-5, rtol=0)
    assert encoder.feature_norm.num_features == 64  # one statistic per channel, shared by the grid's cells


@pytest.mark.parametrize(("options", "message"), [
    ({"recurrence": "attention"}, "unknown recurrence 'attention'; expected one of"),
    ({"recurrence": "conv", "bidirectional": True}, "runs one direction"),
])
def test_frame_sequence_encoder_bad_options(options, message):
    with pytest.raises(ValueError, match=message):
        FrameSequenceEncoder(ImageEncoder("resnet18", stages=1), hidden_size=8, cell="gru", **options)
