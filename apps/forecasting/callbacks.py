"""The forecasting app's sample predictions: a figure of history, truth, forecast and quantile band."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from matplotlib.figure import Figure
from torch.utils.data import default_collate

from apps.common.callbacks import log_figure


class ForecastFigure(Callback):
    """After every validation epoch, plots a few validation windows (history, truth, forecast and the band between
    the lowest and highest quantile) as ``forecast.png`` beside the checkpoints, and logs it to W&B."""

    def __init__(self, num_windows: int = 3, target: int = -1) -> None:
        """
        Args:
            num_windows: windows plotted, spread evenly over the validation set (0 turns the figure off).
            target: which target channel to plot (index into the targets; -1 is the last).
        """
        self.num_windows = num_windows
        self.target = target

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.num_windows < 1 or trainer.sanity_checking or trainer.fast_dev_run or not trainer.is_global_zero:
            return
        dataset = trainer.val_dataloaders.dataset
        picks = np.unique(np.linspace(0, len(dataset) - 1, self.num_windows).astype(int))
        batch = pl_module.transfer_batch_to_device(default_collate([dataset[int(i)] for i in picks]),
                                                   pl_module.device, 0)
        was_training = pl_module.training
        pl_module.eval()
        with torch.no_grad():
            pred = pl_module.forecast(batch)[:, :, self.target].cpu().numpy()
        pl_module.train(was_training)
        c = range(pl_module.hparams.num_targets)[self.target]
        mean, std = pl_module.target_mean[c].item(), pl_module.target_std[c].item()
        history = batch["x"][:, :, c].cpu().numpy() * std + mean
        truth = batch["y"][:, :, c].cpu().numpy() * std + mean
        L, H = history.shape[1], truth.shape[1]
        figure = Figure(figsize=(9, 2.4 * len(picks)))
        for k, ax in enumerate(np.atleast_1d(figure.subplots(len(picks), 1, squeeze=False)[:, 0])):
            ax.plot(np.arange(-L + 1, 1), history[k], color="0.4", label="history")
            ax.plot(np.arange(1, H + 1), truth[k], color="black", label="truth")
            ax.plot(np.arange(1, H + 1), pred[k, :, pl_module.point_index], color="C1", label="forecast")
            if pred.shape[-1] > 1:
                levels = pl_module.quantile_levels
                ax.fill_between(np.arange(1, H + 1), pred[k, :, 0], pred[k, :, -1], color="C1", alpha=0.25,
                                label=f"q{levels[0]:g}-q{levels[-1]:g}")
            ax.set_title(f"{pl_module.target_names[c]}, validation window {int(picks[k])}", fontsize=9)
        figure.axes[0].legend(fontsize=8, loc="upper left")
        figure.suptitle(f"epoch {trainer.current_epoch}")
        log_figure(trainer, figure, "forecast")
