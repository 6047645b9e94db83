"""The captioning app through its command line: configs, fit/test/predict from a checkpoint alone, backbone
fine-tuning from an epoch, W&B offline, DDP on 2 CPU processes with the same BLEU as 1, exact resume after SIGKILL."""

from __future__ import annotations

import json
import signal

import lightning.pytorch as pl
import pandas as pd
import pytest
import torch
from PIL import Image

from apps.captioning import main
from apps.captioning.model import CaptioningModel
from tests.conftest import ROOT, metrics_csv, run_app

FAST = ["--trainer.enable_progress_bar=false", "--data.generated_sizes=[96,21,21]", "--data.batch_size=16",
        "--data.image_size=32", "--model.embedding_size=16", "--model.hidden_size=16", "--model.attention_size=8",
        "--model.max_length=12", "--model.beam_size=2"]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=3"]
CONFIGS = sorted(ROOT.glob("configs/captioning/*.yaml"))


def _fake_flickr(folder):
    """Eight tiny images and a Karpathy split JSON in the layout of dataset_flickr8k.json."""
    (folder / "images").mkdir(parents=True)
    items = []
    for i, split in enumerate(["train"] * 4 + ["restval", "val", "test", "test"]):
        Image.new("RGB", (40, 30), (30 * i, 100, 200)).save(folder / "images" / f"{i}.jpg")
        items.append({"filename": f"{i}.jpg", "split": split,
                      "sentences": [{"raw": "A dog runs on the grass."}, {"raw": f"a photo number {i}"}]})
    (folder / "dataset_flickr8k.json").write_text(json.dumps({"images": items}))
    return ["--data.path", str(folder / "images"), "--data.annotations", str(folder / "dataset_flickr8k.json")]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_runs_fit_with_fast_dev_run(config, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(config), *FAST, "--trainer.fast_dev_run=true", "--data.num_workers=0"]
    if config.name != "default.yaml":  # real-data configs: a fake Karpathy set, and no ImageNet download here
        args += [*_fake_flickr(tmp_path), "--model.weights=null", "--model.backbone=resnet18", "--data.batch_size=2",
                 "--data.min_word_count=1"]
    cli = main(args)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1


def test_fit_test_and_predict_from_the_checkpoint_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    fit = main(["fit", *FAST, "--trainer.max_epochs=2", "--trainer.limit_train_batches=3"])
    out = capsys.readouterr().out
    folder = tmp_path / fit.trainer.checkpoint_callback.dirpath
    names = {p.name for p in folder.iterdir()}
    assert {"last.ckpt", "config.yaml", "val_samples.png", "val_attention.png"} <= names, names
    for line in ("best checkpoint: ", "pictures: ", "val_attention.png"):
        assert line in out
    checkpoint = torch.load(folder / "last.ckpt", weights_only=False)
    vocabulary = checkpoint["artefacts"]["vocabulary"]
    assert vocabulary[:4] == ["<pad>", "<bos>", "<eos>", "<unk>"] and "circle" in vocabulary
    metrics = metrics_csv(tmp_path / "outputs/captioning").dropna(subset=["val_bleu4"])
    assert {"val_loss", "val_bleu1", "val_bleu2", "val_bleu3", "val_bleu4", "val_cider"} <= set(metrics.columns)

    tested = main(["test", *FAST, f"--ckpt_path={folder / 'last.ckpt'}", "--model.beam_size=3"])
    results = tested.trainer.callback_metrics
    assert 0 <= results["test_bleu4"] <= results["test_bleu1"] <= 100 and results["test_cider"] >= 0

    images = tmp_path / "photos"
    images.mkdir()
    Image.new("L", (50, 40), 90).save(images / "gray.png")
    Image.new("RGBA", (30, 30), (255, 0, 0, 128)).save(images / "clear.png")
    (images / "broken.jpg").write_bytes(b"no image here")
    capsys.readouterr()
    with pytest.warns(UserWarning, match="1 of 3 images missing or unreadable"):
        main(["predict", *FAST, "--ckpt_path=last", f"--data.predict_path={images}",
              "--prediction_writer.path=captions.jsonl"])
    assert "written to captions.jsonl" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["clear.png", "gray.png"]
    assert all(isinstance(r["caption"], str) and r["score"] <= 0 for r in rows)


def test_predict_without_a_checkpoint_says_what_is_missing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuntimeError, match="predict needs a trained model: pass --ckpt_path"):
        main(["predict", *FAST, f"--data.predict_path={tmp_path}"])


def test_backbone_is_frozen_until_its_epoch_then_trains(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", *FAST, "--trainer.max_epochs=2", "--trainer.limit_train_batches=2",
                "--trainer.limit_val_batches=1", "--model.finetune_from_epoch=1", "--model.backbone_lr=0.5"])
    checkpoints = sorted((tmp_path / cli.trainer.checkpoint_callback.dirpath).glob("*.ckpt"))
    states = {p.name: torch.load(p, weights_only=False)["state_dict"] for p in checkpoints}
    first, last = states["best-epoch=0-step=2.ckpt"], states["last.ckpt"]
    hparams = torch.load(checkpoints[-1], weights_only=False)["hyper_parameters"]
    pl.seed_everything(0)  # as the launcher does before building the model
    initial = CaptioningModel(**{k: v for k, v in hparams.items() if not k.startswith("_")}).state_dict()
    backbone = [name for name in initial if name.startswith("image_encoder.")]
    assert all(torch.equal(first[name], initial[name]) for name in backbone)  # epoch 0: frozen, batch norms too
    weight = "image_encoder.features.0.weight"
    assert not torch.equal(first[weight], last[weight])  # epoch 1 trains
    assert cli.model.image_encoder.trainable


DDP = ["--config", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2"]
TEST_METRICS = ["test_loss", "test_bleu1", "test_bleu4", "test_cider"]


def test_ddp_on_two_cpu_processes_gives_the_bleu_of_one(tmp_path):
    fit = tmp_path / "fit"
    fit.mkdir()
    run_app(["fit", *FAST, *DDP, *SHORT], fit, app="captioning")
    (checkpoint,) = fit.rglob("last.ckpt")
    results = {}
    for processes, extra in ((1, []), (2, DDP)):
        folder = tmp_path / f"test{processes}"
        folder.mkdir()
        run_app(["test", *FAST, *extra, f"--ckpt_path={checkpoint}"], folder, app="captioning")
        results[processes] = metrics_csv(folder)[TEST_METRICS].iloc[-1]
    # 21 test images: with 2 processes one image is captioned twice and must count once
    pd.testing.assert_series_equal(results[1], results[2], rtol=1e-6)


KILLER = '''
import os, signal
from lightning.pytorch.callbacks import Callback

class KillAt(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 4:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path):
    (tmp_path / "killer.py").write_text(KILLER)
    args = ["fit", *FAST, "--trainer.max_epochs=3", "--trainer.limit_train_batches=3", "--model.dropout=0.3",
            "--model.teacher_forcing=0.7", "--model.finetune_from_epoch=1"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    run_app(args, whole, app="captioning")
    killed = run_app([*args, "--trainer.callbacks+=killer.KillAt"], broken, env={"PYTHONPATH": str(tmp_path)},
                     check=False, app="captioning")
    assert killed.returncode == -signal.SIGKILL  # in the second epoch, after the backbone started training
    run_app([*args, "--ckpt_path=last"], broken, app="captioning")
    ends = [torch.load(next(folder.rglob(f"{version}/checkpoints/last.ckpt")), weights_only=False)
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 9
    for name, tensor in ends[0]["state_dict"].items():
        assert torch.equal(tensor, ends[1]["state_dict"][name]), name
    bleu = [pd.read_csv(next(folder.rglob(f"{version}/metrics.csv"))).dropna(subset=["val_bleu4"]).iloc[-1]
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert bleu[0]["val_bleu4"] == bleu[1]["val_bleu4"] and bleu[0]["val_cider"] == bleu[1]["val_cider"]


def test_wandb_offline_run_holds_config_samples_and_attention(tmp_path):
    run_app(["fit", *FAST, *SHORT, "--config", str(ROOT / "configs/trainer/wandb.yaml"), "--model.gate=false"],
            tmp_path, env={"WANDB_MODE": "offline", "HOME": str(tmp_path), "WANDB_API_KEY": ""}, app="captioning")
    (run,) = (tmp_path / "outputs/wandb").glob("offline-run-*")
    assert "gate: false" in (run / "files/lightning_config.yaml").read_text()
    assert list((run / "files/media/images").glob("val_attention_*.png"))
    (table,) = (run / "files/media/table").glob("val_samples_*.table.json")
    assert json.loads(table.read_text())["columns"] == ["image", "references", "caption"]


def test_show_and_tell_without_attention_trains_and_decodes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", *FAST, *SHORT, "--model.attention=none", "--model.cell=gru"])
    folder = tmp_path / cli.trainer.checkpoint_callback.dirpath
    assert (folder / "val_samples.png").exists() and not (folder / "val_attention.png").exists()
    assert "val_bleu4" in cli.trainer.callback_metrics


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for option in ("--model.backbone", "--model.finetune_from_epoch", "--model.gate",
                   "--model.attention_regularization", "--data.path", "--data.annotations", "--data.on_bad_image",
                   "--data.min_word_count"):
        assert option in text
