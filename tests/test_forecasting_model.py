"""Forecaster strategies and options, RevIN, deduplicated metric sums, the gradient-through-time measurement."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

from apps.common.artefacts import ARTEFACTS_KEY
from apps.common.callbacks import GradientThroughTime
from apps.common.errors import UserError
from apps.common.metrics import gather_by_index
from apps.forecasting.data import ForecastingData
from apps.forecasting.gradients import measure_cells
from apps.forecasting.model import Forecaster
from apps.forecasting.revin import RevIN
from rnn_core import Recurrent
from tests.conftest import run_app, write_series_csv

L, H, C, K = 16, 8, 3, 4


def _batch(targets: int, B: int = 5, seed: int = 0) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return {
        "index": torch.arange(B),
        "x": torch.randn(B, L, C, generator=gen),
        "x_mark": torch.randn(B, L, K, generator=gen),
        "y_mark": torch.randn(B, H, K, generator=gen),
        "y": torch.randn(B, H, targets, generator=gen),
    }


CASES = list(itertools.product(["direct", "recursive", "seq2seq"], [False, True], [1, 4], ["mse", "quantile"]))


@pytest.mark.parametrize(("strategy", "independent", "segment", "loss"), CASES,
                         ids=["-".join(map(str, case)) for case in CASES])
def test_strategies_forecast_every_step_and_train(strategy, independent, segment, loss):
    targets = C if strategy == "recursive" and not independent else 2
    model = Forecaster(num_inputs=C, num_targets=targets, num_covariates=K, input_length=L, horizon=H, cell="lstm",
                       hidden_size=8, strategy=strategy, segment_length=segment, channel_independent=independent,
                       revin=True, loss=loss)
    batch = _batch(targets)
    pred = model(batch["x"], batch["x_mark"], batch["y_mark"])
    assert pred.shape == (5, H, targets, 3 if loss == "quantile" else 1)
    model.compute_loss(batch).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_forecast_of_step_h_depends_on_future_covariates_of_step_h_only_through_the_model():
    model = Forecaster(num_inputs=C, num_targets=C, num_covariates=K, input_length=L, horizon=H, hidden_size=8,
                       strategy="seq2seq")
    batch = _batch(C)
    y_mark = batch["y_mark"].clone().requires_grad_()
    pred = model(batch["x"], batch["x_mark"], y_mark)
    (grad,) = torch.autograd.grad(pred[:, 0].sum(), y_mark)
    assert grad[:, 1:].abs().sum() == 0 and grad[:, 0].abs().sum() > 0  # the decoder is causal over the horizon


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"cell": "transformer"}, r"model.cell is 'transformer'"),
        ({"strategy": "recursive", "num_targets": 1}, r"strategy=recursive feeds forecasts back"),
        ({"segment_length": 5}, r"segment_length=5 must divide input_length=16"),
        ({"strategy": "seq2seq", "segment_length": 16}, r"segment_length=16 must divide .* and horizon=8"),
        ({"loss": "quantile", "quantiles": (0.9, 0.1)}, r"model.quantiles=\[0.9, 0.1\] must be increasing"),
        ({"input_length": 0}, r"--model.input_length=0 and --model.horizon=8 must be positive"),
        ({"horizon": 0, "strategy": "seq2seq"}, r"--model.input_length=16 and --model.horizon=0 must be positive"),
    ],
)
def test_bad_model_options_are_named(kwargs, pattern):
    options = {"num_inputs": C, "num_targets": C, "input_length": L, "horizon": H, **kwargs}
    with pytest.raises(UserError, match=pattern):
        Forecaster(**options)


def test_quantile_loss_is_the_pinball_loss():
    model = Forecaster(num_inputs=1, num_targets=1, input_length=L, horizon=H, loss="quantile",
                       quantiles=(0.1, 0.5, 0.9))
    pred = torch.zeros(1, 1, 1, 3)
    y = torch.ones(1, 1, 1)  # under-forecast by 1: pinball = q for each quantile
    assert model.elementwise_loss(pred, y).item() == pytest.approx((0.1 + 0.5 + 0.9) / 3)
    assert model.point_index == 1


def test_revin_round_trip():
    revin = RevIN(3)
    with torch.no_grad():
        revin.weight.uniform_(0.5, 2.0)
        revin.bias.normal_()
    x = torch.randn(4, 10, 3) * 5 + 2
    normalized, stats = revin.normalize(x)
    back = revin.denormalize(normalized.unsqueeze(-1), stats).squeeze(-1)
    torch.testing.assert_close(back, x, atol=1e-4, rtol=1e-4)


def test_gathered_records_drop_repeated_samples():
    records = [{"index": 2, "sum": 3.0}, {"index": 0, "sum": 1.0}, {"index": 1, "sum": 2.0}, {"index": 3, "sum": 4.0},
               {"index": 0, "sum": 1.0}]  # index 0 again: a padding duplicate
    gathered = gather_by_index(SimpleNamespace(world_size=1), records)
    assert [r["index"] for r in gathered] == [0, 1, 2, 3] and sum(r["sum"] for r in gathered) == 10.0


class _Toy(torch.nn.Module):
    """A recurrent model with the compute_loss method GradientThroughTime needs."""

    def __init__(self, cell):
        super().__init__()
        self.rnn = Recurrent(cell, 2, 8)

    def compute_loss(self, batch):
        out, _ = self.rnn(batch["x"])
        return out[:, -1].pow(2).sum()

    def transfer_batch_to_device(self, batch, device, index):
        return batch

    @property
    def device(self):
        return torch.device("cpu")


def test_gradient_through_time_measures_every_input_step_and_cleans_up():
    torch.manual_seed(0)
    toy = _Toy("rnn")
    dataset = [{"x": torch.randn(40, 2)} for _ in range(6)]
    norms, cell = GradientThroughTime(num_samples=4).measure(toy, dataset)
    assert norms.shape == (40,) and cell == "ElmanCell"
    assert (norms > 0).all() and norms[-1] > norms[0]  # the loss reads the last step: its gradient is the largest
    assert not toy.rnn._forward_pre_hooks and toy.training
    assert all(p.grad is None for p in toy.parameters())  # measuring does not touch the training gradients


def test_cell_comparison_measures_rnn_lstm_and_gru():
    curves = measure_cells(input_length=16, steps=2, horizon=4, hidden_size=8)
    assert list(curves) == ["rnn", "lstm", "gru"]
    assert all(norms.shape == (16,) and (norms > 0).all() for norms in curves.values())


# ------------------------------------------------------------------ what a checkpoint was trained on


def _checkpoint(folder, data: ForecastingData) -> str:
    """A checkpoint file holding what a model trained on ``data`` carries besides its weights."""
    path = folder / "trained.ckpt"
    torch.save({ARTEFACTS_KEY: data.artefacts(), "hyper_parameters": {}}, path)
    return str(path)


OTHER_DATA = {  # id: (the CSV's columns and step, data options, the artefact that differs)
    "other-columns-same-count": ((["c", "d"], "h"), {}, "columns"),
    "fewer-columns": ((["a"], "h"), {}, "columns"),
    "other-target": ((["a", "b"], "h"), {"targets": ["b"]}, "columns"),
    "other-step": ((["a", "b"], "15min"), {}, "step"),
    "calendar-covariates": ((["a", "b"], "h"), {"calendar_features": True}, "covariates"),
    "other-horizon": ((["a", "b"], "h"), {"horizon": 12}, "horizon"),
    "other-input-length": ((["a", "b"], "h"), {"input_length": 16}, "input_length"),
}


@pytest.mark.parametrize(("csv", "kwargs", "key"), OTHER_DATA.values(), ids=OTHER_DATA.keys())
def test_a_checkpoint_refuses_data_unlike_its_training_data(tmp_path, csv, kwargs, key):
    trained = ForecastingData(path=str(write_series_csv(tmp_path / "train.csv", 400, ["a", "b"])), input_length=8,
                              horizon=4)
    columns, step = csv
    other = write_series_csv(tmp_path / "other.csv", 400, columns, freq=step)
    data = ForecastingData(path=str(other), **{"input_length": 8, "horizon": 4, **kwargs})
    data.checkpoint_path = _checkpoint(tmp_path, trained)
    with pytest.raises(UserError, match=rf"the checkpoint {data.checkpoint_path} and the data {other} differ in "
                                        rf"'{key}'"):
        data.setup("predict")


def test_a_checkpoint_lends_its_scaler_to_new_data_of_the_same_kind(tmp_path):
    trained = ForecastingData(path=str(write_series_csv(tmp_path / "train.csv", 400, ["a", "b"])), input_length=8,
                              horizon=4)
    newer = pd.read_csv(write_series_csv(tmp_path / "newer.csv", 400, ["a", "b"], seed=1))
    newer[["a", "b"]] += 1000.0  # the same quantities, later and larger
    newer.to_csv(tmp_path / "newer.csv", index=False)
    data = ForecastingData(path=str(tmp_path / "newer.csv"), input_length=8, horizon=4)
    assert not np.allclose(data.mean, trained.mean)
    data.checkpoint_path = _checkpoint(tmp_path, trained)
    data.setup("predict")
    np.testing.assert_array_equal(data.mean, trained.mean)
    x = data.splits["predict"][0]["x"].numpy()
    np.testing.assert_allclose(x * trained.std + trained.mean, newer[["a", "b"]].to_numpy()[-8:], rtol=1e-5)


def test_a_mismatched_checkpoint_is_one_line_on_the_command_line(tmp_path):
    trained = ForecastingData(path=str(write_series_csv(tmp_path / "train.csv", 400, ["a", "b"])), input_length=8,
                              horizon=4)
    checkpoint = _checkpoint(tmp_path, trained)
    other = write_series_csv(tmp_path / "other.csv", 400, ["c", "d"])
    done = run_app(["predict", f"--ckpt_path={checkpoint}", f"--data.path={other}", "--data.input_length=8",
                    "--data.horizon=4", f"--trainer.default_root_dir={tmp_path}"], tmp_path, check=False)
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"\nerror: the checkpoint {checkpoint} and the data {other} differ in 'columns': ['a', 'b'] against " \
           "['c', 'd']\n" in done.stderr and "Traceback" not in done.stderr
