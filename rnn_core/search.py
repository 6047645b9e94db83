"""Greedy and batched beam search over any step function, and the hypotheses they return.

A step function maps the previous tokens (N,) and a state to log-probabilities (N, V), the new state and the
attention weights (N, S) or None; the searches know nothing else about the model behind it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

#: step(tokens (N,), state) -> (log-probabilities (N, V), new state, attention weights (N, S) or None)
StepFn = Callable[[Tensor, object], tuple[Tensor, object, Tensor | None]]


@dataclass
class Hypothesis:
    """A finished decoding: tokens (without BOS, with EOS when it ended before max_length)."""

    tokens: list[int]
    log_prob: float
    score: float


def length_penalty(length: int, alpha: float) -> float:
    """GNMT's length penalty ((5 + length) / 6) ** alpha; alpha = 0 ranks by total log-probability."""
    return ((5.0 + length) / 6.0) ** alpha


def _limits(max_length: int | Tensor, batch_size: int) -> list[int]:
    """Per-sequence length limits from one limit or a (B,) tensor of them (each sequence's own, so that its
    decoding does not depend on the batch it is in)."""
    if isinstance(max_length, int):
        return [max_length] * batch_size
    return [int(n) for n in max_length.tolist()]


def greedy_search(
    step: StepFn, state, batch_size: int, bos: int, eos: int, max_length: int | Tensor, device=None
) -> tuple[list[Hypothesis], Tensor | None]:
    """The most likely next token at every step, for a whole batch at once, until EOS or ``max_length`` tokens
    (one limit, or a (B,) tensor with each sequence's own).

    Returns one Hypothesis per sequence and the attention weights (B, T, S) of the steps taken, or None.
    """
    limits = _limits(max_length, batch_size)
    stop = torch.tensor(limits, device=device)
    tokens = torch.full((batch_size,), bos, dtype=torch.long, device=device)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    chosen, log_probs, weight_steps = [], [], []
    for t in range(max(limits)):
        step_log_probs, state, weights = step(tokens, state)
        best, tokens = step_log_probs.max(dim=-1)
        chosen.append(tokens.masked_fill(finished, eos))
        log_probs.append(best.masked_fill(finished, 0.0))
        weight_steps.append(weights)
        finished = finished | (tokens == eos) | (stop <= t + 1)
        if bool(finished.all()):
            break
    chosen_t = torch.stack(chosen, dim=1).tolist()
    totals = torch.stack(log_probs, dim=1).sum(1).tolist()
    hypotheses = []
    for seq, total, limit in zip(chosen_t, totals, limits, strict=True):
        seq = seq[:limit]
        ended = seq.index(eos) + 1 if eos in seq else len(seq)
        hypotheses.append(Hypothesis(seq[:ended], total, total))
    weights = None if weight_steps[0] is None else torch.stack(weight_steps, dim=1)
    return hypotheses, weights


def beam_search(
    step: StepFn,
    reorder: Callable[[object, Tensor], object],
    state,
    batch_size: int,
    bos: int,
    eos: int,
    beam_size: int,
    max_length: int | Tensor,
    alpha: float = 0.0,
    n_best: int = 1,
    device=None,
) -> list[list[Hypothesis]]:
    """Beam search for every sequence of a batch at once.

    ``state`` holds beam_size rows per sequence (sequence b's beams at rows b * beam_size + k) and
    ``reorder(state, rows)`` selects rows. Each step extends every beam by every token, keeps the 2 * beam_size
    best candidates, moves those ending in EOS among the first beam_size to the finished list, and continues with
    the beam_size best that did not end. A sequence stops once it has n_best finished
    hypotheses and no live beam can still beat them (scores are log-probabilities divided by
    length_penalty(length, alpha)); at its max_length (one limit, or a (B,) tensor with each sequence's own) its
    live beams finish as they are.

    Returns, per sequence, its n_best hypotheses, best first.
    """
    if beam_size < 1 or n_best < 1 or n_best > beam_size:
        raise ValueError(f"need 1 <= n_best <= beam_size, got n_best={n_best}, beam_size={beam_size}")
    B, K = batch_size, beam_size
    limits = _limits(max_length, B)
    last_step = torch.tensor(limits, device=device).unsqueeze(1) - 1
    tokens = torch.full((B * K,), bos, dtype=torch.long, device=device)
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # all beams start identical: expand only the first
    history = torch.empty((B * K, 0), dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    offsets = (torch.arange(B, device=device) * K).unsqueeze(1)
    for t in range(max(limits)):
        log_probs, state, _ = step(tokens, state)
        V = log_probs.shape[-1]
        candidates = (scores.unsqueeze(-1) + log_probs.view(B, K, V)).view(B, K * V)
        top_scores, top_index = candidates.topk(min(2 * K, K * V), dim=1)
        origin, token = top_index // V, top_index % V
        is_eos = token == eos
        ending = (is_eos | (last_step == t)) & torch.isfinite(top_scores)
        ending[:, K:] = False
        if bool(ending.any()):
            rows = (offsets + origin).tolist()
            for b, j in ending.nonzero().tolist():
                if done[b]:
                    continue
                total = float(top_scores[b, j])
                seq = history[rows[b][j]].tolist() + [int(token[b, j])]
                finished[b].append(Hypothesis(seq, total, total / length_penalty(len(seq), alpha)))
        live = top_scores.masked_fill(is_eos, float("-inf"))
        scores, pick = live.topk(K, dim=1)
        keep = (offsets + origin.gather(1, pick)).flatten()
        tokens = token.gather(1, pick).flatten()
        history = torch.cat((history.index_select(0, keep), tokens.unsqueeze(1)), dim=1)
        state = reorder(state, keep)
        # the best any live beam can still reach: its log-probability only falls, its penalty grows at most to
        # length_penalty(max_length)
        best_live = scores.max(dim=1).values.tolist()
        for b in range(B):
            if done[b]:
                continue
            if t + 1 >= limits[b]:
                done[b] = True
            elif len(finished[b]) >= n_best:
                kth = sorted(h.score for h in finished[b])[-n_best]
                done[b] = kth >= best_live[b] / length_penalty(limits[b], alpha)
        if all(done):
            break
    return [sorted(f, key=lambda h: h.score, reverse=True)[:n_best] for f in finished]
