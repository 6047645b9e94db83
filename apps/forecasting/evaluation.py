"""The forecasting losses and metrics (sums per window, means per epoch), and the rows of the prediction file."""

from __future__ import annotations

import pandas as pd
import torch
from torch import Tensor

#: columns of the per-window sums kept for the metrics
SUMS = ("loss", "se", "ae", "ae_original", "se_original", "smape", "scaled_ae")


def elementwise_loss(pred: Tensor, y: Tensor, loss: str, quantiles: Tensor, point_index: int) -> Tensor:
    """Loss per (B, H, C_t) element of the forecast ``pred (B, H, C_t, Q)``: the pinball loss averaged over the
    quantiles, or the squared ("mse") or absolute ("mae") error of the point forecast."""
    if loss == "quantile":
        diff = y.unsqueeze(-1) - pred
        return torch.maximum(quantiles * diff, (quantiles - 1) * diff).mean(-1)
    point = pred[..., point_index]
    return (point - y) ** 2 if loss == "mse" else (point - y).abs()


def window_sums(index: Tensor, loss: Tensor, error: Tensor, y: Tensor, mean: Tensor, std: Tensor,
                mase_scale: Tensor) -> list[dict]:
    """Per window (numbered by ``index``), the sum over its steps and targets of every metric in SUMS, from the
    elementwise ``loss``, the point forecast's ``error`` and the truth ``y`` (all (B, H, C_t), standardised) and the
    targets' scales."""
    orig_y = y * std + mean
    orig_error = error * std
    denominator = orig_y.abs() + (orig_y + orig_error).abs()
    smape = torch.where(denominator > 0, 200 * orig_error.abs() / denominator.clamp_min(1e-12), 0.0)
    per_element = [loss, error**2, error.abs(), orig_error.abs(), orig_error**2, smape, orig_error.abs() / mase_scale]
    sums = torch.stack([t.double().sum((1, 2)) for t in per_element], 1).cpu().tolist()
    return [{"index": i, **dict(zip(SUMS, row, strict=True))} for i, row in zip(index.tolist(), sums, strict=True)]


def epoch_metrics(records: list[dict], elements: int, stage: str) -> dict[str, float]:
    """The epoch's metrics from every window's sums; ``elements``: the steps times targets of all windows."""
    mean = {name: sum(r[name] for r in records) / elements for name in SUMS}
    return {
        f"{stage}_loss": mean["loss"],
        f"{stage}_mse": mean["se"],
        f"{stage}_mae": mean["ae"],
        f"{stage}_mae_original": mean["ae_original"],
        f"{stage}_rmse_original": mean["se_original"] ** 0.5,
        f"{stage}_smape": mean["smape"],
        f"{stage}_mase": mean["scaled_ae"],
    }


def prediction_rows(batch: dict[str, Tensor], pred: Tensor, truth: Tensor, target_names: list[str],
                    quantile_levels: list[float], point_index: int) -> list[dict]:
    """Rows of the prediction file: one per window and step, the forecast ``pred (B, H, C_t, Q)`` in original units
    with its quantiles, and the ``truth (B, H, C_t)`` where it is known."""
    pred, truth = pred.cpu(), truth.cpu()
    B, H = pred.shape[:2]
    table = {
        "window": batch["index"].cpu().repeat_interleave(H).numpy(),
        "origin": pd.to_datetime(batch["origin"].cpu().repeat_interleave(H).numpy()).astype(str),
        "timestamp": pd.to_datetime(batch["time"].cpu().reshape(-1).numpy()).astype(str),
        "step": torch.arange(1, H + 1).repeat(B).numpy(),
    }
    truth = truth.reshape(B * H, -1)
    for c, name in enumerate(target_names):
        table[name] = pred[:, :, c, point_index].reshape(-1).numpy()
        if len(quantile_levels) > 1:
            for q, level in enumerate(quantile_levels):
                table[f"{name}_q{level:g}"] = pred[:, :, c, q].reshape(-1).numpy()
        if not truth[:, c].isnan().all():
            table[f"{name}_true"] = truth[:, c].numpy()
    return pd.DataFrame(table).to_dict("records")
