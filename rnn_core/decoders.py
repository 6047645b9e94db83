"""Recurrent decoders: a base with what teacher forcing and search need, the seq2seq decoder with optional attention
(RecurrentDecoder) and the caption decoder of Show, Attend and Tell (ShowAttendTellDecoder).

Every decoder carries (recurrent state in torch.nn's layout, attentional vector or None) from step to step, so
greedy_search and beam_search of rnn_core.search run any of them through the base's ``stepper``, ``reorder`` and
``repeat``.
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rnn_core.attention import ATTENTION_KINDS, Attention
from rnn_core.cells import RecurrentCell
from rnn_core.encoders import Bridge
from rnn_core.recurrent import Recurrent
from rnn_core.search import Hypothesis, StepFn, beam_search, greedy_search

RecurrentState = Tensor | tuple[Tensor, ...]
#: what a decoder carries from step to step: (recurrent state in torch.nn's layout, attentional vector or None)
DecoderState = tuple[RecurrentState, Tensor | None]


def unroll(step, targets: Tensor, state, teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor | None]:
    """Runs ``step(tokens (B,), state) -> (logits, state, weights or None)`` over ``targets (B, T)`` one position at
    a time: the true previous token is fed, or with probability 1 - teacher_forcing (one draw per step for the
    whole batch) the model's own prediction. Returns logits (B, T, V) and weights (B, T, S) or None."""
    logits_steps, weight_steps = [], []
    tokens = targets[:, 0]
    for t in range(targets.shape[1]):
        logits, state, weights = step(tokens, state)
        logits_steps.append(logits)
        weight_steps.append(weights)
        if t + 1 < targets.shape[1]:
            use_truth = teacher_forcing >= 1.0 or random.random() < teacher_forcing
            tokens = targets[:, t + 1] if use_truth else logits.argmax(-1)
    weights = None if weight_steps[0] is None else torch.stack(weight_steps, dim=1)
    return torch.stack(logits_steps, dim=1), weights


class Decoder(nn.Module):
    """What every recurrent decoder shares: the token embedding, dropout, the output layer over the vocabulary,
    teacher forcing, and the step function, row selection and beam repetition that the searches use.

    A subclass builds ``rnn`` (a Recurrent), ``attention`` (an Attention or None) and ``out`` (``output_layer``),
    and says how one step goes (``step``) and, when its cells read only the tokens, how a whole target goes in one
    Recurrent call (``cells_read_tokens_only`` and ``_forward_whole_target``).
    """

    #: the cells' input at each step is the token alone, so teacher forcing can run them over the whole target
    cells_read_tokens_only = False

    def __init__(
        self, vocab_size: int, embedding_size: int, hidden_size: int, attention: str, dropout: float, padding_idx: int
    ) -> None:
        super().__init__()
        if attention not in (*ATTENTION_KINDS, "none"):
            raise ValueError(f"unknown attention {attention!r}; expected one of {(*ATTENTION_KINDS, 'none')}")
        self.vocab_size, self.hidden_size = vocab_size, hidden_size
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)

    def output_layer(self, input_size: int, tie_embeddings: bool) -> nn.Linear:
        """The projection onto the vocabulary; with tied embeddings it shares the embedding's weight."""
        out = nn.Linear(input_size, self.vocab_size)
        if tie_embeddings:
            out.weight = self.embedding.weight
        return out

    @property
    def state_names(self) -> tuple[str, ...]:
        return self.rnn.cell.state_names

    def prepare(self, memory: Tensor | None) -> Tensor | None:
        """The attention keys of a memory: compute once per batch, pass to forward/step."""
        return None if self.attention is None or memory is None else self.attention.prepare(memory)

    def step(
        self, tokens: Tensor, state: DecoderState, memory=None, keys=None, mask=None
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One token per sequence: tokens (B,) -> logits (B, V), new state, attention weights (B, S) or None."""
        raise NotImplementedError

    def forward(self, targets: Tensor, state: DecoderState, memory: Tensor | None = None, mask: Tensor | None = None,
                teacher_forcing: float = 1.0) -> tuple[Tensor, Tensor | None]:
        """Logits for every position of ``targets (B, T)`` (the decoder's inputs: BOS, y_1, ..., y_{T-1}).

        With teacher_forcing < 1, each step feeds the model's own previous prediction instead of the target with
        probability 1 - teacher_forcing (one draw per step for the whole batch). Returns logits (B, T, V) and the
        attention weights (B, T, S) or None.
        """
        keys = self.prepare(memory)
        if self.cells_read_tokens_only and teacher_forcing >= 1.0:
            return self._forward_whole_target(targets, state, memory, keys, mask)
        return unroll(lambda tokens, state: self.step(tokens, state, memory, keys, mask), targets, state,
                      teacher_forcing)

    def stepper(self, memory: Tensor | None = None, mask: Tensor | None = None, beams: int = 1) -> StepFn:
        """A step function for greedy_search/beam_search: log-probabilities over a fixed memory (encoder states, an
        image grid), each sequence's memory repeated for its ``beams`` rows."""
        if beams > 1 and memory is not None:
            memory = memory.repeat_interleave(beams, dim=0)
            mask = None if mask is None else mask.repeat_interleave(beams, dim=0)
        keys = self.prepare(memory)

        def step(tokens, state):
            logits, state, weights = self.step(tokens, state, memory, keys, mask)
            return F.log_softmax(logits.float(), dim=-1), state, weights

        return step

    def greedy(self, state: DecoderState, memory: Tensor | None = None, mask: Tensor | None = None, *, bos: int,
               eos: int, max_length: int | Tensor) -> tuple[list[Hypothesis], Tensor | None]:
        """greedy_search from the start ``state``: one Hypothesis per sequence and the attention weights or None."""
        return greedy_search(self.stepper(memory, mask), state, _rows(state), bos, eos, max_length,
                             device=self.embedding.weight.device)

    def beam(self, state: DecoderState, memory: Tensor | None = None, mask: Tensor | None = None, *, bos: int,
             eos: int, max_length: int | Tensor, beam_size: int, length_penalty: float = 0.0,
             n_best: int = 1) -> list[list[Hypothesis]]:
        """beam_search from the start ``state``: the ``n_best`` hypotheses of each sequence."""
        return beam_search(self.stepper(memory, mask, beams=beam_size), self.reorder, self.repeat(state, beam_size),
                           _rows(state), bos, eos, beam_size=beam_size, max_length=max_length, alpha=length_penalty,
                           n_best=n_best, device=self.embedding.weight.device)

    @staticmethod
    def reorder(state: DecoderState, index: Tensor) -> DecoderState:
        """The decoder state of the rows ``index`` (beam search keeps the beams' surviving rows)."""
        rnn_state, feed = state
        if isinstance(rnn_state, tuple):
            rnn_state = tuple(s.index_select(1, index) for s in rnn_state)
        else:
            rnn_state = rnn_state.index_select(1, index)
        return rnn_state, None if feed is None else feed.index_select(0, index)

    @classmethod
    def repeat(cls, state: DecoderState, times: int) -> DecoderState:
        """Each sequence's state ``times`` times in a row (sequence b at rows b * times ... b * times + times - 1)."""
        device = (state[0][0] if isinstance(state[0], tuple) else state[0]).device
        return cls.reorder(state, torch.arange(_rows(state), device=device).repeat_interleave(times))


def _rows(state: DecoderState) -> int:
    """How many sequences a decoder state holds."""
    rnn_state = state[0]
    return (rnn_state[0] if isinstance(rnn_state, tuple) else rnn_state).shape[1]


class RecurrentDecoder(Decoder):
    """Predicts the next token from the previous one, its recurrent state and (optionally) attention over a memory,
    wired as Luong et al. 2015 with any score function of rnn_core.attention:
        h_t      = cells([E y_{t-1}; a_{t-1} if input feeding], state)
        c_t, w_t = attention(h_t, memory)
        a_t      = tanh(W_c [h_t; c_t])          (a_t = h_t without attention)
        p(y_t)   = softmax(W_o a_t)              (W_o = E with tied embeddings)
    Without input feeding, teacher forcing runs the cells over the whole target at once (one Recurrent call: cuDNN
    or the fused BPTT) and attention over all steps as one batched product.

    Args:
        vocab_size: output (and input) vocabulary size.
        embedding_size: width of the token embeddings.
        hidden_size: width of the recurrent state.
        memory_size: width of the memory vectors attended over (ignored without attention).
        cell: "rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm", or a RecurrentCell.
        num_layers: stacked recurrent layers.
        attention: "additive" (Bahdanau), "dot" or "general" (Luong), or "none".
        input_feeding: feed the previous attentional vector a_{t-1} into the cells with the token (Luong).
        dropout: dropout on embeddings, between layers and before the output layer.
        tie_embeddings: share the output projection with the input embedding (a_t then has embedding_size).
        padding_idx: the padding token, whose embedding stays zero.
        backend: the Recurrent backend.
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, memory_size: int = 0,
                 cell: str | RecurrentCell = "lstm", num_layers: int = 1, attention: str = "additive",
                 input_feeding: bool = False, dropout: float = 0.0, tie_embeddings: bool = False,
                 padding_idx: int = 0, backend: str = "auto") -> None:
        super().__init__(vocab_size, embedding_size, hidden_size, attention, dropout, padding_idx)
        if attention != "none" and memory_size < 1:
            raise ValueError(f"attention {attention!r} needs memory_size >= 1, got {memory_size}")
        if attention == "none" and tie_embeddings and hidden_size != embedding_size:
            raise ValueError(
                f"tied embeddings without attention need hidden_size == embedding_size, "
                f"got {hidden_size} and {embedding_size}"
            )
        self.input_feeding = input_feeding
        self.attentional_size = embedding_size if tie_embeddings else hidden_size
        rnn_input = embedding_size + (self.attentional_size if input_feeding else 0)
        self.rnn = Recurrent(cell, rnn_input, hidden_size, num_layers=num_layers, dropout=dropout, backend=backend)
        self.attention = None if attention == "none" else Attention(attention, hidden_size, memory_size)
        self.combine = (
            None if self.attention is None else nn.Linear(hidden_size + memory_size, self.attentional_size, bias=False)
        )
        self.out = self.output_layer(self.attentional_size, tie_embeddings)

    @property
    def cells_read_tokens_only(self) -> bool:
        return not self.input_feeding

    def start(self, rnn_state: RecurrentState) -> DecoderState:
        """The decoder state before the first token, from the recurrent state a Bridge gives."""
        if not self.input_feeding:
            return rnn_state, None
        h = rnn_state[0] if isinstance(rnn_state, tuple) else rnn_state
        return rnn_state, h.new_zeros(h.shape[1], self.attentional_size)

    def _predict(self, h, memory, keys, mask):
        """Logits and attentional vector from recurrent outputs h (B, H) or (B, T, H)."""
        if self.attention is None:
            attentional, weights = h, None
        else:
            context, weights = self.attention(h, memory, keys, mask)
            attentional = torch.tanh(self.combine(torch.cat((h, context), dim=-1)))
        return self.out(self.dropout(attentional)), attentional, weights

    def step(
        self, tokens: Tensor, state: DecoderState, memory=None, keys=None, mask=None
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One token per sequence: tokens (B,) -> logits (B, V), new state, attention weights (B, S) or None."""
        rnn_state, feed = state
        x = self.dropout(self.embedding(tokens))
        if self.input_feeding:
            x = torch.cat((x, feed), dim=-1)
        out, rnn_state = self.rnn(x.unsqueeze(1), state=rnn_state)
        logits, attentional, weights = self._predict(out[:, 0], memory, keys, mask)
        return logits, (rnn_state, attentional if self.input_feeding else None), weights

    def _forward_whole_target(self, targets, state, memory, keys, mask):
        out, _ = self.rnn(self.dropout(self.embedding(targets)), state=state[0])
        logits, _, weights = self._predict(out, memory, keys, mask)
        return logits, weights


class ShowAttendTellDecoder(Decoder):
    """The caption decoder of Show, Attend and Tell (Xu et al. 2015), or of Show and Tell (Vinyals et al. 2015)
    with ``attention="none"``.

    With attention, each step attends from the previous state over the image grid a_1..a_L:
        alpha_t  = softmax(score(h_{t-1}, a_i))                    (any score of rnn_core.attention)
        z_t      = beta_t * sum_i alpha_ti a_i,  beta_t = sigmoid(W_b h_{t-1})   (the gating scalar, optional)
        h_t      = cells([E y_{t-1}; z_t], state)
        p(y_t)   = softmax(L_o(E y_{t-1} + L_h h_t + L_z z_t))      (the paper's deep output)
    and the initial state is a Bridge from the mean grid vector. The doubly stochastic regularisation
    lambda * sum_i (1 - sum_t alpha_ti)^2 is ``attention_penalty`` of the returned weights.

    Without attention the image (the mean grid vector, projected to the embedding width) is the first input, from a
    zero state, and p(y_t) = softmax(L_o(E y_{t-1} + L_h h_t)); training then runs the cells over the whole caption
    in one Recurrent call.

    Args:
        vocab_size: output (and input) vocabulary size.
        embedding_size: width of the word embeddings.
        hidden_size: width of the recurrent state.
        memory_size: width of the image grid vectors.
        cell: "rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm", or a RecurrentCell.
        num_layers: stacked recurrent layers (attention queries with the top layer's h).
        attention: "additive", "dot", "general" or "none" (Show and Tell).
        attention_size: width of additive attention's hidden layer (None: hidden_size).
        gate: the gating scalar beta_t on the context.
        dropout: on the embeddings and before the output layer.
        tie_embeddings: share L_o with the embedding E.
        padding_idx: the padding token, whose embedding stays zero.
        backend: the Recurrent backend.
    """

    def __init__(self, vocab_size: int, embedding_size: int, hidden_size: int, memory_size: int,
                 cell: str | RecurrentCell = "lstm", num_layers: int = 1, attention: str = "additive",
                 attention_size: int | None = None, gate: bool = True, dropout: float = 0.0,
                 tie_embeddings: bool = False, padding_idx: int = 0, backend: str = "auto") -> None:
        super().__init__(vocab_size, embedding_size, hidden_size, attention, dropout, padding_idx)
        self.num_layers = num_layers
        if attention == "none":
            self.attention = self.gate = self.context_proj = self.bridge = None
            self.image_proj = nn.Linear(memory_size, embedding_size)
            rnn_input = embedding_size
        else:
            self.attention = Attention(attention, hidden_size, memory_size, attention_size)
            self.gate = nn.Linear(hidden_size, 1) if gate else None
            self.context_proj = nn.Linear(memory_size, embedding_size, bias=False)
            self.image_proj = None
            rnn_input = embedding_size + memory_size
        self.rnn = Recurrent(cell, rnn_input, hidden_size, num_layers=num_layers, dropout=dropout, backend=backend)
        if attention != "none":
            self.bridge = Bridge(memory_size, hidden_size, num_layers, self.rnn.cell.state_names)
        self.hidden_proj = nn.Linear(hidden_size, embedding_size, bias=False)
        self.out = self.output_layer(embedding_size, tie_embeddings)

    @property
    def cells_read_tokens_only(self) -> bool:
        return self.attention is None

    def start(self, memory: Tensor) -> DecoderState:
        """The state before the first word, from the image grid (B, L, M)."""
        image = memory.mean(1)
        if self.attention is not None:
            return self.bridge(image), None
        _, rnn_state = self.rnn(self.dropout(self.image_proj(image)).unsqueeze(1))
        return rnn_state, None

    def _attend(self, rnn_state, memory, keys, mask) -> tuple[Tensor, Tensor]:
        """The (gated) context and attention weights, queried with the top layer's h."""
        h = (rnn_state[0] if isinstance(rnn_state, tuple) else rnn_state)[-1]
        context, weights = self.attention(h, memory, keys, mask)
        if self.gate is not None:
            context = torch.sigmoid(self.gate(h)) * context
        return context, weights

    def _logits(self, embedded: Tensor, h: Tensor, context: Tensor | None) -> Tensor:
        deep = embedded + self.hidden_proj(h)
        if context is not None:
            deep = deep + self.context_proj(context)
        return self.out(self.dropout(deep))

    def step(
        self, tokens: Tensor, state: DecoderState, memory: Tensor, keys: Tensor | None = None, mask=None
    ) -> tuple[Tensor, DecoderState, Tensor | None]:
        """One word per image: tokens (B,) -> logits (B, V), new state, attention weights (B, L) or None."""
        rnn_state = state[0]
        embedded = self.dropout(self.embedding(tokens))
        context = weights = None
        x = embedded
        if self.attention is not None:
            context, weights = self._attend(rnn_state, memory, keys, mask)
            x = torch.cat((embedded, context), dim=-1)
        out, rnn_state = self.rnn(x.unsqueeze(1), state=rnn_state)
        return self._logits(embedded, out[:, 0], context), (rnn_state, None), weights

    def _forward_whole_target(self, targets, state, memory, keys, mask):
        embedded = self.dropout(self.embedding(targets))
        out, _ = self.rnn(embedded, state=state[0])
        return self._logits(embedded, out, None), None


def attention_penalty(weights: Tensor, steps: Tensor) -> Tensor:
    """Show, Attend and Tell's doubly stochastic regularisation, per image: (1 - sum_t alpha_ti)^2 averaged over the
    L grid locations, from weights (B, T, L) and a mask ``steps`` (B, T) True on real (non-padding) steps. Pushes
    the model to look at every part of the image over the caption. The paper sums over locations; the mean (as in
    the widely used PyTorch reimplementation) keeps a weight of 1 from swamping the word loss on a large grid, where
    a caption of T < L words cannot cover every location."""
    coverage = (weights * steps.unsqueeze(-1).to(weights.dtype)).sum(1)  # (B, L)
    return ((1.0 - coverage) ** 2).mean(1)
