"""Image captioning: ImageEncoder (a torchvision CNN as a grid of feature vectors) -> ShowAttendTellDecoder.

Show, Attend and Tell (soft attention, gating scalar, doubly stochastic attention regularisation) by default;
``--model.attention none`` gives Show and Tell (the image as the first input, no attention).

Metrics, over the whole evaluation set exactly once also under DDP (captions are gathered and repeats dropped by
image index): ``val_loss``/``test_loss`` (cross-entropy per word, teacher forced), ``*_bleu1`` .. ``*_bleu4``
(sacreBLEU corpus BLEU with all references, 0-100), ``*_cider`` (CIDEr-D) and ``test_meteor`` (when Java and
pycocoevalcap are there). Validation decodes greedily, test and predict with beam search; neither uses the
references as inputs (no teacher forcing).
"""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info
from matplotlib.figure import Figure

from apps.captioning import metrics
from apps.captioning.data import BOS, EOS, IMAGENET_MEAN, IMAGENET_STD, PAD, VOCABULARY_KEY, Vocabulary, collate
from apps.common.backbone import backbone_optimizer, unfreeze_when_due
from apps.common.callbacks import log_figure, run_dir
from apps.common.metrics import SampleSums, gather_by_index, token_nll_sums
from rnn_core.decoders import ShowAttendTellDecoder, attention_penalty
from rnn_core.encoders import ImageEncoder
from rnn_core.search import beam_search, greedy_search


class CaptioningModel(pl.LightningModule):
    """CNN encoder + recurrent decoder with soft attention.

    The decoder is sized by the vocabulary, which exists only once the data is set up (or the checkpoint read), so
    the optimizer (Adam, with its own learning rate for the backbone) is set by model options, not by LightningCLI's
    top-level ``--optimizer``, which needs the parameters when the command line is parsed.
    """

    def __init__(
        self,
        backbone: str = "resnet50",
        weights: str | None = "DEFAULT",
        backbone_stages: int | None = None,
        finetune_from_epoch: int | None = None,
        backbone_lr: float = 1e-4,
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
        num_tokens: int | None = None,
        lr: float = 4e-4,
        weight_decay: float = 0.0,
        plateau_patience: int = 0,
    ) -> None:
        """
        Args:
            backbone: torchvision CNN: resnet18/34/50/101/152, mobilenet_v3_small/large, efficientnet_b0, ...
            weights: torchvision weights name (DEFAULT, IMAGENET1K_V1, ...; from the torch cache, else downloaded),
                or None for random initialisation.
            backbone_stages: keep the backbone's first N stages (a finer grid); None keeps all.
            finetune_from_epoch: train the backbone from this epoch on (0: from the start); None keeps it frozen.
            backbone_lr: Adam's learning rate of the backbone once it trains.
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
            num_samples: validation images shown with their captions and attention maps.
            num_tokens: size of the vocabulary; None takes it from the data.
            lr: Adam's learning rate of the decoder.
            weight_decay: Adam's weight decay.
            plateau_patience: halve the learning rates after this many epochs without a higher val_bleu4 (0: never).
        """
        super().__init__()
        self.save_hyperparameters()
        self.encoder = ImageEncoder(backbone, weights=weights, trainable=finetune_from_epoch == 0,
                                    stages=backbone_stages)
        self.vocabulary: Vocabulary | None = None
        self.eval_sums = SampleSums()
        self.outputs: list[tuple[int, str, list[str], str]] = []
        self.meteor_note_shown = False
        if num_tokens is not None:
            self.build(num_tokens)

    # ---------------------------------------------------------------- layers

    def build(self, num_tokens: int) -> None:
        hp = self.hparams
        self.decoder = ShowAttendTellDecoder(
            num_tokens, hp.embedding_size, hp.hidden_size, self.encoder.output_size, cell=hp.cell,
            attention=hp.attention, attention_size=hp.attention_size, gate=hp.gate, dropout=hp.dropout,
            tie_embeddings=hp.tie_embeddings, padding_idx=PAD, backend=hp.backend,
        )
        self.hparams.num_tokens = num_tokens

    def setup(self, stage: str) -> None:
        vocabulary = self.trainer.datamodule.vocabulary
        if self.vocabulary is None:
            self.vocabulary = vocabulary
        if not hasattr(self, "decoder"):
            self.build(len(vocabulary))
        elif self.hparams.num_tokens != len(vocabulary):
            raise ValueError(f"the model has a vocabulary of {self.hparams.num_tokens} words but the data's has "
                             f"{len(vocabulary)}")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[VOCABULARY_KEY] = self.vocabulary.tokens

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.vocabulary is None and VOCABULARY_KEY in checkpoint:
            self.vocabulary = Vocabulary(checkpoint[VOCABULARY_KEY])
        if not hasattr(self, "decoder"):
            self.build(checkpoint["hyper_parameters"]["num_tokens"])

    def configure_optimizers(self):
        return backbone_optimizer(self, self.encoder, monitor="val_bleu4")

    def on_train_epoch_start(self) -> None:
        unfreeze_when_due(self, self.encoder)

    # ---------------------------------------------------------------- training

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, object]:
        """The image grid (B, L, C) and the decoder's start state."""
        with torch.set_grad_enabled(self.encoder.trainable and torch.is_grad_enabled()):
            memory = self.encoder(images)
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

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["image"].shape[0])
        return loss

    # ---------------------------------------------------------------- decoding

    def greedy(self, images: torch.Tensor, encoded=None):
        memory, start = encoded or self.encode(images)
        return greedy_search(self.decoder.stepper(memory), start, images.shape[0], BOS, EOS,
                             self.hparams.max_length, device=self.device)

    def beam(self, images: torch.Tensor, encoded=None):
        memory, start = encoded or self.encode(images)
        K = self.hparams.beam_size
        return beam_search(
            self.decoder.stepper(memory, beams=K), self.decoder.reorder, self.decoder.repeat(start, K),
            images.shape[0], BOS, EOS, beam_size=K, max_length=self.hparams.max_length,
            alpha=self.hparams.length_penalty, device=self.device,
        )

    def caption(self, tokens: list[int]) -> str:
        return self.vocabulary.decode(t for t in tokens if t != EOS)

    # ---------------------------------------------------------------- evaluation

    def _evaluate(self, batch: dict, search: str) -> None:
        encoded = self.encode(batch["image"])  # once, for the loss and the decoding
        memory, start = encoded
        logits, _ = self.decoder(batch["target_in"], start, memory)
        self.eval_sums.update(batch["index"], token_nll_sums(logits, batch["target_out"], PAD))
        if search == "greedy":
            tokens = [h.tokens for h in self.greedy(batch["image"], encoded)[0]]
        else:
            tokens = [h[0].tokens for h in self.beam(batch["image"], encoded)]
        for i, name, refs, hyp in zip(batch["index"].tolist(), batch["name"], batch["references"], tokens,
                                      strict=True):
            self.outputs.append((i, name, refs, self.caption(hyp)))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "greedy")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch, "beam")

    def _finish_evaluation(self, prefix: str) -> None:
        (nll, words), count = self.eval_sums.compute()
        self.eval_sums.reset()
        rows = gather_by_index(self.trainer, self.outputs)
        self.outputs = []
        if count != len(rows):
            raise RuntimeError(f"{prefix}: {count} images scored but {len(rows)} captioned")
        hypotheses, references = [r[3] for r in rows], [r[2] for r in rows]
        values = {f"{prefix}_loss": float(nll / words)}
        values.update({f"{prefix}_bleu{n}": s for n, s in metrics.bleu_scores(hypotheses, references).items()})
        values[f"{prefix}_cider"] = metrics.cider_d(hypotheses, references)
        if prefix == "test" and self.hparams.meteor:
            why_not = metrics.meteor_available()
            if why_not is None:
                values["test_meteor"] = metrics.meteor(hypotheses, references) if self.trainer.is_global_zero else 0.0
                # one process ran Java; the others take its value
                values["test_meteor"] = float(self.trainer.strategy.broadcast(values["test_meteor"], src=0))
            elif not self.meteor_note_shown:
                rank_zero_info(why_not)
                self.meteor_note_shown = True
        # every process computed the same values from the same gathered captions: no further reduction
        for name, value in values.items():
            self.log(name, value, prog_bar=name in (f"{prefix}_bleu4", f"{prefix}_loss"))
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self._log_samples(prefix, rows[: self.hparams.num_samples])

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    # ---------------------------------------------------------------- pictures

    def _log_samples(self, prefix: str, rows) -> None:
        """A W&B table of image, references and caption; PNGs of the images with their captions and of each word's
        attention over the image (greedy decoding)."""
        if not rows:
            return
        dataset = self.trainer.datamodule.splits[prefix]
        batch = collate([dataset[r[0]] for r in rows])
        pictures = (batch["image"] * torch.tensor(IMAGENET_STD).view(3, 1, 1)
                    + torch.tensor(IMAGENET_MEAN).view(3, 1, 1)).clamp(0, 1).permute(0, 2, 3, 1).numpy()
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                import wandb

                logger.log_table(key=f"{prefix}_samples", columns=["image", "references", "caption"],
                                 data=[[wandb.Image(p), "\n".join(r[2]), r[3]] for p, r in zip(pictures, rows,
                                                                                                 strict=True)],
                                 step=self.global_step)
        figure = Figure(figsize=(3.2 * len(rows), 3.6))
        for ax, picture, row in zip(figure.subplots(1, len(rows), squeeze=False)[0], pictures, rows, strict=True):
            ax.imshow(picture)
            ax.set_title(_wrap(row[3]), fontsize=8)
            ax.set_xlabel(_wrap("ref: " + row[2][0]) if row[2] else "", fontsize=7, color="dimgray")
            ax.set_xticks([])
            ax.set_yticks([])
        when = f", epoch {self.current_epoch}" if prefix == "val" else ""
        figure.suptitle(f"{prefix} captions{when}")
        self.sample_paths = [log_figure(self.trainer, figure, f"{prefix}_samples")]
        if self.decoder.attention is not None:
            with torch.no_grad():
                hypotheses, weights = self.greedy(batch["image"].to(self.device))
            figure = attention_figure(pictures, [[self.vocabulary.tokens[t] for t in h.tokens] for h in hypotheses],
                                      weights.float().cpu().numpy())
            figure.suptitle(f"attention per word, {prefix}{when}")
            self.sample_paths.append(log_figure(self.trainer, figure, f"{prefix}_attention"))

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        checkpoint = self.trainer.checkpoint_callback
        lines = [f"checkpoints: {run_dir(self.trainer)}"]
        if checkpoint is not None and checkpoint.best_model_path:
            score = "" if checkpoint.best_model_score is None else f" ({checkpoint.monitor} " \
                f"{float(checkpoint.best_model_score):.2f})"
            lines.append(f"best checkpoint: {checkpoint.best_model_path}{score}")
            lines.append(f"test it: python -m apps.captioning test --ckpt_path {checkpoint.best_model_path}")
        lines += [f"pictures: {p}" for p in getattr(self, "sample_paths", [])]
        print("\n".join(lines), flush=True)

    def on_test_end(self) -> None:
        if self.trainer.is_global_zero:
            print("\n".join(f"pictures: {p}" for p in getattr(self, "sample_paths", [])), flush=True)

    # ---------------------------------------------------------------- predict

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        return [{"index": i, "image": name, "caption": self.caption(h[0].tokens), "score": round(h[0].score, 4)}
                for i, name, h in zip(batch["index"].tolist(), batch["name"], self.beam(batch["image"]),
                                      strict=True)]


def _wrap(text: str, width: int = 34) -> str:
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def attention_figure(pictures: np.ndarray, captions: list[list[str]], weights: np.ndarray) -> Figure:
    """One row per image: the image, then each generated word with its attention over the grid laid on the image."""
    side = round(weights.shape[-1] ** 0.5)
    columns = 1 + max(len(c) for c in captions)
    figure = Figure(figsize=(1.6 * columns, 1.8 * len(captions)))
    axes = figure.subplots(len(captions), columns, squeeze=False)
    for row, (picture, caption) in enumerate(zip(pictures, captions, strict=True)):
        H, W = picture.shape[:2]
        axes[row, 0].imshow(picture)
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0 or col > len(caption):
                ax.axis("off") if col else None
                continue
            ax.imshow(picture)
            grid = weights[row, col - 1].reshape(side, -1)
            ax.imshow(grid, cmap="magma", alpha=0.6, extent=(0, W, H, 0), interpolation="bilinear")
            ax.set_title(caption[col - 1], fontsize=8)
    return figure
