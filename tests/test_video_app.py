"""The video app through its command line: configs, fit/test/predict from a checkpoint alone, the mean-pooling
head, the feature cache, W&B offline, DDP on 2 CPU processes with the accuracy of 1, exact resume after SIGKILL."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from apps.video import main
from apps.video.model import FeatureCache
from rnn_core import ConvRecurrent
from tests.conftest import metrics_csv
from tests.test_video_data import write_clip

SMALL = ["--trainer.enable_progress_bar=false", "--data.num_frames=4", "--data.frame_size=16",
         "--data.generated_sizes=[32,9,9]", "--data.batch_size=8", "--model.hidden_size=8", "--data.index_workers=2"]
SHORT = ["--trainer.max_epochs=1", "--trainer.limit_train_batches=2"]


@pytest.fixture
def fast(tmp_path) -> list[str]:
    """SMALL with this test's own cache of rendered clips and index."""
    return [*SMALL, f"--data.cache_dir={tmp_path / 'cache'}"]


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
