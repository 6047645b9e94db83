"""Forecaster: an rnn_core Recurrent encodes the history window; a direct head, a recursive rollout or a recurrent
decoder forecasts the horizon.

Shapes: ``x (B, L, C_in)`` history of the inputs (the targets are the first ``C_t`` inputs), ``x_mark (B, L, K)``
and ``y_mark (B, H, K)`` known covariates; the forecast is ``(B, H, C_t, Q)`` with Q quantiles (Q = 1 for MSE/MAE).
All in the data module's standardised units; ``forecast()`` returns the original units.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from apps.common.errors import UserError
from apps.common.module import AppModule
from apps.forecasting.evaluation import elementwise_loss, epoch_metrics, prediction_rows, window_sums
from apps.forecasting.revin import RevIN
from rnn_core import CELLS, Recurrent

STRATEGIES = ("direct", "recursive", "seq2seq")
LOSSES = ("mse", "mae", "quantile")


class Forecaster(AppModule):
    """Multi-horizon forecasting with any rnn_core cell."""

    def __init__(
        self,
        num_inputs: int = 1,
        num_targets: int = 1,
        num_covariates: int = 0,
        input_length: int = 96,
        horizon: int = 24,
        cell: str = "gru",
        backend: str = "auto",
        hidden_size: int = 64,
        num_layers: int = 1,
        dropout: float = 0.0,
        strategy: str = "direct",
        segment_length: int = 1,
        channel_independent: bool = False,
        revin: bool = False,
        loss: str = "mse",
        quantiles: tuple[float, ...] = (0.1, 0.5, 0.9),
        **kwargs,
    ) -> None:
        """
        Args:
            num_inputs: input channels (set from the data).
            num_targets: forecast channels, the first num_targets inputs (set from the data).
            num_covariates: known-future covariates per step (set from the data).
            input_length: history steps (set from the data).
            horizon: steps forecast (set from the data).
            cell: recurrent cell: rnn, lstm, gru, peephole_lstm or coupled_lstm.
            backend: rnn_core backend: auto, torch, fused or loop.
            hidden_size: width of the recurrent state.
            num_layers: stacked recurrent layers.
            dropout: dropout between recurrent layers.
            strategy: "direct" (one head emits all steps), "recursive" (one segment at a time, fed back) or
                "seq2seq" (a recurrent decoder over the horizon, started from the encoder's state).
            segment_length: steps per recurrent step; above 1 each segment is embedded by a linear layer (SegRNN).
            channel_independent: forecast each channel as its own univariate series with shared weights.
            revin: reversible instance normalisation of every window.
            loss: "mse", "mae" or "quantile" (pinball loss over quantiles).
            quantiles: quantiles forecast with loss=quantile; the one nearest 0.5 is the point forecast.
        """
        super().__init__(**kwargs)
        checks = {"cell": (cell, tuple(CELLS)), "strategy": (strategy, STRATEGIES), "loss": (loss, LOSSES)}
        for key, (value, allowed) in checks.items():
            if value not in allowed:
                raise UserError(f"--model.{key} is {value!r}; expected one of {allowed}")
        if input_length < 1 or horizon < 1:
            raise UserError(f"--model.input_length={input_length} and --model.horizon={horizon} must be positive")
        if not 1 <= num_targets <= num_inputs:
            raise UserError(f"--model.num_targets={num_targets} must be in [1, num_inputs={num_inputs}]")
        if strategy == "recursive" and num_targets != num_inputs and not channel_independent:
            raise UserError(f"--model.strategy=recursive feeds forecasts back as inputs, so every input must be a "
                            f"target (num_inputs={num_inputs}, num_targets={num_targets}); or use channel_independent")
        w = segment_length
        if w < 1 or input_length % w or (strategy != "direct" and horizon % w):
            raise UserError(f"--model.segment_length={w} must divide input_length={input_length}"
                            + ("" if strategy == "direct" else f" and horizon={horizon} (strategy={strategy})"))
        if loss == "quantile" and (not quantiles or list(quantiles) != sorted(quantiles)
                                   or not all(0 < q < 1 for q in quantiles)):
            raise UserError(f"--model.quantiles={list(quantiles)} must be increasing values in (0, 1)")
        self.quantile_levels = list(quantiles) if loss == "quantile" else [0.5]
        self.register_buffer("quantile_tensor", torch.tensor(self.quantile_levels), persistent=False)
        self.point_index = min(range(len(self.quantile_levels)), key=lambda i: abs(self.quantile_levels[i] - 0.5))
        Q, K = len(self.quantile_levels), num_covariates
        self.channels_out = 1 if channel_independent else num_targets
        step_features = (1 if channel_independent else num_inputs) + K
        self.embed = nn.Sequential(nn.Linear(w * step_features, hidden_size), nn.ReLU()) if w > 1 else None
        encoder_input = hidden_size if w > 1 else step_features
        self.encoder = Recurrent(cell, encoder_input, hidden_size, num_layers, dropout=dropout, backend=backend)
        self.revin = RevIN(num_inputs) if revin else None
        if strategy == "direct":
            self.head = nn.Linear(hidden_size + horizon * K, horizon * self.channels_out * Q)
        else:
            self.head = nn.Linear(hidden_size, w * self.channels_out * Q)
        if strategy == "seq2seq":
            self.position = nn.Parameter(torch.randn(horizon // w, hidden_size) * 0.1)
            self.channel = nn.Parameter(torch.randn(num_inputs, hidden_size) * 0.1) if channel_independent else None
            self.decoder = Recurrent(cell, hidden_size + w * K, hidden_size, num_layers, dropout=dropout,
                                     backend=backend)
        # original units of the targets and the MASE scale, filled from the data module in setup()
        self.register_buffer("target_mean", torch.zeros(num_targets))
        self.register_buffer("target_std", torch.ones(num_targets))
        self.register_buffer("mase_scale", torch.ones(num_targets))

    def setup(self, stage: str) -> None:
        super().setup(stage)
        data = self.trainer.datamodule
        if data is not None:
            self.target_mean.copy_(data.target_mean)
            self.target_std.copy_(data.target_std)
            self.mase_scale.copy_(torch.as_tensor(data.mase_scale, dtype=torch.float32))

    @property
    def target_names(self) -> list[str]:
        return self.artefacts["targets"] if self.artefacts else [f"target_{i}" for i in range(self.hparams.num_targets)]

    # ------------------------------------------------------------------ model

    def _segments(self, seq: Tensor) -> Tensor:
        """(N, T, F) steps -> (N, T / w, w * F) embedded segments (or the steps themselves when w = 1)."""
        if self.embed is None:
            return seq
        N, T = seq.shape[:2]
        return self.embed(seq.reshape(N, T // self.hparams.segment_length, -1))

    def forward(self, x: Tensor, x_mark: Tensor, y_mark: Tensor) -> Tensor:
        """Forecast ``(B, H, C_t, Q)`` in standardised units."""
        hp = self.hparams
        B, L, C = x.shape
        stats = None
        if self.revin is not None:
            x, stats = self.revin.normalize(x)
        if hp.channel_independent:
            x = x.transpose(1, 2).reshape(B * C, L, 1)
            x_mark, y_mark = x_mark.repeat_interleave(C, 0), y_mark.repeat_interleave(C, 0)
        out, state = self.encoder(self._segments(torch.cat([x, x_mark], -1)))
        N, H, w = x.shape[0], hp.horizon, hp.segment_length
        if hp.strategy == "direct":
            pred = self.head(torch.cat([out[:, -1], y_mark.reshape(N, -1)], -1))
        elif hp.strategy == "seq2seq":
            steps = self.position.expand(N, -1, -1)
            if self.channel is not None:
                steps = steps + self.channel.repeat(B, 1).unsqueeze(1)
            marks = y_mark.reshape(N, H // w, -1)
            decoded, _ = self.decoder(torch.cat([steps, marks], -1), state=state)
            pred = self.head(decoded)
        else:
            pred = self._rollout(out[:, -1], state, y_mark)
        pred = pred.reshape(N, H, self.channels_out, -1)
        if hp.channel_independent:
            pred = pred.reshape(B, C, H, -1).transpose(1, 2)[:, :, : hp.num_targets]
        if stats is not None:
            pred = self.revin.denormalize(pred, stats)
        return pred

    def _rollout(self, last: Tensor, state, y_mark: Tensor) -> Tensor:
        """Recursive strategy: forecast one segment, feed its point forecast back, repeat."""
        w, segments = self.hparams.segment_length, self.hparams.horizon // self.hparams.segment_length
        N, parts = last.shape[0], []
        for k in range(segments):
            part = self.head(last).reshape(N, w, self.channels_out, -1)
            parts.append(part)
            if k + 1 < segments:
                fed = torch.cat([part[..., self.point_index], y_mark[:, k * w : (k + 1) * w]], -1)
                out, state = self.encoder(self._segments(fed), state=state)
                last = out[:, -1]
        return torch.cat(parts, 1)

    def forecast(self, batch: dict[str, Tensor]) -> Tensor:
        """Forecast ``(B, H, C_t, Q)`` in the data's original units."""
        pred = self(batch["x"], batch["x_mark"], batch["y_mark"])
        return pred * self.target_std[:, None] + self.target_mean[:, None]

    # --------------------------------------------------------------- training

    def elementwise_loss(self, pred: Tensor, y: Tensor) -> Tensor:
        """Loss per (B, H, C_t) element."""
        return elementwise_loss(pred, y, self.hparams.loss, self.quantile_tensor, self.point_index)

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        return self.elementwise_loss(self(batch["x"], batch["x_mark"], batch["y_mark"]), batch["y"]).mean()

    def evaluate(self, batch: dict[str, Tensor], stage: str) -> list[dict]:
        """Per window, the sums of every metric over its steps and targets."""
        y, pred = batch["y"], self(batch["x"], batch["x_mark"], batch["y_mark"])
        return window_sums(batch["index"], self.elementwise_loss(pred, y), pred[..., self.point_index] - y, y,
                           self.target_mean, self.target_std, self.mase_scale)

    def metrics(self, records: list[dict], stage: str) -> dict[str, float]:
        return epoch_metrics(records, len(records) * self.hparams.horizon * self.hparams.num_targets, stage)

    def predict_step(self, batch: dict[str, Tensor], batch_idx: int) -> list[dict]:
        """Rows of the prediction file: one per window and step, in original units, with quantiles and the truth
        where it is known."""
        truth = batch["y"] * self.target_std + self.target_mean
        return prediction_rows(batch, self.forecast(batch), truth, self.target_names, self.quantile_levels,
                               self.point_index)

