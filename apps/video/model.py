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
import hashlib
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from torch import nn

from apps.common.backbone import backbone_optimizer, unfreeze_when_due
from apps.common.callbacks import log_figure, run_dir
from apps.common.metrics import gather_by_index
from apps.video.data import CLASS_NAMES_KEY
from rnn_core.encoders import FrameSequenceEncoder, ImageEncoder

HEADS = ("last", "mean_states", "mean")


class FeatureCache:
    """Per-frame features of a frozen backbone on disk, one file per video and frame size (frame index -> vector),
    filled as frames are first seen: once every frame has been through the CNN, an epoch only runs the recurrence.
    The folder is named by a fingerprint of the backbone's weights, so another backbone never reads these."""

    def __init__(self, folder: str | Path, backbone: nn.Module) -> None:
        digest = hashlib.sha1()
        for tensor in backbone.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.folder = Path(folder).expanduser() / f"features-{digest.hexdigest()[:16]}"
        self.memory: dict[str, dict[int, torch.Tensor]] = {}
        self.changed: set[str] = set()

    def _key(self, name: str, size: tuple[int, int]) -> str:
        return hashlib.sha1(f"{name}|{size[0]}x{size[1]}".encode()).hexdigest()

    def _frames_of(self, key: str) -> dict[int, torch.Tensor]:
        if key not in self.memory:
            path = self.folder / f"{key}.pt"
            self.memory[key] = torch.load(path, weights_only=True) if path.exists() else {}
        return self.memory[key]

    def features(self, names: list[str], indices: torch.Tensor, frames: torch.Tensor, compute) -> torch.Tensor:
        """Features (N, T, F) of clips ``frames`` (N, T, 3, H, W) of the videos ``names`` at frame ``indices``
        (N, T): cached ones read, the others computed with ``compute(frames (M, 1, 3, H, W))`` and kept."""
        size = tuple(frames.shape[-2:])
        stored = [self._frames_of(self._key(n, size)) for n in names]
        missing = [(i, t) for i, frames_of in enumerate(stored) for t, j in enumerate(indices[i].tolist())
                   if j not in frames_of]
        if missing:
            rows, steps = zip(*missing, strict=True)
            fresh = compute(frames[list(rows), list(steps)].unsqueeze(1))[:, 0].detach().cpu()
            for (i, t), vector in zip(missing, fresh, strict=True):
                stored[i][int(indices[i, t])] = vector.clone()
                self.changed.add(self._key(names[i], size))
        return torch.stack([torch.stack([stored[i][j] for j in indices[i].tolist()]) for i in range(len(names))])

    def flush(self) -> None:
        """Writes the files of videos that gained frames."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for key in self.changed:
            torch.save(self.memory[key], self.folder / f"{key}.pt")
        self.changed.clear()


class VideoModel(pl.LightningModule):
    """LRCN: ImageEncoder per frame, a recurrence (flat or conv) over frames, a linear classifier.

    The classifier is sized by the data's classes, known once the data is set up (or the checkpoint read), so the
    optimizer (Adam, with its own learning rate for the backbone) is set by model options, not by LightningCLI's
    top-level ``--optimizer``.
    """

    def __init__(
        self,
        backbone: str = "resnet18",
        weights: str | None = "DEFAULT",
        backbone_stages: int | None = None,
        finetune_from_epoch: int | None = None,
        backbone_lr: float = 1e-4,
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
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        plateau_patience: int = 0,
        class_names: list[str] | None = None,
    ) -> None:
        """
        Args:
            backbone: torchvision CNN run on every frame: resnet18/34/50, mobilenet_v3_small/large, ...
            weights: torchvision weights name (DEFAULT, IMAGENET1K_V1, ...; from the torch cache, else downloaded),
                or None for random initialisation.
            backbone_stages: keep the backbone's first N stages; None keeps all.
            finetune_from_epoch: train the backbone from this epoch on (0: from the start); None keeps it frozen.
            backbone_lr: Adam's learning rate of the backbone once it trains.
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
            lr: Adam's learning rate of the recurrence and classifier.
            weight_decay: Adam's weight decay.
            plateau_patience: halve the learning rates after this many epochs without a higher val_acc (0: never).
            class_names: the class names by id; None takes them from the data.
        """
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"unknown head {head!r}; expected one of {HEADS}")
        self.save_hyperparameters()
        image_encoder = ImageEncoder(backbone, weights=weights, trainable=finetune_from_epoch == 0,
                                     stages=backbone_stages)
        self.encoder = FrameSequenceEncoder(image_encoder, hidden_size, cell=cell, num_layers=num_layers,
                                            bidirectional=bidirectional, dropout=dropout if num_layers > 1 else 0.0,
                                            backend=backend, spatial_grid=spatial_grid,
                                            feature_norm=feature_norm, recurrence=recurrence,
                                            kernel_size=kernel_size)
        self.dropout = nn.Dropout(dropout)
        self.cache = None if feature_cache is None else FeatureCache(feature_cache, image_encoder.features)
        self.outputs: list[tuple[int, str, int, np.ndarray, float]] = []
        if class_names is not None:
            self.build(class_names)

    # ---------------------------------------------------------------- layers

    def build(self, class_names: list[str]) -> None:
        width = self.encoder.feature_size if self.hparams.head == "mean" else self.encoder.output_size
        self.classifier = nn.Linear(width, len(class_names))
        self.hparams.class_names = list(class_names)

    @property
    def class_names(self) -> list[str]:
        return self.hparams.class_names

    def setup(self, stage: str) -> None:
        names = self.trainer.datamodule.class_names
        if not hasattr(self, "classifier"):
            self.build(names)
        elif stage != "predict" and list(names) != self.class_names:
            raise ValueError(f"the model knows {len(self.class_names)} classes ({self.class_names[:4]} ...) but the "
                             f"data has {len(names)} ({list(names)[:4]} ...)")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CLASS_NAMES_KEY] = self.class_names

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if not hasattr(self, "classifier"):
            self.build(checkpoint.get(CLASS_NAMES_KEY) or checkpoint["hyper_parameters"]["class_names"])

    def configure_optimizers(self):
        return backbone_optimizer(self, self.encoder.image_encoder, monitor="val_acc")

    def on_train_epoch_start(self) -> None:
        unfreeze_when_due(self, self.encoder.image_encoder)

    # ---------------------------------------------------------------- forward

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
        loss = self.compute_loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["frames"].shape[0])
        return loss

    def on_train_epoch_end(self) -> None:
        if self.cache is not None:
            self.cache.flush()

    # ---------------------------------------------------------------- evaluation

    def _evaluate(self, batch: dict) -> None:
        log_probs = self(batch)
        losses = F.nll_loss(log_probs, batch["label"], reduction="none")
        for i, name, label, row, loss in zip(batch["index"].tolist(), batch["name"], batch["label"].tolist(),
                                             log_probs.exp().float().cpu().numpy(), losses.tolist(), strict=True):
            self.outputs.append((i, name, label, row, loss))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._evaluate(batch)

    def _finish_evaluation(self, prefix: str) -> None:
        rows = gather_by_index(self.trainer, self.outputs)
        self.outputs = []
        if not rows:
            return
        labels = np.array([r[2] for r in rows])
        probabilities = np.stack([r[3] for r in rows])
        ranked = np.argsort(-probabilities, axis=1)
        values = {f"{prefix}_loss": float(np.mean([r[4] for r in rows])),
                  f"{prefix}_acc": float(np.mean(ranked[:, 0] == labels)),
                  f"{prefix}_top5": float(np.mean((ranked[:, :5] == labels[:, None]).any(1)))}
        # every process computed the same values from the same gathered predictions: no further reduction
        for name, value in values.items():
            self.log(name, value, prog_bar=name != f"{prefix}_top5")
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            confusion = np.zeros((len(self.class_names),) * 2, dtype=np.int64)
            np.add.at(confusion, (labels, ranked[:, 0]), 1)
            title = f"{prefix}: accuracy {values[f'{prefix}_acc']:.3f}"
            if prefix == "val":
                title += f", epoch {self.current_epoch}"
            self.pictures = [log_figure(self.trainer, confusion_figure(confusion, self.class_names, title),
                                        f"{prefix}_confusion")]
            if prefix == "test":
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
        self.pictures.append(path)

    def on_validation_epoch_end(self) -> None:
        self._finish_evaluation("val")

    def on_test_epoch_end(self) -> None:
        self._finish_evaluation("test")

    def on_fit_end(self) -> None:
        if self.cache is not None:
            self.cache.flush()
        if not self.trainer.is_global_zero:
            return
        checkpoint = self.trainer.checkpoint_callback
        lines = [f"checkpoints: {run_dir(self.trainer)}"]
        if checkpoint is not None and checkpoint.best_model_path:
            score = "" if checkpoint.best_model_score is None else \
                f" ({checkpoint.monitor} {float(checkpoint.best_model_score):.3f})"
            lines.append(f"best checkpoint: {checkpoint.best_model_path}{score}")
        lines += [f"pictures: {p}" for p in getattr(self, "pictures", [])]
        print("\n".join(lines), flush=True)

    # ---------------------------------------------------------------- predict

    def predict_step(self, batch: dict, batch_idx: int) -> list[dict]:
        probabilities = self(batch).exp().float().cpu().numpy()
        rows = []
        for i, name, p in zip(batch["index"].tolist(), batch["name"], probabilities, strict=True):
            best = int(p.argmax())
            row = {"index": i, "video": name, "class": self.class_names[best], "probability": round(float(p[best]), 4)}
            row.update({f"p_{c}": round(float(v), 4) for c, v in zip(self.class_names, p, strict=True)})
            rows.append(row)
        return rows


def confusion_figure(confusion: np.ndarray, class_names: list[str], title: str) -> Figure:
    """The confusion matrix, each row (true class) normalised to 1, counts written in when there is room."""
    n = len(class_names)
    side = min(4 + 0.35 * n, 30)
    figure = Figure(figsize=(side, side))
    ax = figure.subplots()
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    font = max(4, 9 - n // 15)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for (r, c), count in np.ndenumerate(confusion):
            if count:
                ax.text(c, r, str(count), ha="center", va="center", fontsize=7,
                        color="white" if rates[r, c] > 0.5 else "black")
    ax.set_title(title)
    return figure
