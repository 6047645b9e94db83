"""Seq2seq translation: SequenceEncoder -> Bridge -> RecurrentDecoder with attention, beam search at test time.

Metrics, over the whole evaluation set exactly once also under DDP (hypotheses are gathered and repeats dropped by
sentence index): ``val_loss``/``test_loss`` (cross-entropy per target token) and ``*_ppl``; ``val_bleu`` (greedy)
and ``test_bleu`` (beam search) with sacreBLEU (detokenised, cased, 0-100), ``*_chrf``, and ``*_bleu_tutorial``,
the lowercased BLEU that tutorials print.
"""

from __future__ import annotations

import math

import lightning.pytorch as pl
import sacrebleu
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure
from tokenizers import Tokenizer

from apps.common.callbacks import log_figure
from apps.common.metrics import SampleSums, gather_by_index, token_nll_sums
from apps.translation.data import BOS, EOS, PAD, TOKENIZER_KEY, collate
from rnn_core.decoders import Bridge, RecurrentDecoder
from rnn_core.encoders import SequenceEncoder
from rnn_core.search import beam_search, greedy_search


class TranslationModel(pl.LightningModule):
    """Encoder-decoder with attention.

    The layers are sized by the tokenizer, which exists only once the data is set up (or the checkpoint read), so
    the optimizer (Adam) is set by model options, not by LightningCLI's top-level ``--optimizer``, which needs the
    parameters when the command line is parsed.
    """

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
        num_tokens: int | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        plateau_patience: int = 0,
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
            num_tokens: size of the token vocabulary; None takes it from the data's tokenizer.
            lr: Adam's learning rate.
            weight_decay: Adam's weight decay.
            plateau_patience: halve the learning rate after this many epochs without a lower val_loss (0: never).
        """
        super().__init__()
        self.save_hyperparameters()
        self.tokenizer: Tokenizer | None = None
        self.eval_sums = SampleSums()
        self.outputs: list[tuple[int, str, str, str]] = []
        self.signature_shown = False
        if num_tokens is not None:
            self.build(num_tokens)

    # ---------------------------------------------------------------- layers

    def build(self, vocab_size: int) -> None:
        hp = self.hparams
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
        self.hparams.num_tokens = vocab_size

    def setup(self, stage: str) -> None:
        tokenizer = self.trainer.datamodule.tokenizer
        if self.tokenizer is None:
            self.tokenizer = tokenizer
        if not hasattr(self, "encoder"):
            self.build(tokenizer.get_vocab_size())
        elif self.hparams.num_tokens != tokenizer.get_vocab_size():
            raise ValueError(f"the model has a vocabulary of {self.hparams.num_tokens} but the data's tokenizer has "
                             f"{tokenizer.get_vocab_size()}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[TOKENIZER_KEY] = self.tokenizer.to_str()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.tokenizer is None and TOKENIZER_KEY in checkpoint:
            self.tokenizer = Tokenizer.from_str(checkpoint[TOKENIZER_KEY])
        if not hasattr(self, "encoder"):
            self.build(checkpoint["hyper_parameters"]["num_tokens"])

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.plateau_patience < 1:
            return optimizer
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=hp.plateau_patience)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": "val_loss"}}

    # ---------------------------------------------------------------- training

    def encode(self, batch: dict):
        memory, mask, summary = self.encoder(batch["source"], batch["source_lengths"])
        return memory, mask, self.decoder.start(self.bridge(summary))

    def forward(self, batch: dict, teacher_forcing: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
        memory, mask, start = self.encode(batch)
        return self.decoder(batch["target_in"], start, memory, mask, teacher_forcing=teacher_forcing)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """The training loss: label-smoothed cross-entropy per target token."""
        logits, _ = self(batch, teacher_forcing=self.hparams.teacher_forcing if self.training else 1.0)
        return F.cross_entropy(logits.flatten(0, 1), batch["target_out"].flatten(), ignore_index=PAD,
                               label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["source"].shape[0])
        return loss

    # ---------------------------------------------------------------- decoding

    def max_length(self, batch: dict) -> torch.Tensor:
        """Each sentence's decoding limit, from its own source length (not the batch's longest)."""
        lengths = batch["source_lengths"].double() * self.hparams.max_length_ratio
        return lengths.long() + self.hparams.max_length_extra

    def greedy(self, batch: dict, encoded=None):
        """Greedy decoding; ``encoded`` is ``encode(batch)`` when the caller already has it."""
        memory, mask, start = encoded or self.encode(batch)
        return greedy_search(self.decoder.stepper(memory, mask), start, batch["source"].shape[0], BOS, EOS,
                             self.max_length(batch), device=self.device)

    def beam(self, batch: dict, n_best: int = 1, encoded=None):
        """Beam search; ``encoded`` is ``encode(batch)`` when the caller already has it."""
        memory, mask, start = encoded or self.encode(batch)
        K = self.hparams.beam_size
        return beam_search(
            self.decoder.stepper(memory, mask, beams=K), self.decoder.reorder, self.decoder.repeat(start, K),
            batch["source"].shape[0], BOS, EOS, beam_size=K, max_length=self.max_length(batch),
            alpha=self.hparams.length_penalty, n_best=n_best, device=self.device,
        )

    def detokenize(self, ids: list[int]) -> str:
        return self.tokenizer.decode([i for i in ids if i != EOS], skip_special_tokens=True)

    # ---------------------------------------------------------------- evaluation

    def _evaluate(self, batch: dict, search: str) -> None:
        encoded = self.encode(batch)  # once, for the loss and the decoding
        memory, mask, start = encoded
        logits, _ = self.decoder(batch["target_in"], start, memory, mask)
        self.eval_sums.update(batch["index"], token_nll_sums(logits, batch["target_out"], PAD))
        if search == "greedy":
            hypotheses = [h.tokens for h in self.greedy(batch, encoded)[0]]
        else:
            hypotheses = [h[0].tokens for h in self.beam(batch, encoded=encoded)]
        for i, hyp, src, ref in zip(batch["index"].tolist(), hypotheses, batch["source_text"], batch["target_text"],
                                    strict=True):
            self.outputs.append((i, src, ref, self.detokenize(hyp)))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "greedy")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "beam")

    def _finish_evaluation(self, prefix: str) -> None:
        (nll, tokens), count = self.eval_sums.compute()
        self.eval_sums.reset()
        rows = gather_by_index(self.trainer, self.outputs)
        self.outputs = []
        if count != len(rows):
            raise RuntimeError(f"{prefix}: {count} sentences scored but {len(rows)} decoded")
        loss = float(nll / tokens)
        hypotheses = [r[3] for r in rows]
        references = [[r[2] for r in rows]]
        bleu, chrf, tutorial = sacrebleu.BLEU(), sacrebleu.CHRF(), sacrebleu.BLEU(lowercase=True)
        metrics = {
            f"{prefix}_loss": loss,
            f"{prefix}_ppl": math.exp(min(loss, 50.0)),
            f"{prefix}_bleu": bleu.corpus_score(hypotheses, references).score,
            f"{prefix}_chrf": chrf.corpus_score(hypotheses, references).score,
            f"{prefix}_bleu_tutorial": tutorial.corpus_score(hypotheses, references).score,
        }
        # every process computed the same values from the same gathered sentences: no further reduction
        for name, value in metrics.items():
            self.log(name, value, prog_bar=name in (f"{prefix}_bleu", f"{prefix}_loss"))
        if not self.signature_shown and not self.trainer.sanity_checking:
            rank_zero_info(f"sacreBLEU signature: {bleu.get_signature()}; chrF: {chrf.get_signature()}")
            self.signature_shown = True
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._log_samples(prefix, rows[: self.hparams.num_samples])

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def _log_samples(self, prefix: str, rows) -> None:
        """A table of source, reference and hypothesis, and attention heatmaps (greedy decoding), to W&B and PNG."""
        if not rows:
            return
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_table(key=f"{prefix}_samples", columns=["source", "reference", "hypothesis"],
                                 data=[list(r[1:]) for r in rows], step=self.global_step)
        if self.decoder.attention is None:
            return
        dataset = self.trainer.datamodule.splits[prefix]
        batch = self.transfer_batch_to_device(collate([dataset[r[0]] for r in rows]), self.device, 0)
        hypotheses, weights = self.greedy(batch)
        figure = Figure(figsize=(5 * len(rows), 5))
        for k, (ax, hyp) in enumerate(zip(figure.subplots(1, len(rows), squeeze=False)[0], hypotheses, strict=True)):
            source = [self.tokenizer.id_to_token(i) for i in batch["source"][k, : batch["source_lengths"][k]]]
            target = [self.tokenizer.id_to_token(i) for i in hyp.tokens]
            ax.imshow(weights[k, : len(target), : len(source)].float().cpu().numpy(), cmap="viridis", aspect="auto")
            ax.set_xticks(range(len(source)), source, rotation=90, fontsize=7)
            ax.set_yticks(range(len(target)), target, fontsize=7)
        figure.suptitle(f"attention, epoch {self.current_epoch}")
        log_figure(self.trainer, figure, f"{prefix}_attention")

    # ---------------------------------------------------------------- predict

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        n_best = self.hparams.n_best
        rows = []
        for i, src, hypotheses in zip(batch["index"].tolist(), batch["source_text"], self.beam(batch, n_best),
                                      strict=True):
            row = {"index": i, "source": src, "translation": self.detokenize(hypotheses[0].tokens),
                   "score": round(hypotheses[0].score, 4)}
            if n_best > 1:
                row["n_best"] = [{"translation": self.detokenize(h.tokens), "score": round(h.score, 4)}
                                 for h in hypotheses]
            rows.append(row)
        return rows
