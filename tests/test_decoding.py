"""Attention, the recurrent decoder, greedy and beam search, the sequence encoder."""

import itertools

import pytest
import torch

from rnn_core.attention import Attention
from rnn_core.conv import ConvRecurrent
from rnn_core.decoders import Bridge, RecurrentDecoder, ShowAttendTellDecoder, attention_penalty
from rnn_core.encoders import FrameSequenceEncoder, ImageEncoder, SequenceEncoder
from rnn_core.search import beam_search, greedy_search, length_penalty

BOS, EOS = 1, 2


@pytest.mark.parametrize("kind", ["additive", "dot", "general"])
def test_attention_masks_padding_and_handles_blocks(kind):
    torch.manual_seed(0)
    attention = Attention(kind, 8, 8)
    memory = torch.randn(3, 5, 8)
    mask = torch.arange(5) < torch.tensor([5, 2, 4]).unsqueeze(1)
    keys = attention.prepare(memory)
    queries = torch.randn(3, 4, 8)
    context, weights = attention(queries, memory, keys, mask)
    assert weights.shape == (3, 4, 5) and context.shape == (3, 4, 8)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 4))
    assert weights.masked_select(~mask.unsqueeze(1).expand_as(weights)).abs().max() == 0
    for t in range(4):  # a block of queries equals one query at a time
        c_t, w_t = attention(queries[:, t], memory, keys, mask)
        torch.testing.assert_close(c_t, context[:, t])
        torch.testing.assert_close(w_t, weights[:, t])


def test_attention_errors():
    with pytest.raises(ValueError, match="dot attention needs query_size == memory_size, got 8 and 6"):
        Attention("dot", 8, 6)
    with pytest.raises(ValueError, match="unknown attention 'bahdanau'"):
        Attention("bahdanau", 8, 8)


def _decoder(**kwargs):
    args = {"vocab_size": 11, "embedding_size": 6, "hidden_size": 8, "memory_size": 10, "cell": "lstm"} | kwargs
    return RecurrentDecoder(**args)


def _batch(seed=0):
    gen = torch.Generator().manual_seed(seed)
    memory = torch.randn(3, 5, 10, generator=gen)
    mask = torch.arange(5) < torch.tensor([5, 3, 1]).unsqueeze(1)
    targets = torch.randint(3, 11, (3, 6), generator=gen)
    targets[:, 0] = BOS
    return memory, mask, targets


@pytest.mark.parametrize("attention", ["additive", "general", "none"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_whole_sequence_path_equals_stepping(cell, attention):
    torch.manual_seed(0)
    decoder = _decoder(cell=cell, attention=attention, num_layers=2).eval()
    memory, mask, targets = _batch()
    start = decoder.start(Bridge(10, 8, 2, decoder.state_names)(memory.mean(1)))
    logits, weights = decoder(targets, start, memory, mask)
    keys, state = decoder.prepare(memory), start
    for t in range(targets.shape[1]):
        step_logits, state, step_weights = decoder.step(targets[:, t], state, memory, keys, mask)
        torch.testing.assert_close(step_logits, logits[:, t], atol=1e-5, rtol=1e-5)
        if attention != "none":
            torch.testing.assert_close(step_weights, weights[:, t], atol=1e-5, rtol=1e-5)


def test_input_feeding_and_tied_embeddings():
    torch.manual_seed(0)
    decoder = _decoder(input_feeding=True, tie_embeddings=True)
    assert decoder.out.weight is decoder.embedding.weight
    memory, mask, targets = _batch()
    start = decoder.start(Bridge(10, 8, 1, decoder.state_names)(memory.mean(1)))
    logits, weights = decoder(targets, start, memory, mask)
    assert logits.shape == (3, 6, 11) and weights.shape == (3, 6, 5)
    logits.sum().backward()
    assert decoder.embedding.weight.grad is not None


def test_teacher_forcing_zero_feeds_own_predictions():
    torch.manual_seed(0)
    decoder = _decoder().eval()
    memory, mask, targets = _batch()
    start = decoder.start(Bridge(10, 8, 1, decoder.state_names)(memory.mean(1)))
    free_running, _ = decoder(targets, start, memory, mask, teacher_forcing=0.0)
    hypotheses, _ = greedy_search(decoder.stepper(memory, mask), start, 3, BOS, eos=-1, max_length=6)
    # with no EOS to stop at, greedy decoding is exactly the free-running decoder
    assert free_running.argmax(-1).tolist() == [h.tokens for h in hypotheses]


def test_beam_of_one_is_greedy():
    torch.manual_seed(0)
    decoder = _decoder(attention="additive", num_layers=2).eval()
    memory, mask, _ = _batch()
    start = decoder.start(Bridge(10, 8, 2, decoder.state_names)(memory.mean(1)))
    with torch.no_grad():
        greedy, _ = greedy_search(decoder.stepper(memory, mask), start, 3, BOS, EOS, max_length=12)
        beams = beam_search(
            decoder.stepper(memory, mask), decoder.reorder, decoder.repeat(start, 1), 3, BOS, EOS,
            beam_size=1, max_length=12,
        )
    for g, (b,) in zip(greedy, beams, strict=True):
        assert g.tokens == b.tokens
        assert g.log_prob == pytest.approx(b.log_prob, abs=1e-5)


VOCAB = 3  # tokens 0 (EOS), 1, 2; BOS = 3 only as the first input
TOY_BOS, TOY_EOS, TOY_MAX = 3, 0, 3


def _toy_step(table):
    """Log-probabilities that depend on the whole prefix: the state is the prefix's code."""

    def step(tokens, state):
        code = state * 5 + tokens + 1
        return table[code], code, None

    return step


def _exhaustive(table, alpha):
    step = _toy_step(table)
    best = []
    for length in range(1, TOY_MAX + 1):
        for seq in itertools.product(range(VOCAB), repeat=length):
            if TOY_EOS in seq[:-1] or (length < TOY_MAX and seq[-1] != TOY_EOS):
                continue  # EOS only last, and only max-length sequences may end without it
            code, tokens, total = torch.zeros(1, dtype=torch.long), torch.tensor([TOY_BOS]), 0.0
            for token in seq:
                log_probs, code, _ = step(tokens, code)
                total += float(log_probs[0, token])
                tokens = torch.tensor([token])
            best.append((total / length_penalty(length, alpha), list(seq)))
    return sorted(best, reverse=True)


@pytest.mark.parametrize("alpha", [0.0, 1.0])
@pytest.mark.parametrize("seed", range(5))
def test_beam_search_finds_the_exhaustive_best(seed, alpha):
    gen = torch.Generator().manual_seed(seed)
    table = torch.log_softmax(3 * torch.randn(5 ** (TOY_MAX + 1), VOCAB, generator=gen), dim=-1)
    expected = _exhaustive(table, alpha)
    beam = 12  # wide enough to hold every prefix: the search is then exact
    (found,) = beam_search(
        _toy_step(table), lambda s, i: s.index_select(0, i), torch.zeros(beam, dtype=torch.long), 1,
        TOY_BOS, TOY_EOS, beam_size=beam, max_length=TOY_MAX, alpha=alpha, n_best=3,
    )
    assert [h.tokens for h in found] == [seq for _, seq in expected[:3]]
    assert [h.score for h in found] == pytest.approx([score for score, _ in expected[:3]], abs=1e-5)


def test_beam_search_batch_equals_one_at_a_time():
    torch.manual_seed(0)
    decoder = _decoder(attention="general").eval()
    memory, mask, _ = _batch()
    start = decoder.start(Bridge(10, 8, 1, decoder.state_names)(memory.mean(1)))
    with torch.no_grad():
        together = beam_search(
            decoder.stepper(memory, mask, beams=4), decoder.reorder, decoder.repeat(start, 4), 3, BOS, EOS,
            beam_size=4, max_length=10, alpha=0.6, n_best=2,
        )
        for b in range(3):
            alone_start = decoder.reorder(start, torch.tensor([b]))
            alone = beam_search(
                decoder.stepper(memory[b : b + 1], mask[b : b + 1], beams=4), decoder.reorder,
                decoder.repeat(alone_start, 4), 1, BOS, EOS, beam_size=4, max_length=10, alpha=0.6, n_best=2,
            )
            assert [h.tokens for h in alone[0]] == [h.tokens for h in together[b]]


def test_beam_search_arguments():
    with pytest.raises(ValueError, match="need 1 <= n_best <= beam_size"):
        beam_search(_toy_step(None), None, None, 1, 0, 0, beam_size=2, max_length=3, n_best=3)


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


def test_each_sequence_keeps_its_own_length_limit():
    """A sequence decodes the same whatever the limits of the others in its batch."""
    torch.manual_seed(0)
    decoder = _decoder(attention="additive").eval()
    memory, mask, _ = _batch()
    start = decoder.start(Bridge(10, 8, 1, decoder.state_names)(memory.mean(1)))
    limits = torch.tensor([3, 9, 5])
    with torch.no_grad():
        greedy, _ = greedy_search(decoder.stepper(memory, mask), start, 3, BOS, eos=-1, max_length=limits)
        beams = beam_search(decoder.stepper(memory, mask, beams=3), decoder.reorder, decoder.repeat(start, 3), 3,
                            BOS, eos=-1, beam_size=3, max_length=limits)
        for b, limit in enumerate(limits.tolist()):
            alone = decoder.reorder(start, torch.tensor([b]))
            (one,), _ = greedy_search(decoder.stepper(memory[b : b + 1], mask[b : b + 1]), alone, 1, BOS, -1, limit)
            assert greedy[b].tokens == one.tokens and len(one.tokens) == limit
            assert len(beams[b][0].tokens) == limit


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


@pytest.mark.parametrize("attention", ["additive", "general", "none"])
def test_show_attend_tell_teacher_forcing_equals_stepping_and_beam_one_is_greedy(attention):
    torch.manual_seed(0)
    decoder = ShowAttendTellDecoder(11, 6, 8, memory_size=5, attention=attention, tie_embeddings=True).eval()
    memory = torch.randn(3, 4, 5)
    targets = torch.randint(3, 11, (3, 6))
    start = decoder.start(memory)
    logits, weights = decoder(targets, start, memory)
    state, keys = start, decoder.prepare(memory)
    for t in range(6):
        step_logits, state, step_weights = decoder.step(targets[:, t], state, memory, keys)
        torch.testing.assert_close(step_logits, logits[:, t])
        if attention != "none":
            torch.testing.assert_close(step_weights, weights[:, t])
            torch.testing.assert_close(step_weights.sum(-1), torch.ones(3))
    assert (weights is None) == (attention == "none")
    with torch.no_grad():
        greedy, _ = greedy_search(decoder.stepper(memory), start, 3, BOS, EOS, 7)
        beams = beam_search(decoder.stepper(memory, beams=1), decoder.reorder, decoder.repeat(start, 1), 3, BOS,
                            EOS, beam_size=1, max_length=7)
    assert [g.tokens for g in greedy] == [b[0].tokens for b in beams]


def test_show_attend_tell_gate_scales_the_context():
    torch.manual_seed(0)
    decoder = ShowAttendTellDecoder(11, 6, 8, memory_size=5, gate=True).eval()
    memory = torch.randn(2, 4, 5)
    state = decoder.start(memory)
    context, weights = decoder._attend(state[0], memory, decoder.prepare(memory), None)
    beta = torch.sigmoid(decoder.gate(state[0][0][-1]))
    torch.testing.assert_close(context, beta * torch.bmm(weights.unsqueeze(1), memory).squeeze(1))
    assert ShowAttendTellDecoder(11, 6, 8, memory_size=5, gate=False).gate is None


def test_attention_penalty_is_zero_when_every_location_gets_one_unit_over_the_real_steps():
    L = 3
    weights = torch.eye(L).unsqueeze(0).repeat(2, 1, 1)  # step t looks only at location t
    weights = torch.cat((weights, torch.full((2, 1, L), 1 / L)), dim=1)  # a padding step, to be ignored
    steps = torch.tensor([[True, True, True, False], [True, True, False, False]])
    penalty = attention_penalty(weights, steps)
    torch.testing.assert_close(penalty, torch.tensor([0.0, 1 / L]))  # the second never looked at location 2


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
