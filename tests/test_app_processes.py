"""The launcher in real processes: DDP on 2 CPU processes with the same metrics as 1, exact resume after SIGKILL,
and a W&B offline run that holds the config and the forecast figure."""

from __future__ import annotations

import signal

import pandas as pd
import torch

from apps.forecasting.data import ForecastingData
from tests.conftest import FAST, ROOT, metrics_csv, run_app

DDP = ["--config", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2"]
TEST_METRICS = ["test_mse", "test_mae", "test_mae_original", "test_rmse_original", "test_smape", "test_mase"]


def test_ddp_on_two_cpu_processes_and_metrics_and_predictions_equal_to_one_process(tmp_path):
    # an odd number of test windows: the distributed sampler pads one rank with a repeated window
    assert len(ForecastingData(length=1500, horizon=24).window_starts(1200, 1500, "test")) % 2 == 1
    fit = tmp_path / "fit"
    fit.mkdir()
    run_app(["fit", *FAST, *DDP, "--trainer.max_epochs=1", "--trainer.limit_train_batches=4"], fit)
    (checkpoint,) = fit.rglob("last.ckpt")
    results = {}
    for processes, extra in ((1, []), (2, DDP)):
        folder = tmp_path / f"test{processes}"
        folder.mkdir()
        run_app(["test", *FAST, *extra, f"--ckpt_path={checkpoint}"], folder)
        results[processes] = metrics_csv(folder)[TEST_METRICS].iloc[-1]
        run_app(["predict", *FAST, *extra, f"--ckpt_path={checkpoint}", "--data.predict_on=test",
                 f"--prediction_writer.path={tmp_path}/predictions{processes}.csv"], folder)
    pd.testing.assert_series_equal(results[1], results[2], rtol=1e-6)
    one, two = (pd.read_csv(tmp_path / f"predictions{n}.csv") for n in (1, 2))
    assert len(one) == len(ForecastingData(length=1500).window_starts(1200, 1500, "test")) * 24
    # every window once, gathered from both processes; the values equal to float32 round-off (the two runs batch
    # the windows differently, so the matmuls add in another order: near-zero values differ in relative terms)
    pd.testing.assert_frame_equal(one, two, rtol=1e-6, atol=1e-6)


KILLER = '''
import os, signal
from lightning.pytorch.callbacks import Callback

class KillAt(Callback):
    """SIGKILLs its own process before the training batch of a given global step."""

    def __init__(self, step: int = 8):
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    # dropout and shuffling make the run depend on the random state, which the resumed run must restore
    args = ["fit", *FAST, "--trainer.max_epochs=3", "--trainer.limit_train_batches=5", "--trainer.limit_val_batches=2",
            "--model.num_layers=2", "--model.dropout=0.3"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    run_app(args, whole)
    killed = run_app([*args, "--trainer.callbacks+=killer.KillAt"], broken, env={"PYTHONPATH": str(tmp_path)},
                     check=False)
    assert killed.returncode == -signal.SIGKILL  # killed at step 8: in the middle of the second epoch
    resumed = run_app([*args, "--ckpt_path=last"], broken)
    assert "version_0/checkpoints/last.ckpt" in resumed.stdout + resumed.stderr
    ends = [torch.load(next(folder.rglob(f"{version}/checkpoints/last.ckpt")), weights_only=False)
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 15
    for name, tensor in ends[0]["state_dict"].items():
        assert torch.equal(tensor, ends[1]["state_dict"][name]), name
    val = [metrics_frame.dropna(subset=["val_mse"]).iloc[-1]["val_mse"]
           for metrics_frame in (pd.read_csv(next(whole.rglob("metrics.csv"))),
                                 pd.read_csv(next(broken.rglob("version_1/metrics.csv"))))]
    assert val[0] == val[1]


def test_wandb_offline_run_holds_config_and_forecast_figure(tmp_path):
    run_app(["fit", *FAST, "--config", str(ROOT / "configs/trainer/wandb.yaml"), "--model.loss=quantile",
             "--trainer.max_epochs=1", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2"],
            tmp_path, env={"WANDB_MODE": "offline", "HOME": str(tmp_path), "WANDB_API_KEY": ""})
    (run,) = (tmp_path / "outputs/forecasting/wandb").glob("offline-run-*")
    config = (run / "files/lightning_config.yaml").read_text()
    assert "loss: quantile" in config and "lr: 0.003" in config
    records = next(run.glob("run-*.wandb")).read_bytes()
    assert b'"loss":"quantile"' in records and b'"lr":0.003' in records  # the run's config
    assert list((run / "files/media/images").glob("forecast_*.png"))
    (checkpoints,) = (tmp_path / "outputs/forecasting/rnn-apps").glob("*/checkpoints")  # all under default_root_dir
    assert {"forecast.png", "config.yaml", "last.ckpt"} <= {p.name for p in checkpoints.iterdir()}
    assert not (tmp_path / "config.yaml").exists()

