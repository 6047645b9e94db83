"""Image captioning: ImageEncoder (a torchvision CNN as a grid of feature vectors) -> ShowAttendTellDecoder.

Show, Attend and Tell (soft attention, gating scalar, doubly stochastic attention regularisation) by default;
``--model.attention none`` gives Show and Tell (the image as the first input, no attention).

Metrics, over the whole evaluation set exactly once also under DDP (captions are gathered and repeats dropped by
image index): ``val_loss``/``test_loss`` (cross-entropy per word, teacher forced), ``*_bleu1`` .. ``*_bleu4``
(corpus BLEU with all references as the COCO evaluation computes it, 0-100), ``*_cider`` (CIDEr-D) and
``test_meteor`` (when Java and pycocoevalcap are there), references normalised as the captions (metrics.normalise).
Validation decodes greedily, test and predict with beam search; neither uses the references as inputs (no teacher
forcing).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure

from apps.captioning import metrics
from apps.captioning.data import IMAGENET_MEAN, IMAGENET_STD, collate
from apps.captioning.pictures import attention_figure, wrap
from apps.captioning.vocabulary import BOS, EOS, PAD, Vocabulary
from apps.common.backbone import BackboneModule
from apps.common.errors import UserError
from apps.common.metrics import token_nll_sums
from rnn_core.decoders import ShowAttendTellDecoder, attention_penalty


class CaptioningModel(BackboneModule):
    """CNN encoder + recurrent decoder with soft attention; the decoder is sized by the data's vocabulary."""

    monitor, mode = "val_bleu4", "max"
    evaluation_options = ("beam_size", "length_penalty", "max_length")

    def __init__(
        self,
        cell: str = "lstm",
        backend: str = "auto",
        embedding_size: int = 512,
        hidden_size: int = 512,
        attention: str = "additive",
        attention_size: int | None = None,
        gate: bool = True,
        attention_regularization: float = 1.0,
        dropout: float = 0.5,
        tie_embeddings: bool = False,
        teacher_forcing: float = 1.0,
        label_smoothing: float = 0.0,
        beam_size: int = 3,
        length_penalty: float = 0.0,
        max_length: int = 30,
        meteor: bool = True,
        num_samples: int = 4,
        **kwargs,
    ) -> None:
        """
        Args:
            cell: decoder cell: rnn, lstm, gru, peephole_lstm or coupled_lstm.
            backend: rnn_core Recurrent backend: auto, torch, fused or loop.
            embedding_size: width of the word embeddings.
            hidden_size: decoder state width.
            attention: additive (Show, Attend and Tell), dot, general, or none (Show and Tell).
            attention_size: width of additive attention's hidden layer (None: hidden_size).
            gate: Show, Attend and Tell's gating scalar on the attention context.
            attention_regularization: weight of the doubly stochastic attention regularisation (0: off).
            dropout: dropout on the embeddings and before the output layer.
            tie_embeddings: share the output layer with the word embedding.
            teacher_forcing: probability of feeding the true previous word in training (else the prediction).
            label_smoothing: label smoothing of the training loss.
            beam_size: beam width at test and predict time.
            length_penalty: GNMT length penalty alpha of beam search (0 ranks by total log-probability).
            max_length: longest generated caption in words.
            meteor: compute METEOR at test time when Java and pycocoevalcap are installed.
            num_samples: validation images shown with their captions and attention maps (0: none).
        """
        for option, value, low, high in (("beam_size", beam_size, 1, None), ("max_length", max_length, 1, None),
                                         ("num_samples", num_samples, 0, None), ("dropout", dropout, 0, 1),
                                         ("teacher_forcing", teacher_forcing, 0, 1),
                                         ("label_smoothing", label_smoothing, 0, 1)):
            if value < low or (high is not None and value > high):
                expected = f"at least {low}" if high is None else f"from {low} to {high}"
                raise UserError(f"--model.{option} must be {expected}, got {value}")
        super().__init__(**kwargs)
        self.beam_size, self.length_penalty, self.max_length = beam_size, length_penalty, max_length
        self.meteor_note_shown = False

    def build(self, artefacts: dict) -> None:
        hp = self.hparams
        self.vocabulary = Vocabulary(artefacts["vocabulary"])
        self.decoder = ShowAttendTellDecoder(
            len(self.vocabulary), hp.embedding_size, hp.hidden_size, self.image_encoder.output_size, cell=hp.cell,
            attention=hp.attention, attention_size=hp.attention_size, gate=hp.gate, dropout=hp.dropout,
            tie_embeddings=hp.tie_embeddings, padding_idx=PAD, backend=hp.backend,
        )

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, object]:
        """The image grid (B, L, C) and the decoder's start state."""
        with torch.set_grad_enabled(self.image_encoder.trainable and torch.is_grad_enabled()):
            memory = self.image_encoder(images)
        return memory, self.decoder.start(memory)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Cross-entropy per word plus the doubly stochastic attention regularisation (per image)."""
        memory, start = self.encode(batch["image"])
        teacher_forcing = self.hparams.teacher_forcing if self.training else 1.0
        logits, weights = self.decoder(batch["target_in"], start, memory, teacher_forcing=teacher_forcing)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["target_out"].flatten(), ignore_index=PAD,
                               label_smoothing=self.hparams.label_smoothing)
        if weights is not None and self.hparams.attention_regularization > 0:
            penalty = attention_penalty(weights, batch["target_out"] != PAD).mean()
            loss = loss + self.hparams.attention_regularization * penalty
        return loss

    # ---------------------------------------------------------------- decoding

    def greedy(self, images: torch.Tensor, encoded=None):
        memory, start = encoded or self.encode(images)
        return self.decoder.greedy(start, memory, bos=BOS, eos=EOS, max_length=self.max_length)

    def beam(self, images: torch.Tensor, encoded=None):
        memory, start = encoded or self.encode(images)
        return self.decoder.beam(start, memory, bos=BOS, eos=EOS, max_length=self.max_length,
                                 beam_size=self.beam_size, length_penalty=self.length_penalty)

    def caption(self, tokens: list[int]) -> str:
        return self.vocabulary.decode(t for t in tokens if t != EOS)

    # ---------------------------------------------------------------- evaluation

    def evaluate(self, batch: dict, stage: str) -> list[dict]:
        encoded = self.encode(batch["image"])  # once, for the loss and the decoding
        memory, start = encoded
        logits, _ = self.decoder(batch["target_in"], start, memory)
        sums = token_nll_sums(logits, batch["target_out"], PAD).tolist()
        if stage == "val":
            tokens = [h.tokens for h in self.greedy(batch["image"], encoded)[0]]
        else:
            tokens = [h[0].tokens for h in self.beam(batch["image"], encoded)]
        return [{"index": i, "image": name, "references": refs, "caption": self.caption(hyp), "nll": nll,
                 "words": words}
                for i, name, refs, hyp, (nll, words) in zip(batch["index"].tolist(), batch["name"],
                                                            batch["references"], tokens, sums, strict=True)]

    def metrics(self, records: list[dict], stage: str) -> dict[str, float]:
        hypotheses, references = [r["caption"] for r in records], [r["references"] for r in records]
        values = {f"{stage}_loss": sum(r["nll"] for r in records) / sum(r["words"] for r in records)}
        values.update({f"{stage}_bleu{n}": s for n, s in metrics.bleu_scores(hypotheses, references).items()})
        values[f"{stage}_cider"] = metrics.cider_d(hypotheses, references)
        if stage == "test" and self.hparams.meteor:
            why_not = metrics.meteor_available()
            if why_not is None:
                meteor = metrics.meteor(hypotheses, references) if self.trainer.is_global_zero else 0.0
                # one process ran Java; the others take its value
                values["test_meteor"] = float(self.trainer.strategy.broadcast(meteor, src=0))
            elif not self.meteor_note_shown:
                rank_zero_info(why_not)
                self.meteor_note_shown = True
        return values

    def pictures(self, records: list[dict], stage: str) -> None:
        """A W&B table of image, references and caption; PNGs of the images with their captions and of each word's
        attention over the image (greedy decoding)."""
        records = records[: self.hparams.num_samples]
        if not records:
            return
        dataset = self.trainer.datamodule.splits[stage]
        batch = collate([dataset[r["index"]] for r in records])
        pictures = (batch["image"] * torch.tensor(IMAGENET_STD).view(3, 1, 1)
                    + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.log_table(key=f"{stage}_samples", columns=["image", "references", "caption"],
                                 data=[[wandb.Image(p), "\n".join(r["references"]), r["caption"]]
                                       for p, r in zip(pictures, records, strict=True)], step=self.global_step)
        figure = Figure(figsize=(3.2 * len(records), 3.6))
        for ax, picture, r in zip(figure.subplots(1, len(records), squeeze=False)[0], pictures, records, strict=True):
            ax.imshow(picture)
            ax.set_title(wrap(r["caption"]), fontsize=8)
            ax.set_xlabel(wrap("ref: " + r["references"][0]) if r["references"] else "", fontsize=7,
                          color="dimgray")
            ax.set_xticks([])
            ax.set_yticks([])
        when = f", epoch {self.current_epoch}" if stage == "val" else ""
        figure.suptitle(f"{stage} captions{when}")
        self.log_figure(figure, f"{stage}_samples")
        if self.decoder.attention is not None:
            with torch.no_grad():
                hypotheses, weights = self.greedy(batch["image"].to(self.device))
            figure = attention_figure(pictures, [[self.vocabulary.tokens[t] for t in h.tokens] for h in hypotheses],
                                      weights.float().cpu().numpy())
            figure.suptitle(f"attention per word, {stage}{when}")
            self.log_figure(figure, f"{stage}_attention")

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        return [{"index": i, "image": name, "caption": self.caption(h[0].tokens), "score": round(h[0].score, 4)}
                for i, name, h in zip(batch["index"].tolist(), batch["name"], self.beam(batch["image"]),
                                      strict=True)]
