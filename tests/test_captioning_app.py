"""The captioning app through its command line: configs, fit/test/predict from a checkpoint alone, backbone
fine-tuning from an epoch, W&B offline, DDP on 2 CPU processes with the same BLEU as 1, exact resume after SIGKILL."""

from __future__ import annotations

import json
import re

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from PIL import Image

from apps.captioning import main
from apps.captioning.model import CaptioningModel
from apps.common.errors import exit_on_user_error
from tests.conftest import metrics_csv

FAST = ["--trainer.enable_progress_bar=false", "--data.generated_sizes=[96,21,21]", "--data.batch_size=16",
        "--data.image_size=32", "--model.embedding_size=16", "--model.hidden_size=16", "--model.attention_size=8",
        "--model.max_length=12", "--model.beam_size=2"]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=3"]


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
    Image.fromarray(np.full((30, 40), 20000, dtype=np.uint16)).save(images / "deep.tif")
    Image.new("F", (30, 30), 0.5).save(images / "float.tiff")
    for name in ("scan.bmp", "anim.gif", "photo.jfif", "frame.ppm"):
        Image.new("RGB", (30, 30), (10, 120, 200)).save(images / name)
    (images / "broken.jpg").write_bytes(b"no image here")
    (images / "notes.txt").write_text("not an image, not a candidate")
    capsys.readouterr()
    with pytest.warns(UserWarning, match=r"1 of 9 images missing or unreadable: .*broken.jpg \(not an image"):
        main(["predict", *FAST, "--ckpt_path=last", f"--data.predict_path={images}",
              "--prediction_writer.path=captions.jsonl"])
    assert "written to captions.jsonl" in capsys.readouterr().out
    rows = [json.loads(line) for line in (tmp_path / "captions.jsonl").read_text().splitlines()]
    assert [r["image"].rsplit("/", 1)[-1] for r in rows] == ["anim.gif", "clear.png", "deep.tif", "float.tiff",
                                                             "frame.ppm", "gray.png", "photo.jfif", "scan.bmp"]
    assert all(isinstance(r["caption"], str) and r["score"] <= 0 for r in rows)

    for name in ("gray.png", "clear.png", "deep.tif", "float.tiff", "scan.bmp", "anim.gif", "photo.jfif", "frame.ppm"):
        (images / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    for folder, why in ((images, r"9 of 9 images missing or unreadable: .*; none is left"),
                        (tmp_path / "empty", "the folder is empty; expected image files")):
        with pytest.raises(SystemExit) as exit_status:
            exit_on_user_error(lambda f=folder: main(["predict", *FAST, "--ckpt_path=last",
                                                      f"--data.predict_path={f}"]))
        assert exit_status.value.code == 2
        assert re.search(rf"^error: --data.predict_path {folder}: {why}$", capsys.readouterr().err, re.MULTILINE)


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


def test_show_and_tell_without_attention_trains_and_decodes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", *FAST, *SHORT, "--model.attention=none", "--model.cell=gru"])
    folder = tmp_path / cli.trainer.checkpoint_callback.dirpath
    assert (folder / "val_samples.png").exists() and not (folder / "val_attention.png").exists()
    assert "val_bleu4" in cli.trainer.callback_metrics
