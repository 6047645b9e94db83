"""The video app through its command line: configs, fit/test/predict from a checkpoint alone, the mean-pooling
head, the feature cache, W&B offline, DDP on 2 CPU processes with the accuracy of 1, exact resume after SIGKILL."""

from __future__ import annotations

import signal

import pandas as pd
import pytest
import torch

from apps.video import main
from apps.video.model import FeatureCache
from rnn_core import ConvRecurrent
from tests.conftest import ROOT, metrics_csv, run_app
from tests.test_video_data import write_clip

SMALL = ["--trainer.enable_progress_bar=false", "--data.num_frames=4", "--data.frame_size=16",
         "--data.generated_sizes=[32,9,9]", "--data.batch_size=8", "--model.hidden_size=8", "--data.index_workers=2"]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]
CONFIGS = sorted(ROOT.glob("configs/video/*.yaml"))


@pytest.fixture
def fast(tmp_path) -> list[str]:
    """SMALL with this test's own cache of rendered clips and index."""
    return [*SMALL, f"--data.cache_dir={tmp_path / 'cache'}"]


def _fake_ucf101(root):
    """Two classes of two groups of tiny AVI files, and split 1 of the official lists."""
    classes = ("ApplyLipstick", "Archery")
    for c, name in enumerate(classes):
        for g in (1, 2):
            write_clip(root / name / f"v_{name}_g{g:02d}_c01.avi", frames=6, seed=10 * c + g)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyLipstick\n2 Archery\n")
    (lists / "trainlist01.txt").write_text("".join(f"{n}/v_{n}_g02_c01.avi {c + 1}\n" for c, n in enumerate(classes)))
    (lists / "testlist01.txt").write_text("".join(f"{n}/v_{n}_g01_c01.avi\n" for n in classes))
    return ["--data.path", str(root), "--data.val_fraction=0"]


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_every_config_runs_fit_with_fast_dev_run(config, tmp_path, monkeypatch, fast):
    monkeypatch.chdir(tmp_path)
    args = ["fit", "--config", str(config), *fast, "--trainer.fast_dev_run=true", "--data.num_workers=0"]
    if config.name != "default.yaml":  # real-data configs: a fake layout, and no ImageNet download here
        args += [*_fake_ucf101(tmp_path / "UCF-101"), "--model.weights=null", "--model.backbone=resnet18",
                 "--data.batch_size=2", "--data.test_clips=2", f"--model.feature_cache={tmp_path / 'features'}",
                 "--model.plateau_patience=0"]  # the tiny layout has no validation videos to plateau on
    cli = main(args)
    assert cli.trainer.state.finished and cli.trainer.global_step == 1


def test_fit_test_and_predict_from_the_checkpoint_alone(tmp_path, monkeypatch, capsys, fast):
    monkeypatch.chdir(tmp_path)
    fit = main(["fit", *fast, "--trainer.max_epochs=2", "--trainer.limit_train_batches=2"])
    out = capsys.readouterr().out
    folder = tmp_path / fit.trainer.checkpoint_callback.dirpath
    assert {"last.ckpt", "config.yaml", "val_confusion.png"} <= {p.name for p in folder.iterdir()}
    assert "best checkpoint: " in out and "val_confusion.png" in out
    checkpoint = torch.load(folder / "last.ckpt", weights_only=False)
    assert checkpoint["artefacts"]["class_names"][:2] == ["grow", "move_down"]
    metrics = metrics_csv(tmp_path / "outputs/video").dropna(subset=["val_acc"])
    assert {"val_loss", "val_acc", "val_top5"} <= set(metrics.columns)

    tested = main(["test", *fast, "--ckpt_path=last", "--data.test_clips=3"])
    results = tested.trainer.callback_metrics
    assert 0 <= results["test_acc"] <= results["test_top5"] <= 1
    out = capsys.readouterr().out
    assert "move_left" in out and "per-class accuracy: " in out
    per_class = pd.read_csv(next((tmp_path / "outputs/video").rglob("test_per_class.csv")))
    assert per_class["videos"].sum() == 9 and len(per_class) == 8

    clips = tmp_path / "clips"
    write_clip(clips / "a.mp4", frames=3, width=40, height=24)
    write_clip(clips / "b.mp4", frames=9)
    (clips / "broken.mp4").write_bytes(b"not a video")
    with pytest.warns(UserWarning, match="skipped 1 of 3 videos"):
        main(["predict", *fast, "--ckpt_path=last", f"--data.predict_path={clips}",
              "--prediction_writer.path=classes.csv"])
    assert "written to classes.csv" in capsys.readouterr().out
    rows = pd.read_csv(tmp_path / "classes.csv")
    assert rows["video"].tolist() == ["a.mp4", "b.mp4"]
    class_names = checkpoint["artefacts"]["class_names"]
    probabilities = rows[[f"p_{c}" for c in class_names]]
    assert (probabilities.sum(1) - 1).abs().max() < 1e-3 and set(rows["class"]) <= set(class_names)


def test_mean_head_has_no_recurrence_and_trains(tmp_path, monkeypatch, fast):
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", *fast, *SHORT, "--model.head=mean"])
    assert cli.model.classifier.in_features == cli.model.encoder.feature_size
    assert "val_acc" in cli.trainer.callback_metrics
    with pytest.raises(ValueError, match="unknown head 'max'"):
        main(["fit", *fast, "--model.head=max"])


def test_conv_recurrence_reads_the_frame_grid_and_trains(tmp_path, monkeypatch, fast):
    monkeypatch.chdir(tmp_path)
    cli = main(["fit", *fast, *SHORT, "--model.recurrence=conv", "--model.spatial_grid=2", "--model.cell=lstm"])
    assert isinstance(cli.model.encoder.rnn, ConvRecurrent) and cli.model.encoder.rnn.state_names == ("h", "c")
    assert cli.model.classifier.in_features == 2 * 8  # the mean and max of the 8-channel state over the grid
    assert "val_acc" in cli.trainer.callback_metrics
    with pytest.raises(ValueError, match="runs one direction"):
        main(["fit", *fast, "--model.recurrence=conv", "--model.bidirectional=true"])


def test_feature_cache_runs_each_frame_through_the_cnn_once(tmp_path, monkeypatch, fast):
    monkeypatch.chdir(tmp_path)
    calls = []
    features = FeatureCache.features

    def counting(self, names, indices, frames, compute):
        return features(self, names, indices, frames, lambda x: calls.append(len(x)) or compute(x))

    monkeypatch.setattr(FeatureCache, "features", counting)
    args = ["fit", *fast, "--trainer.limit_val_batches=0", "--trainer.limit_train_batches=1",
            "--data.generated_sizes=[8,2,2]", "--model.finetune_from_epoch=null",
            f"--model.feature_cache={tmp_path / 'features'}"]
    main([*args, "--trainer.max_epochs=1"])
    first = sum(calls)
    assert first > 0 and list((tmp_path / "features").glob("features-*/*.pt"))
    calls.clear()
    main([*args, "--trainer.max_epochs=1", "--data.num_frames=4"])  # a new run, the same frozen backbone
    assert sum(calls) < first  # frames seen in the first run come from the files


DDP = ["--config", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2"]
TEST_METRICS = ["test_loss", "test_acc", "test_top5"]


def test_ddp_on_two_cpu_processes_gives_the_accuracy_of_one(tmp_path, fast):
    fit = tmp_path / "fit"
    fit.mkdir()
    run_app(["fit", *fast, *DDP, *SHORT], fit, app="video")
    (checkpoint,) = fit.rglob("last.ckpt")
    results = {}
    for processes, extra in ((1, []), (2, DDP)):
        folder = tmp_path / f"test{processes}"
        folder.mkdir()
        run_app(["test", *fast, *extra, f"--ckpt_path={checkpoint}", "--data.test_clips=2"], folder, app="video")
        results[processes] = metrics_csv(folder)[TEST_METRICS].iloc[-1]
    # 9 test clips: with 2 processes one clip is classified twice and must count once
    pd.testing.assert_series_equal(results[1], results[2], rtol=1e-6)


KILLER = '''
import os, signal
from lightning.pytorch.callbacks import Callback

class KillAt(Callback):
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == 3:
            os.kill(os.getpid(), signal.SIGKILL)
'''


def test_resume_after_sigkill_matches_an_uninterrupted_run(tmp_path, fast):
    (tmp_path / "killer.py").write_text(KILLER)
    args = ["fit", *fast, "--trainer.max_epochs=3", "--trainer.limit_train_batches=2", "--model.dropout=0.3"]
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    whole.mkdir()
    broken.mkdir()
    run_app(args, whole, app="video")
    killed = run_app([*args, "--trainer.callbacks+=killer.KillAt"], broken, env={"PYTHONPATH": str(tmp_path)},
                     check=False, app="video")
    assert killed.returncode == -signal.SIGKILL  # in the second epoch
    run_app([*args, "--ckpt_path=last"], broken, app="video")
    ends = [torch.load(next(folder.rglob(f"{version}/checkpoints/last.ckpt")), weights_only=False)
            for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert ends[0]["global_step"] == ends[1]["global_step"] == 6
    for name, tensor in ends[0]["state_dict"].items():
        assert torch.equal(tensor, ends[1]["state_dict"][name]), name
    accuracy = [pd.read_csv(next(folder.rglob(f"{version}/metrics.csv"))).dropna(subset=["val_acc"]).iloc[-1]
                for folder, version in ((whole, "version_0"), (broken, "version_1"))]
    assert accuracy[0]["val_acc"] == accuracy[1]["val_acc"] and accuracy[0]["val_loss"] == accuracy[1]["val_loss"]


def test_wandb_offline_run_holds_config_and_confusion_matrix(tmp_path, fast):
    run_app(["fit", *fast, *SHORT, "--config", str(ROOT / "configs/trainer/wandb.yaml"), "--model.cell=gru"],
            tmp_path, env={"WANDB_MODE": "offline", "HOME": str(tmp_path), "WANDB_API_KEY": ""}, app="video")
    (run,) = (tmp_path / "outputs/wandb").glob("offline-run-*")
    assert "cell: gru" in (run / "files/lightning_config.yaml").read_text()
    assert list((run / "files/media/images").glob("val_confusion_*.png"))
    assert b"val_acc" in next(run.glob("run-*.wandb")).read_bytes()


def test_help_documents_every_option(capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--help"])
    text = capsys.readouterr().out
    for option in ("--model.head", "--model.feature_cache", "--model.finetune_from_epoch", "--model.spatial_grid",
                   "--model.feature_norm", "--model.recurrence", "--model.kernel_size",
                   "--data.path", "--data.fold", "--data.test_clips", "--data.on_bad_video"):
        assert option in text
