"""Attention, the decoders (their base, teacher forcing, stepping) and Show, Attend and Tell's penalty."""

import pytest
import torch

from rnn_core.attention import Attention
from rnn_core.decoders import Decoder, RecurrentDecoder, ShowAttendTellDecoder, attention_penalty
from rnn_core.encoders import Bridge
from rnn_core.search import beam_search, greedy_search

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


def make_decoder(**kwargs):
    args = {"vocab_size": 11, "embedding_size": 6, "hidden_size": 8, "memory_size": 10, "cell": "lstm"} | kwargs
    return RecurrentDecoder(**args)


def make_batch(seed=0):
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
    decoder = make_decoder(cell=cell, attention=attention, num_layers=2).eval()
    memory, mask, targets = make_batch()
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
    decoder = make_decoder(input_feeding=True, tie_embeddings=True)
    assert decoder.out.weight is decoder.embedding.weight
    memory, mask, targets = make_batch()
    start = decoder.start(Bridge(10, 8, 1, decoder.state_names)(memory.mean(1)))
    logits, weights = decoder(targets, start, memory, mask)
    assert logits.shape == (3, 6, 11) and weights.shape == (3, 6, 5)
    logits.sum().backward()
    assert decoder.embedding.weight.grad is not None


def test_teacher_forcing_zero_feeds_own_predictions():
    torch.manual_seed(0)
    decoder = make_decoder().eval()
    memory, mask, targets = make_batch()
    start = decoder.start(Bridge(10, 8, 1, decoder.state_names)(memory.mean(1)))
    free_running, _ = decoder(targets, start, memory, mask, teacher_forcing=0.0)
    hypotheses, _ = greedy_search(decoder.stepper(memory, mask), start, 3, BOS, eos=-1, max_length=6)
    # with no EOS to stop at, greedy decoding is exactly the free-running decoder
    assert free_running.argmax(-1).tolist() == [h.tokens for h in hypotheses]


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


def test_both_decoders_take_the_shared_machinery_from_one_base():
    shared = ("state_names", "prepare", "forward", "stepper", "reorder", "repeat", "output_layer")
    for decoder in (RecurrentDecoder, ShowAttendTellDecoder):
        assert issubclass(decoder, Decoder)
        assert not set(shared) & set(vars(decoder)), f"{decoder.__name__} redefines a shared method"


def test_parameter_names_stay_those_the_apps_checkpoints_hold():
    rnn = [f"rnn.{kind}_l{layer}" for layer in (0, 1) for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    additive = ["attention.query_proj.weight", "attention.memory_proj.weight", "attention.memory_proj.bias",
                "attention.v.weight"]
    seq2seq = RecurrentDecoder(11, 6, 8, memory_size=10, num_layers=2, input_feeding=True)
    assert list(seq2seq.state_dict()) == [
        "embedding.weight", *rnn, *additive, "combine.weight", "out.weight", "out.bias"]
    caption = ShowAttendTellDecoder(11, 6, 8, memory_size=5)
    assert list(caption.state_dict()) == [
        "embedding.weight", *additive, "gate.weight", "gate.bias", "context_proj.weight", *rnn[:4],
        "bridge.proj.0.weight", "bridge.proj.0.bias", "bridge.proj.1.weight", "bridge.proj.1.bias",
        "hidden_proj.weight", "out.weight", "out.bias"]
    show_and_tell = ShowAttendTellDecoder(11, 6, 8, memory_size=5, attention="none")
    assert list(show_and_tell.state_dict()) == [
        "embedding.weight", "image_proj.weight", "image_proj.bias", *rnn[:4], "hidden_proj.weight", "out.weight",
        "out.bias"]
