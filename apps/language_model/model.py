"""A recurrent language model, the lecture's synced many-to-many: every step predicts the next token.

Token ids -> embedding -> rnn_core Recurrent (any cell and backend) -> linear layer (tied to the embedding by default).
Truncated BPTT: each batch continues the streams of the one before (data.py), and their state is carried over,
detached, into the next epoch too (as char-rnn does) and across a resume (in the checkpoint). Regularisers of AWD-LSTM
(Merity et al. 2018): variational dropout on the recurrence's inputs and outputs, DropConnect on its hidden-to-hidden
weights, dropout between layers. Metrics: ``*_loss`` (nats per token), ``*_ppl``, ``*_bpc`` (bits per character).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from tokenizers import Tokenizer
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.rnn import pad_sequence

from apps.common.callbacks import run_dir
from apps.common.errors import check_options
from apps.common.metrics import token_nll_sums
from apps.common.module import AppModule
from apps.language_model.data import IGNORE
from rnn_core import BACKENDS, CELLS, Recurrent

CARRIED_KEY = "carried_state"  # where checkpoints keep the training streams' state
PROMPT_TOKENS = 32  # validation samples continue this many tokens of the validation text


def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Variational dropout (Gal & Ghahramani 2016) of (B, T, F): one mask per sequence, the same at every step."""
    if not training or p == 0:
        return x
    return x * x.new_empty(x.shape[0], 1, x.shape[2]).bernoulli_(1 - p) / (1 - p)


class LanguageModel(AppModule):
    """Embedding, Recurrent and output layer, sized by the tokenizer that the data (or the checkpoint) brings."""

    evaluation_options = ("temperature", "top_k", "top_p", "max_new_tokens", "samples_per_prompt", "seed")

    def __init__(self, cell: str = "lstm", backend: str = "auto", embedding_size: int = 128, hidden_size: int = 256,
                 num_layers: int = 2, dropout: float = 0.0, input_dropout: float = 0.0, output_dropout: float = 0.0,
                 weight_dropout: float = 0.0, tie_embeddings: bool = True, num_samples: int = 2,
                 temperature: float = 0.8, top_k: int = 0, top_p: float = 1.0, max_new_tokens: int = 200,
                 samples_per_prompt: int = 1, seed: int = 0, **kwargs) -> None:
        """
        Args:
            cell: recurrent cell: rnn, lstm, gru, peephole_lstm or coupled_lstm.
            backend: rnn_core Recurrent backend: auto, torch, fused or loop.
            embedding_size: width of the token embeddings.
            hidden_size: width of the recurrent state.
            num_layers: stacked recurrent layers.
            dropout: dropout between recurrent layers.
            input_dropout: variational dropout on the embeddings (one mask per sequence).
            output_dropout: variational dropout on the last recurrent layer's outputs (one mask per sequence).
            weight_dropout: DropConnect on every layer's hidden-to-hidden weights (one mask per batch).
            tie_embeddings: the output layer shares the embedding's weights (after a projection to its width).
            num_samples: pieces of the validation text continued after each validation (W&B, val_samples.txt).
            temperature: sampling temperature; 0 takes the most likely token.
            top_k: sample among the k most likely tokens (0: all).
            top_p: sample among the fewest most likely tokens that together hold this probability (1: all).
            max_new_tokens: tokens generated after each prompt.
            samples_per_prompt: texts predict generates per prompt.
            seed: sampling seed; a sample's draws depend on it, its prompt and its number alone.
        """
        super().__init__(**kwargs)
        check_options(group="model", rules={
            "cell": (cell, cell in CELLS, f"one of {tuple(CELLS)}"),
            "backend": (backend, backend in BACKENDS, f"one of {BACKENDS}"),
            **{name: (p, 0 <= p < 1, "in [0, 1)") for name, p in {"dropout": dropout, "input_dropout": input_dropout,
               "output_dropout": output_dropout, "weight_dropout": weight_dropout}.items()},
            "temperature": (temperature, temperature >= 0, "at least 0"),
            "top_p": (top_p, 0 < top_p <= 1, "in (0, 1]"),
            "samples_per_prompt": (samples_per_prompt, samples_per_prompt >= 1, "at least 1"),
        })
        self.temperature, self.top_k, self.top_p, self.seed = temperature, top_k, top_p, seed
        self.max_new_tokens, self.samples_per_prompt = max_new_tokens, samples_per_prompt
        self.carried: tuple[Tensor, ...] | None = None  # the training streams' state after the last batch
        self.evaluation_state: tuple[Tensor, ...] | None = None

    def build(self, artefacts: dict) -> None:
        hp = self.hparams
        self.tokenizer = Tokenizer.from_str(artefacts["tokenizer"])
        self.embedding = nn.Embedding(self.tokenizer.get_vocab_size(), hp.embedding_size)
        self.recurrent = Recurrent(hp.cell, hp.embedding_size, hp.hidden_size, hp.num_layers, dropout=hp.dropout,
                                   backend=hp.backend)
        for layer in range(hp.num_layers if hp.weight_dropout else 0):
            # DropConnect (Wan et al. 2013): nn.Dropout as a parametrization drops weights, not activations;
            # Recurrent reads each weight once per forward pass on every backend, so one mask serves every step
            parametrize.register_parametrization(self.recurrent, f"weight_hh_l{layer}", nn.Dropout(hp.weight_dropout))
        width = hp.embedding_size if hp.tie_embeddings else hp.hidden_size
        self.projection = nn.Linear(hp.hidden_size, width) if width != hp.hidden_size else nn.Identity()
        self.output = nn.Linear(width, self.tokenizer.get_vocab_size())
        if hp.tie_embeddings:
            self.output.weight = self.embedding.weight

    def forward(self, ids: Tensor, state: tuple[Tensor, ...] | None = None, lengths: Tensor | None = None):
        """Next-token logits (B, T, V) after token ids (B, T), and the state after them as a tuple (with ``lengths``,
        after each row's own last token)."""
        x = locked_dropout(self.embedding(ids), self.hparams.input_dropout, self.training)
        out, state = self.recurrent(x, lengths, state)
        out = self.projection(locked_dropout(out, self.hparams.output_dropout, self.training))
        return self.output(out), (state,) if isinstance(state, Tensor) else state

    # ------------------------------------------------------------------ training and evaluation

    def compute_loss(self, batch: dict) -> Tensor:
        """Cross-entropy per token of a training batch, read from the state its streams' last batch left."""
        carried = self.carried
        if carried is not None and carried[0].shape[1] != len(batch["input"]):
            carried = None  # another count of streams (a resume with other processes or batch size): from zeros
        logits, state = self(batch["input"], None if carried is None else tuple(s.to(self.device) for s in carried))
        self.carried = tuple(s.detach() for s in state)  # gradients stop at the chunk's start; the state goes on
        return F.cross_entropy(logits.flatten(0, 1), batch["target"].flatten(), ignore_index=IGNORE)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.carried is not None:  # every process's streams in order (Lightning saves on every process)
            gathered = [self.all_gather(s) for s in self.carried]
            multiple = self.trainer.world_size > 1
            checkpoint[CARRIED_KEY] = [(torch.cat(g.unbind(0), 1) if multiple else g).cpu() for g in gathered]

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if checkpoint.get(CARRIED_KEY) is not None and self._trainer is not None:  # this process's streams
            rows, rank = checkpoint[CARRIED_KEY][0].shape[1] // self.trainer.world_size, self.trainer.global_rank
            self.carried = tuple(s[:, rank * rows : (rank + 1) * rows] for s in checkpoint[CARRIED_KEY])

    def on_validation_epoch_start(self) -> None:
        self.evaluation_state = None

    on_test_epoch_start = on_validation_epoch_start

    def evaluate(self, batch: dict, stage: str) -> list[dict]:
        """Per chunk of a stream: the summed loss of its targets, their count, and the characters they cover."""
        logits, self.evaluation_state = self(batch["input"], self.evaluation_state)
        sums = token_nll_sums(logits, batch["target"], IGNORE).tolist()
        return [{"index": i, "nll": nll, "tokens": tokens, "chars": chars}
                for i, (nll, tokens), chars in zip(batch["index"].tolist(), sums, batch["chars"].tolist(), strict=True)]

    def metrics(self, records: list[dict], stage: str) -> dict[str, float]:
        nll = sum(r["nll"] for r in records)
        loss = nll / sum(r["tokens"] for r in records)
        return {f"{stage}_loss": loss, f"{stage}_ppl": math.exp(min(loss, 50.0)),
                f"{stage}_bpc": nll / math.log(2) / sum(r["chars"] for r in records)}

    def pictures(self, records: list[dict], stage: str) -> None:
        """Continues pieces of the validation text: to the W&B table ``val_samples``, and appended to
        ``val_samples.txt`` beside the checkpoints."""
        count = self.hparams.num_samples
        if stage != "val" or count == 0:
            return
        ids = self.trainer.datamodule.splits["val"].ids
        prompts = [ids[k * len(ids) // count :][:PROMPT_TOKENS].tolist() for k in range(count)]
        texts = [self.tokenizer.decode(t) for t in prompts + self.generate(prompts, [(k,) for k in range(count)])]
        rows = [[prompt, sample] for prompt, sample in zip(texts[:count], texts[count:], strict=True)]
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key="val_samples", columns=["prompt", "sample"], data=rows, step=self.global_step)
        path = run_dir(self.trainer) / "val_samples.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as f:
            f.write(f"=== epoch {self.current_epoch}, step {self.global_step}\n")
            f.writelines(f"--- prompt\n{prompt}\n--- sample\n{sample}\n" for prompt, sample in rows)

    # ------------------------------------------------------------------ generation

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], keys: list[tuple[int, ...]]) -> list[list[int]]:
        """``max_new_tokens`` token ids sampled after each prompt (one token or more); each row draws from its own
        random generator, seeded with ``seed`` and the row's key, so that its draws do not depend on other rows."""
        was_training = self.training
        self.eval()
        lengths = torch.tensor([len(p) for p in prompts])
        ids = pad_sequence([torch.tensor(p) for p in prompts], batch_first=True).to(self.device)
        logits, state = self(ids, lengths=lengths)
        logits = logits[torch.arange(len(prompts)), lengths - 1]
        # a tuple of ints hashes alike in every run
        generators = [torch.Generator(self.device).manual_seed(hash((self.seed, *key)) % 2**63) for key in keys]
        new = torch.empty(len(prompts), 0, dtype=torch.long, device=self.device)
        for _ in range(self.max_new_tokens):
            new = torch.cat([new, self.sample(logits, generators)[:, None]], 1)
            logits, state = self(new[:, -1:], state)
            logits = logits[:, 0]
        self.train(was_training)
        return new.tolist()

    def sample(self, logits: Tensor, generators: list[torch.Generator]) -> Tensor:
        """A token per row of logits (B, V): the most likely at temperature 0, else drawn from the softmax at the
        temperature, cut to the top_k most likely and to the fewest most likely that hold top_p."""
        if self.temperature == 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float() / self.temperature, -1)
        if self.top_k:
            probs = probs.masked_fill(probs < probs.topk(min(self.top_k, probs.shape[-1])).values[:, -1:], 0)
        if self.top_p < 1:
            ordered, order = probs.sort(-1, descending=True)
            before = ordered.cumsum(-1) - ordered  # the probability of the more likely tokens
            probs = probs.scatter(-1, order, ordered.masked_fill(before >= self.top_p * probs.sum(-1, True), 0))
        return torch.cat([torch.multinomial(p, 1, generator=g) for p, g in zip(probs, generators, strict=True)])

    def predict_step(self, batch: list[dict], batch_idx: int) -> list[dict]:
        rows = [(prompt, sample) for prompt in batch for sample in range(self.samples_per_prompt)]
        generated = self.generate([prompt["ids"] for prompt, _ in rows], [(p["index"], s) for p, s in rows])
        return [{"index": prompt["index"], "sample": sample, "prompt": prompt["prompt"],
                 "text": self.tokenizer.decode(new)} for (prompt, sample), new in zip(rows, generated, strict=True)]
