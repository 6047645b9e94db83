"""The registry of app cases the contract suite (tests/test_contract.py) runs every cross-app behaviour over.

Adding an app to the suite is adding one AppCase: the flags that make it tiny, the metrics to compare, the options
that make a run depend on the random state, what its W&B run and its run folder must hold, and fake data in the
format of each real-data config.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from tests.conftest import ETT_COLUMNS, write_series_csv
from tests.video_files import write_clip


@dataclass(frozen=True)
class AppCase:
    """One app as the contract suite sees it."""

    name: str
    #: a tiny model and data: every run in seconds (``{tmp}`` is the test's own folder)
    fast: tuple[str, ...]
    #: test metrics that 1 and 2 processes must give alike
    test_metrics: tuple[str, ...]
    #: a validation metric that a resumed run must reproduce exactly
    val_metric: str
    #: options that make training depend on the random state (dropout, sampling), which a resume must restore
    random_options: tuple[str, ...]
    #: training batches per epoch in the resume test; the run is killed in the second epoch
    batches_per_epoch: int
    #: an option whose value the W&B run's config must show: the flag, the config file's line, the run's record
    wandb_option: tuple[str, str, bytes]
    #: files under the W&B run's media folder (globs)
    wandb_media: tuple[str, ...]
    #: files beside the checkpoints after a short fit
    run_files: tuple[str, ...]
    #: options --help must document
    help_options: tuple[str, ...]
    #: a W&B table (glob under the media folder) and its columns, where the app logs one
    wandb_table: tuple[str, tuple[str, ...]] | None = None
    #: predict options for test data, whose rows 1 and 2 processes must give alike (empty: not compared)
    predict_on_test: tuple[str, ...] = ()
    #: per real-data config: writes fake data in its format under a folder and returns the flags that use it
    real_data: dict[str, Callable[[Path], list[str]]] = field(default_factory=dict)

    def flags(self, tmp: Path) -> list[str]:
        return [flag.replace("{tmp}", str(tmp)) for flag in self.fast]

    @property
    def configs(self) -> list[Path]:
        return sorted((Path(__file__).resolve().parents[1] / "configs" / self.name).glob("*.yaml"))


def fake_multi30k(folder: Path) -> list[str]:
    """Multi30k's gzipped raw files, 40 short pairs a split."""
    folder.mkdir(parents=True)
    for split in ("train", "val", "test_2016_flickr"):
        for lang, words in (("de", "ein Hund läuft"), ("en", "a dog runs")):
            with gzip.open(folder / f"{split}.{lang}.gz", "wt", encoding="utf-8") as f:
                f.writelines(f"{words} {i}\n" for i in range(40))
    return [f"--data.path={folder}", "--data.vocab_size=100"]


def fake_karpathy(folder: Path) -> list[str]:
    """Eight tiny images and a Karpathy split JSON in the layout of dataset_flickr8k.json (no ImageNet download)."""
    (folder / "images").mkdir(parents=True)
    items = []
    for i, split in enumerate(["train"] * 4 + ["restval", "val", "test", "test"]):
        Image.new("RGB", (40, 30), (30 * i, 100, 200)).save(folder / "images" / f"{i}.jpg")
        items.append({"filename": f"{i}.jpg", "split": split,
                      "sentences": [{"raw": "A dog runs on the grass."}, {"raw": f"a photo number {i}"}]})
    (folder / "dataset_flickr8k.json").write_text(json.dumps({"images": items}))
    return ["--data.path", str(folder / "images"), "--data.annotations", str(folder / "dataset_flickr8k.json"),
            "--model.weights=null", "--model.backbone=resnet18", "--data.batch_size=2", "--data.min_word_count=1"]


def fake_ucf101(root: Path) -> list[str]:
    """Two classes of three groups of tiny AVI files, and split 1 of the official lists (two groups to train on,
    one held out for validation; no ImageNet download)."""
    classes = ("ApplyLipstick", "Archery")
    for c, name in enumerate(classes):
        for g in (1, 2, 3):
            write_clip(root / name / f"v_{name}_g{g:02d}_c01.avi", frames=6, seed=10 * c + g)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyLipstick\n2 Archery\n")
    (lists / "trainlist01.txt").write_text("".join(f"{n}/v_{n}_g0{g}_c01.avi {c + 1}\n" for c, n in enumerate(classes)
                                                   for g in (2, 3)))
    (lists / "testlist01.txt").write_text("".join(f"{n}/v_{n}_g01_c01.avi\n" for n in classes))
    return ["--data.path", str(root), "--data.val_fraction=0.5", "--model.weights=null", "--model.backbone=resnet18",
            "--data.batch_size=2", "--data.test_clips=2", f"--model.feature_cache={root.parent / 'features'}"]


def fake_shakespeare(folder: Path) -> list[str]:
    """A small text file in tiny-shakespeare's layout: speakers' names, then their lines."""
    folder.mkdir(parents=True)
    path = folder / "input.txt"
    path.write_text("".join(f"CITIZEN {i}:\nBefore we proceed any further, hear me speak.\n\n" for i in range(40)))
    return [f"--data.path={path}"]


def fake_etth1(folder: Path) -> list[str]:
    """An hourly file named like ETTh1 with a few rows more than the 20 months the ETT split uses."""
    folder.mkdir(parents=True)
    return [f"--data.path={write_series_csv(folder / 'ETTh1.csv', 14400 + 50, ETT_COLUMNS)}"]


CASES = [
    AppCase(
        name="translation",
        fast=("--trainer.enable_progress_bar=false", "--data.generated_sizes=[300,41,41]", "--data.batch_size=16",
              "--model.embedding_size=16", "--model.encoder_hidden_size=16", "--model.decoder_hidden_size=16",
              "--model.beam_size=2"),
        test_metrics=("test_loss", "test_bleu", "test_chrf", "test_bleu_tutorial"),
        val_metric="val_bleu",
        random_options=("--model.dropout=0.3", "--model.teacher_forcing=0.7"),
        batches_per_epoch=4,
        wandb_option=("--model.attention=general", "attention: general", b'"attention":"general"'),
        wandb_media=("images/val_attention_*.png",),
        wandb_table=("table/val_samples_*.table.json", ("source", "reference", "hypothesis")),
        run_files=("val_attention.png", "gradient_through_time.png"),
        help_options=("--model.attention", "--model.beam_size", "--data.path", "--data.tokenizer",
                      "--data.empty_lines", "additive (Bahdanau), dot or general (Luong)"),
        real_data={"multi30k.yaml": fake_multi30k},
    ),
    AppCase(
        name="captioning",
        fast=("--trainer.enable_progress_bar=false", "--data.generated_sizes=[96,21,21]", "--data.batch_size=16",
              "--data.image_size=32", "--model.embedding_size=16", "--model.hidden_size=16",
              "--model.attention_size=8", "--model.max_length=12", "--model.beam_size=2", "--data.num_workers=0"),
        test_metrics=("test_loss", "test_bleu1", "test_bleu4", "test_cider"),
        val_metric="val_bleu4",
        random_options=("--model.dropout=0.3", "--model.teacher_forcing=0.7", "--model.finetune_from_epoch=1"),
        batches_per_epoch=3,
        wandb_option=("--model.gate=false", "gate: false", b'"gate":false'),
        wandb_media=("images/val_attention_*.png",),
        wandb_table=("table/val_samples_*.table.json", ("image", "references", "caption")),
        run_files=("val_samples.png", "val_attention.png"),
        help_options=("--model.backbone", "--model.finetune_from_epoch", "--model.gate",
                      "--model.attention_regularization", "--data.path", "--data.annotations",
                      "--data.on_bad_image", "--data.min_word_count"),
        real_data={"flickr8k.yaml": fake_karpathy, "coco.yaml": fake_karpathy},
    ),
    AppCase(
        name="video",
        fast=("--trainer.enable_progress_bar=false", "--data.num_frames=4", "--data.frame_size=16",
              "--data.generated_sizes=[32,9,9]", "--data.batch_size=8", "--model.hidden_size=8",
              "--data.index_workers=2", "--data.cache_dir={tmp}/cache", "--data.test_clips=2",
              "--data.num_workers=0"),
        test_metrics=("test_loss", "test_acc", "test_top5"),
        val_metric="val_acc",
        random_options=("--model.dropout=0.3",),
        batches_per_epoch=2,
        wandb_option=("--model.cell=gru", "cell: gru", b'"cell":"gru"'),
        wandb_media=("images/val_confusion_*.png",),
        run_files=("val_confusion.png",),
        help_options=("--model.head", "--model.feature_cache", "--model.finetune_from_epoch", "--model.spatial_grid",
                      "--model.feature_norm", "--model.recurrence", "--model.kernel_size", "--data.path",
                      "--data.fold", "--data.test_clips", "--data.on_bad_video"),
        real_data={"ucf101.yaml": fake_ucf101},
    ),
    AppCase(
        name="forecasting",
        fast=("--trainer.enable_progress_bar=false", "--data.length=1500", "--data.batch_size=16",
              "--model.hidden_size=16"),
        test_metrics=("test_mse", "test_mae", "test_mae_original", "test_rmse_original", "test_smape", "test_mase"),
        val_metric="val_mse",
        random_options=("--model.num_layers=2", "--model.dropout=0.3"),
        batches_per_epoch=5,
        wandb_option=("--model.loss=quantile", "loss: quantile", b'"loss":"quantile"'),
        wandb_media=("images/forecast_*.png",),
        run_files=("forecast.png", "gradient_through_time.png"),
        help_options=("steps per recurrent step", "--data.history_from_previous_split", "--checkpoint.save_last",
                      "--gradient_through_time.every_n_epochs", "--forecast_figure.num_windows",
                      "--prediction_writer.path", "--model.strategy", "--model.lr"),
        predict_on_test=("--data.predict_on=test",),
        real_data={"etth1.yaml": fake_etth1},
    ),
    AppCase(
        name="language_model",
        fast=("--trainer.enable_progress_bar=false", "--data.stdlib_chars=30000", "--data.batch_size=4",
              "--data.bptt=16", "--model.embedding_size=16", "--model.hidden_size=16", "--model.num_layers=1",
              "--model.max_new_tokens=20"),
        test_metrics=("test_loss", "test_ppl", "test_bpc"),
        val_metric="val_bpc",
        random_options=("--model.num_layers=2", "--model.dropout=0.3", "--model.input_dropout=0.2",
                        "--model.output_dropout=0.2", "--model.weight_dropout=0.3"),
        batches_per_epoch=4,
        wandb_option=("--model.cell=gru", "cell: gru", b'"cell":"gru"'),
        wandb_media=("table/val_samples_*.table.json",),
        wandb_table=("table/val_samples_*.table.json", ("prompt", "sample")),
        run_files=("val_samples.txt",),
        help_options=("--data.path", "--data.tokenizer", "--data.bptt", "--data.hf_dataset", "--data.predict_path",
                      "--model.weight_dropout", "--model.top_p", "--model.temperature", "byte-level"),
        real_data={"shakespeare.yaml": fake_shakespeare},
    ),
]
