"""The translation app through its command line: configs, fit/test/predict from a checkpoint alone, W&B offline,
DDP on 2 CPU processes with the same BLEU as 1, exact resume after SIGKILL."""

from __future__ import annotations

import gzip
import json
import signal

import pandas as pd
import pytest
import torch

from apps.translation import main
from tests.conftest import ROOT, metrics_csv, run_app

FAST = ["--trainer.enable_progress_bar=false", "--data.generated_sizes=[300,41,41]", "--data.batch_size=16",
        "--model.embedding_size=16", "--model.encoder_hidden_size=16", "--model.decoder_hidden_size=16"]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=4"]
CONFIGS = sorted(ROOT.glob("configs/translation/*.yaml"))


def _fake_multi30k(folder):
    folder.mkdir()
    for split in ("train", "val", "test_2016_flickr"):
        for lang, words in (("de", "ein Hund läuft"), ("en", "a dog runs")):
            with gzip.open(folder / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(f"{words} {i}\n" for i in range(40))
    return folder


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_runs_fit_with_fast_dev_run(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(config), *FAST, "--data.vocab_size=100", "--trainer.fast_dev_run=true"]
    if config.name == "multi30k.yaml":
        args.append(f"--data.path={_fake_multi30k(tmp_path / 'm30k')}")
    cli = main(args)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1


def test_fit_test_and_predict_from_the_checkpoint_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fit = main(["fit", *FAST, "--trainer.max_epochs=2", "--trainer.limit_train_batches=4"])
    folder = fit.trainer.checkpoint_callback.dirpath
    names = {p.name for p in (tmp_path / folder).iterdir()}
    assert {"last.ckpt", "config.yaml", "val_attention.png", "gradient_through_time.png"} <= names, names
    checkpoint = torch.load(tmp_path / folder / "last.ckpt", weights_only=False)
    assert "<bos>" in json.loads(checkpoint["artefacts"]["tokenizer"])["model"]["vocab"]
    metrics = metrics_csv(tmp_path / "outputs/translation").dropna(subset=["val_bleu"])
    assert {"val_loss", "val_ppl", "val_bleu", "val_chrf", "val_bleu_tutorial"} <= set(metrics.columns)

    # test: its own process, no training data set up, the tokenizer from the checkpoint
    tested = main(["test", *FAST, f"--ckpt_path={tmp_path / folder / 'last.ckpt'}", "--model.beam_size=3"])
    results = tested.trainer.callback_metrics
    assert 0 <= results["test_bleu"] <= 100 and results["test_ppl"] > 1

    (tmp_path / "input.txt").write_text("twenty one\n\nthree hundred twelve\n")
    capsys.readouterr()
    main(["predict", *FAST, "--ckpt_path=last", "--data.predict_path=input.txt", "--model.n_best=2",
          "--prediction_writer.path=out.jsonl"])
    assert "written to out.jsonl" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["source"] for r in rows] == ["twenty one", "three hundred twelve"]  # the empty line is skipped
    assert all(isinstance(r["translation"], str) and len(r["n_best"]) == 2 for r in rows)


def test_predict_reads_standard_input(tmp_path):
    run_app(["fit", *FAST, *SHORT], tmp_path, app="translation")
    done = run_app(["predict", *FAST, "--ckpt_path=last"], tmp_path, app="translation", stdin="forty two\n")
    (path,) = (tmp_path / "outputs/translation/predictions").glob("*.jsonl")
    assert f"written to {path.relative_to(tmp_path)}" in done.stdout
    assert json.loads(path.read_text())["source"] == "forty two"


def test_predict_without_a_checkpoint_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="predict needs a trained model: pass --ckpt_path"):
        main(["predict", *FAST])


DDP = ["--config", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2"]
TEST_METRICS = ["test_loss", "test_bleu", "test_chrf", "test_bleu_tutorial"]


def test_ddp_on_two_cpu_processes_gives_the_bleu_of_one(tmp_path):
    fit = tmp_path / "fit"
    fit.mkdir()
    run_app(["fit", *FAST, *DDP, *SHORT], fit, app="translation")
    (checkpoint,) = fit.rglob("last.ckpt")
    results = {}
    for processes, extra in ((1, []), (2, DDP)):
        folder = tmp_path / f"test{processes}"
        folder.mkdir()
        run_app(["test", *FAST, *extra, f"--ckpt_path={checkpoint}", "--model.beam_size=2"], folder,
                app="translation")
        results[processes] = metrics_csv(folder)[TEST_METRICS].iloc[-1]
    # 41 test sentences: with 2 processes one sentence is decoded twice and must count once
    pd.testing.assert_series_equal(results[1], results[2], rtol=1e-6)


KILLER = '''
import os, signal
from lightning.pytorch.callbacks import Callback

class KillAt(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 6:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    args = ["fit", *FAST, "--trainer.max_epochs=3", "--trainer.limit_train_batches=4", "--model.dropout=0.3",
            "--model.teacher_forcing=0.7"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    run_app(args, whole, app="translation")
    killed = run_app([*args, "--trainer.callbacks+=killer.KillAt"], broken, env={"PYTHONPATH": str(tmp_path)},
                     check=False, app="translation")
    assert killed.returncode == -signal.SIGKILL
    run_app([*args, "--ckpt_path=last"], broken, app="translation")
    ends = [torch.load(next(folder.rglob(f"{version}/checkpoints/last.ckpt")), weights_only=False)
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 12
    for name, tensor in ends[0]["state_dict"].items():
        assert torch.equal(tensor, ends[1]["state_dict"][name]), name
    bleu = [pd.read_csv(next(folder.rglob(f"{version}/metrics.csv"))).dropna(subset=["val_bleu"]).iloc[-1]["val_bleu"]
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert bleu[0] == bleu[1]


def test_wandb_offline_run_holds_config_and_samples(tmp_path):
    run_app(["fit", *FAST, *SHORT, "--config", str(ROOT / "configs/trainer/wandb.yaml"), "--model.attention=general"],
            tmp_path, env={"WANDB_MODE": "offline", "HOME": str(tmp_path), "WANDB_API_KEY": ""}, app="translation")
    (run,) = (tmp_path / "outputs/wandb").glob("offline-run-*")
    assert "attention: general" in (run / "files/lightning_config.yaml").read_text()
    assert b'"attention":"general"' in next(run.glob("run-*.wandb")).read_bytes()
    assert list((run / "files/media/images").glob("val_attention_*.png"))
    assert list((run / "files/media/table").glob("val_samples_*.table.json"))


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for option in ("--model.attention", "--model.beam_size", "--data.path", "--data.tokenizer", "--data.empty_lines"):
        assert option in text
    assert "additive (Bahdanau), dot or general (Luong)" in text
