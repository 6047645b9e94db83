"""Seq2seq translation: SequenceEncoder -> Bridge -> RecurrentDecoder with attention, beam search at test time.

Metrics, over the whole evaluation set exactly once also under DDP (hypotheses are gathered and repeats dropped by
sentence index): ``val_loss``/``test_loss`` (cross-entropy per target token) and ``*_ppl``; ``val_bleu`` (greedy)
and ``test_bleu`` (beam search) with sacreBLEU (detokenised, cased, 0-100), ``*_chrf``, and ``*_bleu_tutorial``,
the lowercased BLEU that tutorials print.
"""

from __future__ import annotations

import math

import sacrebleu
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from tokenizers import Tokenizer

from apps.common.metrics import token_nll_sums
from apps.common.module import AppModule
from apps.translation.data import collate
from apps.translation.tokenizer import BOS, EOS, PAD
from rnn_core.decoders import RecurrentDecoder
from rnn_core.encoders import Bridge, SequenceEncoder


class TranslationModel(AppModule):
    """Encoder-decoder with attention; its layers are sized by the tokenizer the data (or the checkpoint) brings."""

    evaluation_options = ("beam_size", "length_penalty", "n_best", "max_length_ratio", "max_length_extra")

    def __init__(
        self,
        cell: str = "lstm",
        backend: str = "auto",
        embedding_size: int = 256,
        encoder_hidden_size: int = 256,
        decoder_hidden_size: int = 512,
        encoder_layers: int = 2,
        decoder_layers: int = 1,
        bidirectional: bool = True,
        attention: str = "additive",
        input_feeding: bool = False,
        dropout: float = 0.3,
        tie_embeddings: bool = True,
        teacher_forcing: float = 1.0,
        label_smoothing: float = 0.1,
        beam_size: int = 5,
        length_penalty: float = 0.6,
        n_best: int = 1,
        max_length_ratio: float = 1.5,
        max_length_extra: int = 10,
        num_samples: int = 4,
        **kwargs,
    ) -> None:
        """
        Args:
            cell: recurrent cell of encoder and decoder: rnn, lstm, gru, peephole_lstm or coupled_lstm.
            backend: rnn_core Recurrent backend: auto, torch, fused or loop.
            embedding_size: width of the token embeddings.
            encoder_hidden_size: encoder state width per direction.
            decoder_hidden_size: decoder state width.
            encoder_layers: stacked encoder layers.
            decoder_layers: stacked decoder layers.
            bidirectional: read the source both ways.
            attention: additive (Bahdanau), dot or general (Luong), or none.
            input_feeding: feed the previous attentional vector to the decoder (slower: steps one token at a time).
            dropout: dropout on embeddings, between layers and before the output layer.
            tie_embeddings: share the decoder's output projection with its input embedding.
            teacher_forcing: probability of feeding the true previous token in training (else the prediction).
            label_smoothing: label smoothing of the training loss.
            beam_size: beam width at test and predict time.
            length_penalty: GNMT length penalty alpha of beam search (0 ranks by total log-probability).
            n_best: hypotheses per sentence that predict writes.
            max_length_ratio: decoding stops after max_length_ratio * source length + max_length_extra tokens.
            max_length_extra: see max_length_ratio.
            num_samples: validation sentences shown in the sample table and attention pictures.
        """
        super().__init__(**kwargs)
        self.beam_size, self.length_penalty, self.n_best = beam_size, length_penalty, n_best
        self.max_length_ratio, self.max_length_extra = max_length_ratio, max_length_extra
        self.signature_shown = False

    def build(self, artefacts: dict) -> None:
        hp = self.hparams
        self.tokenizer = Tokenizer.from_str(artefacts["tokenizer"])
        vocab_size = self.tokenizer.get_vocab_size()
        self.encoder = SequenceEncoder(
            vocab_size, hp.embedding_size, hp.encoder_hidden_size, cell=hp.cell, num_layers=hp.encoder_layers,
            bidirectional=hp.bidirectional, dropout=hp.dropout, padding_idx=PAD, backend=hp.backend,
        )
        self.decoder = RecurrentDecoder(
            vocab_size, hp.embedding_size, hp.decoder_hidden_size, memory_size=self.encoder.output_size,
            cell=hp.cell, num_layers=hp.decoder_layers, attention=hp.attention, input_feeding=hp.input_feeding,
            dropout=hp.dropout, tie_embeddings=hp.tie_embeddings, padding_idx=PAD, backend=hp.backend,
        )
        self.bridge = Bridge(self.encoder.output_size, hp.decoder_hidden_size, hp.decoder_layers,
                             self.decoder.state_names)

    def encode(self, batch: dict):
        memory, mask, summary = self.encoder(batch["source"], batch["source_lengths"])
        return memory, mask, self.decoder.start(self.bridge(summary))

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """The training loss: label-smoothed cross-entropy per target token."""
        memory, mask, start = self.encode(batch)
        teacher_forcing = self.hparams.teacher_forcing if self.training else 1.0
        logits, _ = self.decoder(batch["target_in"], start, memory, mask, teacher_forcing=teacher_forcing)
        return F.cross_entropy(logits.flatten(0, 1), batch["target_out"].flatten(), ignore_index=PAD,
                               label_smoothing=self.hparams.label_smoothing)

    # ---------------------------------------------------------------- decoding

    def max_length(self, batch: dict) -> torch.Tensor:
        """Each sentence's decoding limit, from its own source length (not the batch's longest)."""
        return (batch["source_lengths"].double() * self.max_length_ratio).long() + self.max_length_extra

    def greedy(self, batch: dict, encoded=None):
        """Greedy decoding: hypotheses and attention weights; ``encoded`` is ``encode(batch)`` if already there."""
        memory, mask, start = encoded or self.encode(batch)
        return self.decoder.greedy(start, memory, mask, bos=BOS, eos=EOS, max_length=self.max_length(batch))

    def beam(self, batch: dict, n_best: int = 1, encoded=None):
        """Beam search: the n_best hypotheses of each sentence."""
        memory, mask, start = encoded or self.encode(batch)
        return self.decoder.beam(start, memory, mask, bos=BOS, eos=EOS, max_length=self.max_length(batch),
                                 beam_size=self.beam_size, length_penalty=self.length_penalty, n_best=n_best)

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i != EOS], skip_special_tokens=True)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, batch: dict, stage: str) -> list[dict]:
        encoded = self.encode(batch)  # once, for the loss and the decoding
        memory, mask, start = encoded
        logits, _ = self.decoder(batch["target_in"], start, memory, mask)
        sums = token_nll_sums(logits, batch["target_out"], PAD).tolist()
        if stage == "val":
            hypotheses = [h.tokens for h in self.greedy(batch, encoded)[0]]
        else:
            hypotheses = [h[0].tokens for h in self.beam(batch, encoded=encoded)]
        return [{"index": i, "source": src, "reference": ref, "hypothesis": self.detokenize(hyp), "nll": nll,
                 "tokens": tokens}
                for i, src, ref, hyp, (nll, tokens) in zip(batch["index"].tolist(), batch["source_text"],
                                                           batch["target_text"], hypotheses, sums, strict=True)]

    def metrics(self, records: list[dict], stage: str) -> dict[str, float]:
        loss = sum(r["nll"] for r in records) / sum(r["tokens"] for r in records)
        hypotheses, references = [r["hypothesis"] for r in records], [[r["reference"] for r in records]]
        bleu, chrf, tutorial = sacrebleu.BLEU(), sacrebleu.CHRF(), sacrebleu.BLEU(lowercase=True)
        values = {
            f"{stage}_loss": loss,
            f"{stage}_ppl": math.exp(min(loss, 50.0)),
            f"{stage}_bleu": bleu.corpus_score(hypotheses, references).score,
            f"{stage}_chrf": chrf.corpus_score(hypotheses, references).score,
            f"{stage}_bleu_tutorial": tutorial.corpus_score(hypotheses, references).score,
        }
        if not self.signature_shown and not self.trainer.sanity_checking:
            rank_zero_info(f"sacreBLEU signature: {bleu.get_signature()}; chrF: {chrf.get_signature()}")
            self.signature_shown = True
        return values

    def pictures(self, records: list[dict], stage: str) -> None:
        """A table of source, reference and hypothesis, and attention heatmaps (greedy decoding), to W&B and PNG."""
        records = records[: self.hparams.num_samples]
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=f"{stage}_samples", columns=["source", "reference", "hypothesis"],
                                 data=[[r["source"], r["reference"], r["hypothesis"]] for r in records],
                                 step=self.global_step)
        if self.decoder.attention is None:
            return
        dataset = self.trainer.datamodule.splits[stage]
        batch = self.transfer_batch_to_device(collate([dataset[r["index"]] for r in records]), self.device, 0)
        hypotheses, weights = self.greedy(batch)
        figure = Figure(figsize=(5 * len(records), 5))
        for k, (ax, hyp) in enumerate(zip(figure.subplots(1, len(records), squeeze=False)[0], hypotheses,
                                          strict=True)):
            source = [self.tokenizer.id_to_token(i) for i in batch["source"][k, : batch["source_lengths"][k]]]
            target = [self.tokenizer.id_to_token(i) for i in hyp.tokens]
            ax.imshow(weights[k, : len(target), : len(source)].float().cpu().numpy(), cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(source)), source, rotation=90, fontsize=7)
            ax.set_yticks(range(len(target)), target, fontsize=7)
        figure.suptitle(f"attention, epoch {self.current_epoch}")
        self.log_figure(figure, f"{stage}_attention")

    # ---------------------------------------------------------------- predict

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        rows = []
        for i, src, hypotheses in zip(batch["index"].tolist(), batch["source_text"],
                                      self.beam(batch, self.n_best), strict=True):
            row = {"index": i, "source": src, "translation": self.detokenize(hypotheses[0].tokens),
                   "score": round(hypotheses[0].score, 4)}
            if self.n_best > 1:
                row["n_best"] = [{"translation": self.detokenize(h.tokens), "score": round(h.score, 4)}
                                 for h in hypotheses]
            rows.append(row)
        return rows
