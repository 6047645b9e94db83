"""The app base: a LightningModule that owns what every app repeats, so an app's model says only what is its own.

An app subclasses ``AppModule`` and writes:

- ``build(artefacts)``: the layers whose sizes come from the data (a vocabulary, classes, columns);
- ``compute_loss(batch)``: the training loss (also what the gradient-through-time picture differentiates);
- ``evaluate(batch, stage)``: one record (a dict with the sample's ``index``) per evaluated sample;
- ``metrics(records, stage)``: the epoch's metrics from every process's records, each sample once;
- optionally ``pictures(records, stage)`` and ``predict_step``.

The base builds the network once the data's artefacts are known (from the data module, or from a checkpoint), keeps
the artefacts in every checkpoint, gathers evaluation records across processes, sets up Adam with an optional
backbone learning rate and schedule, and prints where a run's files are when it ends.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from matplotlib.figure import Figure

from apps.common.artefacts import ARTEFACTS_KEY, WRITER_KEY, check_artefacts
from apps.common.callbacks import log_figure, run_dir
from apps.common.metrics import gather_by_index


class AppModule(pl.LightningModule):
    """Base of every app's model; see the module docstring. An app's ``__init__`` takes ``**kwargs`` and passes them
    here, so the options below are every app's (``--model.lr`` ...) and documented once."""

    #: the metric that chooses the best checkpoint and drives the plateau schedule, and whether lower is better
    monitor: str = "val_loss"
    mode: str = "min"
    #: options chosen when evaluating (beam size, ...): kept out of the checkpoint so that command-line values win
    evaluation_options: tuple[str, ...] = ()

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.0, plateau_patience: int = 0,
                 lr_decay: float = 1.0) -> None:
        """
        Args:
            lr: Adam's learning rate.
            weight_decay: Adam's weight decay.
            plateau_patience: halve the learning rates after this many epochs without a better monitored metric
                (0: never).
            lr_decay: multiply the learning rates by this after every epoch (1: constant).
        """
        super().__init__()
        self.save_hyperparameters(ignore=list(self.evaluation_options))
        self.artefacts: dict | None = None
        self.records: list[dict] = []
        self.picture_paths: list[Path] = []

    # ------------------------------------------------------------------ what an app writes

    def build(self, artefacts: dict) -> None:
        """Creates the layers whose sizes depend on the data's ``artefacts``."""

    def compute_loss(self, batch) -> torch.Tensor:
        raise NotImplementedError

    def evaluate(self, batch, stage: str) -> list[dict]:
        """One record per sample of a validation or test batch, each with the sample's ``index``."""
        raise NotImplementedError

    def metrics(self, records: list[dict], stage: str) -> dict[str, float]:
        """The metrics of an evaluation epoch from the records of every sample (once each, in index order)."""
        raise NotImplementedError

    def pictures(self, records: list[dict], stage: str) -> None:
        """Draws sample pictures (on the first process, outside the sanity check); see ``log_figure``."""

    # ------------------------------------------------------------------ artefacts and building

    def adopt(self, artefacts: dict) -> None:
        """Takes the artefacts the model is trained with (from the data, or a checkpoint) and builds on them."""
        self.artefacts = dict(artefacts)
        self.build(self.artefacts)

    def setup(self, stage: str) -> None:
        data = self.trainer.datamodule
        if data is None:
            return
        artefacts = data.artefacts()
        if self.artefacts is None:
            self.adopt(artefacts)
        else:
            check_artefacts(self.artefacts, artefacts, "the model", "the data")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[ARTEFACTS_KEY] = self.artefacts
        checkpoint[WRITER_KEY] = f"{type(self).__module__}.{type(self).__qualname__}"

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self.artefacts is None:  # Model.load_from_checkpoint outside a Trainer: the data never set it
            self.adopt(checkpoint[ARTEFACTS_KEY])

    # ------------------------------------------------------------------ optimiser and schedule

    def configure_optimizers(self):
        hp = self.hparams
        optimizer = torch.optim.Adam(self.parameter_groups(), weight_decay=hp.weight_decay)
        if hp.plateau_patience > 0:
            scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=self.mode, factor=0.5,
                                                                   patience=hp.plateau_patience)
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": self.monitor}}
        if hp.lr_decay != 1.0:
            return {"optimizer": optimizer, "lr_scheduler": torch.optim.lr_scheduler.ExponentialLR(optimizer,
                                                                                                    hp.lr_decay)}
        return optimizer

    def parameter_groups(self) -> list[dict]:
        """Adam's parameter groups: every parameter at ``lr``."""
        return [{"params": list(self.parameters()), "lr": self.hparams.lr}]

    # ------------------------------------------------------------------ training and evaluation

    def batch_size(self, batch) -> int:
        return len(batch["index"])

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.compute_loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=self.batch_size(batch))
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        self.records += self.evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> None:
        self.records += self.evaluate(batch, "test")

    def _finish(self, stage: str) -> None:
        records = gather_by_index(self.trainer, self.records)
        self.records = []
        if not records:
            return
        values = self.metrics(records, stage)
        # every process computed the same values from the same gathered records: no further reduction
        monitor = getattr(self.trainer.checkpoint_callback, "monitor", None) or self.monitor
        shown = {f"{stage}_loss", monitor.replace("val_", f"{stage}_", 1)}
        for name, value in values.items():
            self.log(name, float(value), prog_bar=name in shown)
        if self.trainer.is_global_zero and not self.trainer.sanity_checking:
            self.pictures(records, stage)

    def on_validation_epoch_end(self) -> None:
        self._finish("val")

    def on_test_epoch_end(self) -> None:
        self._finish("test")

    # ------------------------------------------------------------------ pictures and the summary

    def log_figure(self, figure: Figure, name: str) -> Path:
        """Saves ``figure`` beside the checkpoints as ``<name>.png`` (and to W&B), listed in the end summary."""
        path = log_figure(self.trainer, figure, name)
        if path not in self.picture_paths:
            self.picture_paths.append(path)
        return path

    def _print_pictures(self) -> list[str]:
        return [f"pictures: {p}" for p in self.picture_paths]

    def on_fit_end(self) -> None:
        if not self.trainer.is_global_zero:
            return
        lines = [f"checkpoints: {run_dir(self.trainer)}"]
        checkpoint = self.trainer.checkpoint_callback
        if checkpoint is not None and checkpoint.best_model_path:
            score = checkpoint.best_model_score
            lines.append(f"best checkpoint: {checkpoint.best_model_path}"
                         + ("" if score is None else f" ({checkpoint.monitor} {float(score):.4g})"))
            app = type(self).__module__.split(".")[1]
            lines.append(f"test it: python -m apps.{app} test --ckpt_path {checkpoint.best_model_path}")
        print("\n".join(lines + self._print_pictures()), flush=True)

    def on_test_end(self) -> None:
        if self.trainer.is_global_zero and self.picture_paths:
            print("\n".join(self._print_pictures()), flush=True)
