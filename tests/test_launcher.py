"""The shared launcher through the forecasting app, in-process: the trainer configs, fit/validate/test/predict,
checkpoints, the saved config, --print_config's comments, and W&B without credentials."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
import yaml

from apps.common.errors import TRACEBACK_VARIABLE, UserError, exit_on_user_error
from apps.forecasting import main
from tests.conftest import FAST, ROOT, run_app

#: the trainer configs every app composes with (each app's own configs: tests/test_contract.py)
CONFIGS = sorted(ROOT.glob("configs/trainer/*.yaml"))
SHORT = ["--trainer.max_epochs=2", "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2"]


@pytest.mark.parametrize("config", CONFIGS, ids=[str(c.relative_to(ROOT / "configs")) for c in CONFIGS])
def test_every_trainer_config_runs_fit_with_fast_dev_run(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    args = ["fit", "--config", str(config), *FAST, "--trainer.fast_dev_run=true"]
    if config.name == "gpu.yaml":
        args.append("--trainer.accelerator=cpu")  # the machine running the tests may have no GPU
    if config.name == "ddp.yaml":  # two processes on CPU; a subprocess keeps the process group out of this one
        run_app([*args, "--trainer.accelerator=cpu", "--trainer.devices=2"], tmp_path)
        return
    cli = main(args)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1
    assert cli.trainer.progress_bar_callback is None  # FAST turns it off with one flag; on by default, see below
    assert not (tmp_path / "config.yaml").exists()


def test_fit_validate_test_predict(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    first, second = main(["fit", *FAST, *SHORT]), main(["fit", *FAST, *SHORT])
    folders = sorted((tmp_path / "outputs/forecasting/logs").glob("version_*/checkpoints"))
    assert len(folders) == 2  # the second run in the same folder writes beside the first, not over it
    for folder in folders:
        names = {p.name for p in folder.iterdir()}
        assert {"last.ckpt", "config.yaml", "forecast.png", "gradient_through_time.png"} <= names, names
        assert any(name.startswith("best-") for name in names)
    assert not (tmp_path / "config.yaml").exists()
    saved = yaml.safe_load((folders[0] / "config.yaml").read_text())
    assert saved["model"]["cell"] == "gru" and saved["data"]["length"] == 1500 and saved["seed_everything"] == 0
    assert saved["model"]["lr"] == 0.003 and "optimizer" not in saved  # the app base's Adam, set by model options
    assert first.trainer.gradient_clip_val == 1.0
    assert first.trainer.progress_bar_callback is None  # --trainer.enable_progress_bar=false turns it off

    checkpoint = first.trainer.checkpoint_callback
    validated = main(["validate", *FAST, "--trainer.limit_val_batches=2", f"--ckpt_path={checkpoint.best_model_path}"])
    assert validated.trainer.callback_metrics["val_loss"].item() == pytest.approx(checkpoint.best_model_score.item())

    tested = main(["test", *FAST, f"--ckpt_path={Path(second.trainer.checkpoint_callback.dirpath) / 'last.ckpt'}"])
    best = main(["test", *FAST, "--ckpt_path=best"])  # the newest run's best checkpoint
    assert best.trainer.ckpt_path == second.trainer.checkpoint_callback.best_model_path
    metrics = tested.trainer.callback_metrics
    for name in ("test_mse", "test_mae", "test_mae_original", "test_rmse_original", "test_smape", "test_mase"):
        assert name in metrics and metrics[name].isfinite()

    capsys.readouterr()
    main(["predict", *FAST, "--ckpt_path=last", "--prediction_writer.path=future.csv"])
    assert "written to future.csv" in capsys.readouterr().out
    future = pd.read_csv(tmp_path / "future.csv")
    assert list(future.columns[:4]) == ["window", "origin", "timestamp", "step"]
    assert len(future) == 24 and future["step"].tolist() == list(range(1, 25))
    last_row = pd.Timestamp("2020-01-01") + pd.Timedelta(hours=1499)  # the generated series' last timestamp
    assert (pd.to_datetime(future["origin"]) == last_row).all()
    assert pd.to_datetime(future["timestamp"]).tolist() == list(pd.date_range(last_row, periods=25, freq="h")[1:])

    main(["predict", *FAST, "--ckpt_path=last", "--data.predict_on=test", "--prediction_writer.path=test.jsonl"])
    rows = pd.read_json(tmp_path / "test.jsonl", lines=True)
    assert len(rows) == len(tested.datamodule.splits["test"]) * 24
    assert {"series_0", "series_0_true"} <= set(rows.columns)


def test_print_config_shows_defaults_and_comments(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--print_config"])
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["model"]["cell"] == "gru" and config["trainer"]["gradient_clip_val"] == 1.0
    assert config["checkpoint"]["monitor"] == "val_loss" and config["checkpoint"]["mode"] == "min"  # the model's
    with pytest.raises(SystemExit):
        main(["fit", "--print_config=comments"])
    commented = capsys.readouterr().out
    assert "# recurrent cell: rnn, lstm, gru, peephole_lstm or coupled_lstm." in commented
    assert "# input columns (None: every column but the date)." in commented
    assert "# Adam's learning rate." in commented  # the app base's options, documented once


def test_wandb_without_credentials_goes_offline(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc from `wandb login`
    monkeypatch.setenv("WANDB_API_KEY", "")
    monkeypatch.setenv("WANDB_MODE", "")
    main(["fit", *FAST, "--trainer.logger=WandbLogger", "--trainer.fast_dev_run=true"])
    assert os.environ["WANDB_MODE"] == "offline"


def test_ckpt_path_last_without_checkpoints_fits_from_scratch(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.warns(UserWarning, match="no checkpoints/last"):
        cli = main(["fit", *[a for a in FAST if "progress_bar" not in a], "--ckpt_path=last",
                     "--trainer.fast_dev_run=true"])
    assert cli.trainer.global_step == 1
    assert cli.trainer.progress_bar_callback is not None


def test_user_errors_are_one_message_and_bugs_keep_their_traceback(tmp_path, monkeypatch, capsys):
    """As the command line runs them (apps/<app>/__main__.py): a parser error names the option with the nearest
    known ones and no usage text, a YAML syntax error names the file, line and column, a UserError is one line and
    exit status 2, and RNN_APPS_TRACEBACK=1 lets it through with its traceback."""
    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "broken.yaml"
    broken.write_text("model:\n  lr: [0.1,\n")
    cases = {
        ("fit", "--model.hiden_size=3"): ["error: unrecognized arguments: --model.hiden_size=3",
                                          "did you mean --model.hidden_size?",
                                          "(all options: python -m apps.forecasting fit --help)"],
        ("fit", "--model.lr=abc"): ["error: --model.lr:", "Expected a <class 'float'>. Got value: abc"],
        ("fit", "--config", str(broken)): [f"error: --config {broken}, line 3, column 1: not valid YAML"],
        ("fit", "--config", str(tmp_path / "none.yaml")): [f"error: --config {tmp_path / 'none.yaml'}: no such file"],
        ("test",): ["error: test needs a trained model: pass --ckpt_path"],
    }
    for args, lines in cases.items():
        with pytest.raises(SystemExit) as exit_status:
            exit_on_user_error(lambda a=args: main(list(a)))
        stderr = capsys.readouterr().err
        assert exit_status.value.code == 2, (args, stderr)
        assert "usage:" not in stderr and "Traceback" not in stderr, stderr
        assert len(stderr.strip().splitlines()) <= 4, stderr
        for line in lines:
            assert line in stderr, (line, stderr)
    monkeypatch.setenv(TRACEBACK_VARIABLE, "1")
    with pytest.raises(UserError, match=r"^test needs a trained model"):
        exit_on_user_error(lambda: main(["test"]))
