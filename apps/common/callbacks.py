"""Callbacks every app can use: exact-resume random state, prediction files, figures, gradient through time."""

from __future__ import annotations

import csv
import json
import random
import time
from pathlib import Path

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.loggers import WandbLogger
from matplotlib.figure import Figure
from torch.utils.data import default_collate

from rnn_core import Recurrent


def run_dir(trainer: pl.Trainer) -> Path:
    """The folder of this run's files: the checkpoint folder, else the logger's folder, else default_root_dir."""
    checkpoint = trainer.checkpoint_callback
    if checkpoint is not None and getattr(checkpoint, "dirpath", None):
        return Path(checkpoint.dirpath)
    return Path(trainer.log_dir or trainer.default_root_dir)


def log_figure(trainer: pl.Trainer, figure: Figure, name: str) -> Path:
    """Saves ``figure`` as ``<run_dir>/<name>.png`` and logs it to every W&B logger of the trainer; returns the path."""
    path = run_dir(trainer) / f"{name}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=name, images=[str(path)], step=trainer.global_step)
    return path


def sample_batch(dataset, count: int, collate_fn=default_collate):
    """The first ``count`` items of a dataset as one batch, without a DataLoader (so no random draw is consumed)."""
    return collate_fn([dataset[i] for i in range(min(count, len(dataset)))])


class RNGState(Callback):
    """Keeps the torch, numpy and python random states in every checkpoint and restores them on resume, so that a
    run resumed from a checkpoint draws the same shuffles and dropout masks as one that was never interrupted."""

    def state_dict(self) -> dict:
        _, keys, pos, has_gauss, cached = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "python": random.getstate(),
            "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached)},
        }
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state_dict: dict) -> None:
        torch.set_rng_state(state_dict["torch"])
        random.setstate(state_dict["python"])
        numpy = state_dict["numpy"]
        np.random.set_state(("MT19937", numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"],
                             numpy["cached_gaussian"]))
        if "cuda" in state_dict and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state_dict["cuda"])


class PredictionWriter(BasePredictionWriter):
    """Writes the rows that ``predict_step`` returns (a list of dicts per batch) to one CSV or JSONL file, gathering
    the rows of every process first, and prints where the file is."""

    def __init__(self, path: str | None = None, sort_by: list[str] | None = None, format: str = "csv") -> None:
        """
        Args:
            path: output file, ``.csv`` or ``.jsonl``; None writes ``<default_root_dir>/predictions/<time>.<format>``.
            sort_by: columns the rows are sorted by (None: the first column of each row).
            format: ``csv`` or ``jsonl``, the format of the file when no path is given.
        """
        super().__init__(write_interval="epoch")
        if path is not None and not path.endswith((".csv", ".jsonl")):
            raise ValueError(f"prediction_writer.path must end in .csv or .jsonl, got {path!r}")
        if format not in ("csv", "jsonl"):
            raise ValueError(f"prediction_writer.format must be 'csv' or 'jsonl', got {format!r}")
        self.path = path
        self.sort_by = sort_by
        self.format = format

    def write_on_epoch_end(self, trainer, pl_module, predictions, batch_indices) -> None:
        rows = [row for batch in predictions for row in batch]
        if trainer.world_size > 1:
            gathered: list[list[dict]] = [[] for _ in range(trainer.world_size)]
            torch.distributed.all_gather_object(gathered, rows)
            rows = [row for part in gathered for row in part]
        if not trainer.is_global_zero or not rows:
            return
        keys = self.sort_by or [next(iter(rows[0]))]
        rows.sort(key=lambda row: tuple(row[k] for k in keys))
        default = Path(trainer.default_root_dir) / "predictions" / time.strftime(f"%Y%m%d-%H%M%S.{self.format}")
        path = Path(self.path or default)
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jsonl":
            path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        else:
            columns = list(dict.fromkeys(key for row in rows for key in row))
            with path.open("w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=columns)
                writer.writeheader()
                writer.writerows(rows)
        print(f"Predictions ({len(rows)} rows) written to {path}", flush=True)


class GradientThroughTime(Callback):
    """The lecture's vanishing-gradient picture: how much of the loss gradient reaches each input step.

    At the end of every n-th validation epoch it takes the first validation samples, runs the model's
    ``compute_loss(batch)`` and plots ||d loss / d x_t||, the gradient norm with respect to each step t of the input
    sequence that the model's first Recurrent reads (averaged over samples). It saves ``gradient_through_time.png``
    and ``.csv`` beside the checkpoints, logs the figure to W&B, and logs ``grad_first_over_last``, the ratio of the
    gradient reaching the first step to that reaching the last.
    """

    def __init__(self, every_n_epochs: int = 1, num_samples: int = 32) -> None:
        """
        Args:
            every_n_epochs: measure after every n-th validation epoch (0 turns the callback off).
            num_samples: validation samples averaged per measurement.
        """
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if (
            self.every_n_epochs < 1
            or trainer.state.fn != "fit"
            or trainer.sanity_checking
            or trainer.fast_dev_run
            or not trainer.is_global_zero
            or trainer.current_epoch % self.every_n_epochs
        ):
            return
        loader = trainer.val_dataloaders
        norms, cell = self.measure(pl_module, loader.dataset, loader.collate_fn)
        steps = np.arange(1, len(norms) + 1)
        path = run_dir(trainer) / "gradient_through_time.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savetxt(path, np.stack([steps, norms], 1), delimiter=",", header="step,grad_norm", comments="")
        figure = Figure(figsize=(6, 3.5))
        ax = figure.subplots()
        ax.semilogy(steps, norms, marker=".")
        ax.set(xlabel="input step t", ylabel="||d loss / d x_t||",
               title=f"gradient through time, {cell}, epoch {trainer.current_epoch}")
        ax.grid(True, which="both", alpha=0.3)
        log_figure(trainer, figure, "gradient_through_time")
        ratio = float(norms[0] / max(norms[-1], 1e-30))
        for logger in trainer.loggers:
            logger.log_metrics({"grad_first_over_last": ratio}, step=trainer.global_step)

    def measure(self, pl_module: pl.LightningModule, dataset, collate_fn=default_collate) -> tuple[np.ndarray, str]:
        """Gradient norm per input step of the first Recurrent (numpy (T,)) and the name of its cell."""
        recurrent = next((m for m in pl_module.modules() if isinstance(m, Recurrent)), None)
        if recurrent is None or not hasattr(pl_module, "compute_loss"):
            raise TypeError(f"{type(pl_module).__name__} needs a rnn_core.Recurrent and a compute_loss(batch) method "
                            "for GradientThroughTime")
        captured: list[torch.Tensor] = []

        def capture(module, args, kwargs):
            if captured:  # only the first call: later ones (a recursive rollout) read the model's own outputs
                return None
            x = args[0].detach().requires_grad_()
            captured.append(x)
            return (x, *args[1:]), kwargs

        batch = sample_batch(dataset, self.num_samples, collate_fn)
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        was_training = pl_module.training
        pl_module.eval()
        handle = recurrent.register_forward_pre_hook(capture, with_kwargs=True)
        try:
            with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
                loss = pl_module.compute_loss(batch)
                (grad,) = torch.autograd.grad(loss, captured[0])
        finally:
            handle.remove()
            pl_module.train(was_training)
        if not recurrent.batch_first:
            grad = grad.transpose(0, 1)
        return grad.norm(dim=-1).mean(0).double().cpu().numpy(), type(recurrent.cell).__name__
