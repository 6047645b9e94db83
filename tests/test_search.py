"""Greedy and batched beam search: exact on a toy model, batch-independent, per-sequence limits, beam 1 = greedy."""

import itertools

import pytest
import torch

from rnn_core.encoders import Bridge
from rnn_core.search import beam_search, greedy_search, length_penalty
from tests.test_decoders import BOS, EOS, make_batch, make_decoder


def test_beam_of_one_is_greedy():
    torch.manual_seed(0)
    decoder = make_decoder(attention="additive", num_layers=2).eval()
    memory, mask, _ = make_batch()
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
    decoder = make_decoder(attention="general").eval()
    memory, mask, _ = make_batch()
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


def test_each_sequence_keeps_its_own_length_limit():
    """A sequence decodes the same whatever the limits of the others in its batch."""
    torch.manual_seed(0)
    decoder = make_decoder(attention="additive").eval()
    memory, mask, _ = make_batch()
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
