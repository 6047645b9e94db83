"""The contracts every app keeps, tested once over the registry of app cases (tests/app_cases.py): every config fits,
DDP on 2 CPU processes gives the metrics of 1, a run killed mid-epoch resumes exactly, W&B offline holds the config
and the pictures, --trainer.default_root_dir holds the whole run, bf16 mixed precision fits, tests and predicts,
--help documents the options, a checkpoint that cannot serve is one message."""

from __future__ import annotations

import importlib
import json
import signal
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from apps.common.errors import UserError
from tests.app_cases import CASES, AppCase
from tests.conftest import ROOT, metrics_csv, run_app

DDP = ["--config", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2"]
WANDB_OFFLINE = {"WANDB_MODE": "offline", "WANDB_API_KEY": ""}
KILLER = '''
import os, signal
from lightning.pytorch.callbacks import Callback

class KillAt(Callback):
    """SIGKILLs its own process before the training batch of global step {step}."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == {step}:
            os.kill(os.getpid(), signal.SIGKILL)
'''

by_case = pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])


def main_of(case: AppCase):
    return importlib.import_module(f"apps.{case.name}").main


def short(case: AppCase, epochs: int = 1) -> list[str]:
    return [f"--trainer.max_epochs={epochs}", f"--trainer.limit_train_batches={case.batches_per_epoch}",
            "--trainer.limit_val_batches=2"]


@pytest.mark.parametrize("case, config", [(case, config) for case in CASES for config in case.configs],
                         ids=[f"{case.name}/{config.name}" for case in CASES for config in case.configs])
def test_every_config_fits(case, config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(config), *case.flags(tmp_path), "--trainer.fast_dev_run=true"]
    if config.name in case.real_data:
        args += case.real_data[config.name](tmp_path / "data")
    cli = main_of(case)(args)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert not (tmp_path / "config.yaml").exists()


@by_case
def test_ddp_on_two_cpu_processes_gives_the_results_of_one(case, tmp_path):
    fast = case.flags(tmp_path)
    fit = tmp_path / "fit"
    fit.mkdir()
    run_app(["fit", *fast, *DDP, *short(case)], fit, app=case.name)
    (checkpoint,) = fit.rglob("last.ckpt")
    results, predictions = {}, {}
    for processes, extra in ((1, []), (2, DDP)):
        folder = tmp_path / f"test{processes}"
        folder.mkdir()
        run_app(["test", *fast, *extra, f"--ckpt_path={checkpoint}"], folder, app=case.name)
        results[processes] = metrics_csv(folder)[list(case.test_metrics)].iloc[-1]
        if case.predict_on_test:
            path = tmp_path / f"predictions{processes}.csv"
            run_app(["predict", *fast, *extra, f"--ckpt_path={checkpoint}", *case.predict_on_test,
                     f"--prediction_writer.path={path}"], folder, app=case.name)
            predictions[processes] = pd.read_csv(path)
    # the test sets have an odd size: with 2 processes one sample is evaluated twice and must count once
    pd.testing.assert_series_equal(results[1], results[2], rtol=1e-6)
    if predictions:
        # every sample once, gathered from both processes; equal to float32 round-off (the two runs batch the
        # samples differently, so the matmuls add in another order)
        pd.testing.assert_frame_equal(predictions[1], predictions[2], rtol=1e-6, atol=1e-6)


@by_case
def test_resume_after_sigkill_mid_epoch_matches_an_uninterrupted_run(case, tmp_path):
    step = case.batches_per_epoch + case.batches_per_epoch // 2 + 1  # in the second epoch
    (tmp_path / "killer.py").write_text(KILLER.replace("{step}", str(step)))
    args = ["fit", *case.flags(tmp_path), *short(case, epochs=3), *case.random_options]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    run_app(args, whole, app=case.name)
    killed = run_app([*args, "--trainer.callbacks+=killer.KillAt"], broken, app=case.name, check=False,
                     python_path=[tmp_path])
    assert killed.returncode == -signal.SIGKILL
    resumed = run_app([*args, "--ckpt_path=last"], broken, app=case.name)
    assert "version_0/checkpoints/last.ckpt" in resumed.stdout + resumed.stderr
    ends = [torch.load(next(folder.rglob(f"{version}/checkpoints/last.ckpt")), weights_only=False)
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 3 * case.batches_per_epoch
    for name, tensor in ends[0]["state_dict"].items():
        assert torch.equal(tensor, ends[1]["state_dict"][name]), name
    last = [pd.read_csv(next(folder.rglob(f"{version}/metrics.csv"))).dropna(subset=[case.val_metric]).iloc[-1]
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert last[0][case.val_metric] == last[1][case.val_metric] and last[0]["val_loss"] == last[1]["val_loss"]


@by_case
def test_wandb_offline_run_holds_config_pictures_and_checkpoints(case, tmp_path):
    flag, config_line, record = case.wandb_option
    run_app(["fit", *case.flags(tmp_path), *short(case), "--config", str(ROOT / "configs/trainer/wandb.yaml"), flag],
            tmp_path, env={**WANDB_OFFLINE, "HOME": str(tmp_path)}, app=case.name)
    root = tmp_path / "outputs" / case.name  # the app's default_root_dir holds the W&B run too
    (run,) = (root / "wandb").glob("offline-run-*")
    assert config_line in (run / "files/lightning_config.yaml").read_text()
    records = next(run.glob("run-*.wandb")).read_bytes()
    assert record in records and case.val_metric.encode() in records  # the run's config and its metrics
    for pattern in case.wandb_media:
        assert list((run / "files/media").glob(pattern)), pattern
    if case.wandb_table:
        pattern, columns = case.wandb_table
        (table,) = (run / "files/media").glob(pattern)
        assert json.loads(table.read_text())["columns"] == list(columns)
    (checkpoints,) = (root / "rnn-apps").glob("*/checkpoints")
    assert {"config.yaml", "last.ckpt", *case.run_files} <= {p.name for p in checkpoints.iterdir()}
    assert not (tmp_path / "config.yaml").exists()


@by_case
def test_default_root_dir_holds_the_whole_run_and_best_is_found_there(case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.iterdir())
    root = tmp_path / "runs" / "mine"
    main = main_of(case)
    fit = main(["fit", *case.flags(tmp_path), *short(case, epochs=2), f"--trainer.default_root_dir={root}"])
    assert set(tmp_path.iterdir()) - before <= {tmp_path / "runs", tmp_path / "cache"}
    folder = Path(fit.trainer.checkpoint_callback.dirpath)
    assert folder.is_relative_to(root)
    names = {p.name for p in folder.iterdir()}
    assert {"last.ckpt", "config.yaml", *case.run_files} <= names, names
    assert list(root.rglob("metrics.csv"))
    tested = main(["test", *case.flags(tmp_path), "--ckpt_path=best", f"--trainer.default_root_dir={root}"])
    assert tested.trainer.ckpt_path == fit.trainer.checkpoint_callback.best_model_path


@by_case
def test_bf16_mixed_precision_fits_tests_and_predicts(case, tmp_path, monkeypatch):
    """--trainer.precision=bf16-mixed on the CPU: one training step, then test (and predict, where the app predicts
    on its test data with no input of its own) from a checkpoint of it, with finite results."""
    monkeypatch.chdir(tmp_path)
    main, fast, bf16 = main_of(case), case.flags(tmp_path), "--trainer.precision=bf16-mixed"
    fit = main(["fit", *fast, bf16, "--trainer.fast_dev_run=true"])
    assert fit.trainer.state.finished and fit.trainer.global_step == 1 and fit.trainer.precision == "bf16-mixed"
    checkpoint = tmp_path / "bf16.ckpt"  # fast_dev_run writes none itself
    fit.trainer.save_checkpoint(checkpoint)
    tested = main(["test", *fast, bf16, "--trainer.limit_test_batches=2", f"--ckpt_path={checkpoint}"])
    for name in case.test_metrics:
        assert tested.trainer.callback_metrics[name].isfinite(), name
    if case.predict_on_test:
        predictions = tmp_path / "predictions.csv"
        main(["predict", *fast, bf16, "--trainer.limit_predict_batches=2", f"--ckpt_path={checkpoint}",
              *case.predict_on_test, f"--prediction_writer.path={predictions}"])
        rows = pd.read_csv(predictions).select_dtypes("number")
        assert len(rows) and rows.notna().all().all(), rows


@by_case
def test_help_and_print_config_document_every_option(case, capsys):
    main = main_of(case)
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for fragment in (*case.help_options, "--checkpoint.monitor", "--prediction_writer.path", "--model.lr",
                     "--model.plateau_patience"):
        assert fragment in text, fragment
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["trainer"]["default_root_dir"].startswith(f"outputs/{case.name}")
    assert config["checkpoint"]["monitor"].startswith("val_") and config["checkpoint"]["mode"] in ("min", "max")


@by_case
def test_a_checkpoint_that_cannot_serve_is_one_message(case, tmp_path, monkeypatch):
    """validate, test and predict without a trained model, with best or last finding nothing, with a truncated file
    or with another app's checkpoint: each a UserError naming the option and the file, before any work."""
    monkeypatch.chdir(tmp_path)
    main, fast = main_of(case), case.flags(tmp_path)
    for command in ("validate", "test", "predict"):
        with pytest.raises(UserError, match=f"^{command} needs a trained model: pass --ckpt_path"):
            main([command, *fast])
    for kind in ("best", "last"):
        with pytest.raises(UserError, match=f"--ckpt_path {kind}: no checkpoints/{kind}.* under {tmp_path}/empty"):
            main(["test", *fast, f"--ckpt_path={kind}", f"--trainer.default_root_dir={tmp_path / 'empty'}"])
    with pytest.raises(UserError, match=f"--ckpt_path {tmp_path}/missing.ckpt: no such file"):
        main(["test", *fast, f"--ckpt_path={tmp_path}/missing.ckpt"])
    fit = main(["fit", *fast, "--trainer.fast_dev_run=true"])
    checkpoint, truncated = tmp_path / "model.ckpt", tmp_path / "truncated.ckpt"
    fit.trainer.save_checkpoint(checkpoint)
    truncated.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(UserError, match=f"{truncated}: not a checkpoint, or a truncated one"):
        main(["test", *fast, f"--ckpt_path={truncated}"])
    other = CASES[(CASES.index(case) + 1) % len(CASES)]
    written_by = f"{checkpoint}: a checkpoint of apps.{case.name}.model.* not of apps.{other.name}"
    with pytest.raises(UserError, match=written_by):
        main_of(other)(["test", *other.flags(tmp_path), f"--ckpt_path={checkpoint}"])
