"""Video classification, LRCN (Donahue et al. 2015): frames -> a 2-D CNN per frame -> a recurrence -> classifier.

The recurrence reads each frame's grid flattened (``recurrence="flat"``, rnn_core Recurrent, LRCN's) or keeps a
state per grid cell with convolutional gates (``"conv"``, rnn_core ConvRecurrent, ConvLSTM/ConvGRU).

The classifier reads the last recurrent state (``head="last"``) or the mean of the states (``"mean_states"``);
``head="mean"`` drops the recurrence and averages the frame features: the baseline that shows what the order of
the frames adds. In test and predict each video gives K clips; their class probabilities are averaged.

Metrics, over the whole evaluation set exactly once also under DDP (predictions are gathered and repeats dropped by
clip index): ``val_loss``/``test_loss``, ``*_acc`` (top-1, 0-1) and ``*_top5``; the test also prints and writes the
accuracy of every class and draws the confusion matrix (``test_confusion.png``, and to W&B).
"""

from __future__ import annotations

import csv

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from apps.common.backbone import BackboneModule
from apps.common.callbacks import run_dir
from apps.video.features import FeatureCache
from apps.video.pictures import confusion_figure
from rnn_core.encoders import FrameSequenceEncoder

HEADS = ("last", "mean_states", "mean")


class VideoModel(BackboneModule):
    """LRCN: ImageEncoder per frame, a recurrence (flat or conv) over frames, a linear classifier sized by the
    data's classes."""

    monitor, mode = "val_acc", "max"

    def __init__(
        self,
        spatial_grid: int = 1,
        feature_norm: bool = True,
        feature_cache: str | None = None,
        recurrence: str = "flat",
        cell: str = "lstm",
        kernel_size: int = 3,
        backend: str = "auto",
        hidden_size: int = 256,
        num_layers: int = 1,
        bidirectional: bool = False,
        head: str = "last",
        dropout: float = 0.5,
        label_smoothing: float = 0.0,
        **kwargs,
    ) -> None:
        """
        Args:
            spatial_grid: each frame's feature grid averaged to this many cells a side, then flattened (1: global
                average pooling, LRCN's; more keeps where things are in the frame).
            feature_norm: batch-normalise each frame feature before the recurrence (or the mean): pooled CNN
                features are a large mean with small variations, which a recurrence fed them raw learns slowly.
            feature_cache: folder where a frozen backbone's per-frame features are kept, so each frame runs through
                the CNN once (None: no cache; ignored while the backbone trains).
            recurrence: "flat" (each frame's grid flattened into one vector, rnn_core Recurrent) or "conv" (a state
                per grid cell with convolutional gates, rnn_core ConvRecurrent: motion anywhere in the frame).
            cell: recurrent cell: rnn, lstm, gru, peephole_lstm or coupled_lstm.
            kernel_size: side of the conv recurrence's kernels (odd).
            backend: rnn_core Recurrent backend (flat recurrence): auto, torch, fused or loop.
            hidden_size: recurrent state width (conv: channels per grid cell).
            num_layers: stacked recurrent layers.
            bidirectional: read the frames both ways.
            head: classify the last state ("last"), the mean of the states ("mean_states"), or the mean of the frame
                features without any recurrence ("mean", the baseline).
            dropout: before the classifier (and between recurrent layers).
            label_smoothing: label smoothing of the training loss.
        """
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
        super().__init__(**kwargs)
        self.encoder = FrameSequenceEncoder(self.image_encoder, hidden_size, cell=cell, num_layers=num_layers,
                                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
                                            backend=backend, spatial_grid=spatial_grid,
                                            feature_norm=feature_norm, recurrence=recurrence,
                                            kernel_size=kernel_size)
        self.dropout = nn.Dropout(dropout)
        self.cache = None if feature_cache is None else FeatureCache(feature_cache, self.image_encoder.features,
                                                                     f"grid {spatial_grid}")

    def build(self, artefacts: dict) -> None:
        width = self.encoder.feature_size if self.hparams.head == "mean" else self.encoder.output_size
        self.classifier = nn.Linear(width, len(artefacts["class_names"]))

    @property
    def class_names(self) -> list[str]:
        return self.artefacts["class_names"]

    def frame_features(self, batch: dict) -> torch.Tensor:
        """Features (B * K, T, F) of every frame of the batch's K clips per video."""
        frames = batch["frames"].flatten(0, 1)  # (B * K, T, 3, H, W)
        image_encoder = self.encoder.image_encoder
        with torch.set_grad_enabled(image_encoder.trainable and torch.is_grad_enabled()):
            if self.cache is None or image_encoder.trainable:
                return self.encoder.frame_features(frames)
            K = batch["frames"].shape[1]
            names = [name for name in batch["name"] for _ in range(K)]
            return self.cache.features(names, batch["frame_index"].flatten(0, 1), frames,
                                       self.encoder.frame_features).to(frames.device)

    def forward(self, batch: dict) -> torch.Tensor:
        """Log-probabilities (B, C): each video's K clips' class probabilities averaged."""
        B, K = batch["frames"].shape[:2]
        features = self.frame_features(batch)
        if self.hparams.head == "mean":
            summary = self.encoder.normalise(features).mean(1)
        else:
            out, last = self.encoder.recur(features)
            summary = last if self.hparams.head == "last" else out.mean(1)
        logits = self.classifier(self.dropout(summary)).view(B, K, -1)
        if K == 1:
            return F.log_softmax(logits[:, 0], dim=-1)
        return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=1) - np.log(K)

    def compute_loss(self, batch: dict) -> torch.Tensor:
        """Cross-entropy of the clip-averaged probabilities (log_softmax leaves log-probabilities as they are)."""
        return F.cross_entropy(self(batch), batch["label"], label_smoothing=self.hparams.label_smoothing)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        # no video of the batch decoded: a zero-gradient step, which every DDP process must take together
        if not len(batch["index"]):
            return sum(p.sum() for p in self.parameters() if p.requires_grad) * 0.0
        return super().training_step(batch, batch_idx)

    def on_train_epoch_end(self) -> None:
        if self.cache is not None:
            self.cache.flush()

    def evaluate(self, batch: dict, stage: str) -> list[dict]:
        if not len(batch["index"]):  # no video of the batch decoded
            return []
        log_probs = self(batch)
        losses = F.nll_loss(log_probs, batch["label"], reduction="none").tolist()
        return [{"index": i, "video": name, "label": label, "probabilities": p, "loss": loss}
                for i, name, label, p, loss in zip(batch["index"].tolist(), batch["name"], batch["label"].tolist(),
                                                   log_probs.exp().float().cpu().numpy(), losses, strict=True)]

    def metrics(self, records: list[dict], stage: str) -> dict[str, float]:
        labels = np.array([r["label"] for r in records])
        ranked = np.argsort(-np.stack([r["probabilities"] for r in records]), axis=1)
        return {f"{stage}_loss": float(np.mean([r["loss"] for r in records])),
                f"{stage}_acc": float(np.mean(ranked[:, 0] == labels)),
                f"{stage}_top5": float(np.mean((ranked[:, :5] == labels[:, None]).any(1)))}

    def pictures(self, records: list[dict], stage: str) -> None:
        labels = np.array([r["label"] for r in records])
        predicted = np.stack([r["probabilities"] for r in records]).argmax(1)
        confusion = np.zeros((len(self.class_names),) * 2, dtype=np.int64)
        np.add.at(confusion, (labels, predicted), 1)
        title = f"{stage}: accuracy {np.mean(labels == predicted):.3f}"
        if stage == "val":
            title += f", epoch {self.current_epoch}"
        self.log_figure(confusion_figure(confusion, self.class_names, title), f"{stage}_confusion")
        if stage == "test":
            self._report_classes(confusion)

    def _report_classes(self, confusion: np.ndarray) -> None:
        """Prints each class's accuracy and writes it to ``test_per_class.csv`` beside the pictures."""
        totals = confusion.sum(1)
        path = run_dir(self.trainer) / "test_per_class.csv"
        with path.open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["class", "videos", "correct", "accuracy"])
            for k, name in enumerate(self.class_names):
                accuracy = confusion[k, k] / totals[k] if totals[k] else float("nan")
                writer.writerow([name, int(totals[k]), int(confusion[k, k]), f"{accuracy:.4f}"])
        width = max(len(n) for n in self.class_names)
        lines = [f"{'class':<{width}}  videos  accuracy"]
        lines += [f"{name:<{width}}  {int(totals[k]):>6}  {confusion[k, k] / max(totals[k], 1):>8.3f}"
                  for k, name in enumerate(self.class_names)]
        print("\n".join([*lines, f"per-class accuracy: {path}"]), flush=True)
        self.picture_paths.append(path)

    def on_fit_end(self) -> None:
        if self.cache is not None:
            self.cache.flush()
        super().on_fit_end()

    # ---------------------------------------------------------------- predict

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        if not len(batch["index"]):  # no video of the batch decoded
            return []
        probabilities = self(batch).exp().float().cpu().numpy()
        rows = []
        for i, name, p in zip(batch["index"].tolist(), batch["name"], probabilities, strict=True):
            best = int(p.argmax())
            row = {"index": i, "video": name, "class": self.class_names[best], "probability": round(float(p[best]), 4)}
            row.update({f"p_{c}": round(float(v), 4) for c, v in zip(self.class_names, p, strict=True)})
            rows.append(row)
        return rows
