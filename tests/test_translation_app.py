"""The translation app through its command line: configs, fit/test/predict from a checkpoint alone, W&B offline,
DDP on 2 CPU processes with the same BLEU as 1, exact resume after SIGKILL."""

from __future__ import annotations

import json

import pytest
import torch

from apps.common.errors import UserError
from apps.translation import main
from tests.conftest import metrics_csv, run_app

FAST = ["--trainer.enable_progress_bar=false", "--data.generated_sizes=[300,41,41]", "--data.batch_size=16",
        "--model.embedding_size=16", "--model.encoder_hidden_size=16", "--model.decoder_hidden_size=16"]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=4"]


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
    for other, option in (("--data.tokenizer=unigram", "--data.tokenizer"), ("--data.dataset=multi30k",
                                                                              "--data.dataset multi30k")):
        with pytest.raises(UserError, match=rf"checkpoint .*last\.ckpt .*{option}"):  # data it was not trained for
            main(["test", *FAST, f"--ckpt_path={tmp_path / folder / 'last.ckpt'}", other])

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
    empty = run_app(["predict", *FAST, "--ckpt_path=last"], tmp_path, app="translation", stdin="\n", check=False)
    assert empty.returncode == 2, empty.stderr
    assert "error: --data.predict_path - (standard input): no sentence to translate (1 lines" in empty.stderr
