"""Video data that is wrong: videos that pass the index and fail to decode (skipped and named, not a traceback),
splits left empty, options the dataset does not read, stale or damaged caches, checkpoints of other classes."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from apps.common.errors import UserError
from apps.video import main
from apps.video.data import VideoDataModule, VideoDecodeError, decode_frames, probe_video
from apps.video.data.dataset import collate
from apps.video.model import VideoModel
from tests.video_files import cut_off, punch_hole, write_clip

torch.set_num_threads(1)

FAST = ["--trainer.enable_progress_bar=false", "--data.num_frames=4", "--data.frame_size=16", "--data.batch_size=2",
        "--model.hidden_size=8", "--data.index_workers=1", "--trainer.max_epochs=1"]
#: the two ways a file passes the index and then fails to decode: an AVI cut off (its header promises 16 frames,
#: one decodes) and an MP4 with a hole in its frames (its header, at the end, is whole)
DAMAGED = ("cut.avi", "holes.mp4")


def module(tmp_path: Path, **options) -> VideoDataModule:
    defaults = {"num_frames": 4, "frame_size": 16, "batch_size": 2, "cache_dir": str(tmp_path / "cache"),
                "index_workers": 1}
    return VideoDataModule(**{**defaults, **options})


def damaged(path: Path) -> Path:
    """A 16-frame clip that the index reads and that fails to decode: an AVI cut off, an MP4 with a hole."""
    return (cut_off if path.suffix == ".avi" else punch_hole)(write_clip(path, frames=16))


def class_folders(root: Path, groups: int = 3, bad: tuple[str, ...] = ()) -> Path:
    """Classes a and b, ``groups`` one-clip groups each, and the damaged files named in ``bad`` (in class a)."""
    for c in ("a", "b"):
        for g in range(groups):
            write_clip(root / c / f"v_{c}_g{g:02d}_c01.mp4", frames=8, seed=g)
    for name in bad:
        damaged(root / "a" / f"v_a_g00_{name}")
    return root


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A checkpoint of a tiny model of classes a and b (validate, test and predict need a trained model)."""
    folder = tmp_path_factory.mktemp("trained")
    root = class_folders(folder / "videos", groups=2)
    main(["fit", *FAST, f"--data.cache_dir={folder / 'cache'}", "--data.dataset=folder", f"--data.path={root}",
          "--data.val_fraction=0", "--data.test_fraction=0", "--trainer.limit_train_batches=1",
          f"--trainer.default_root_dir={folder}"])
    return str(next(folder.rglob("last.ckpt")))


def run_quietly(args: list[str]) -> list[str]:
    """Runs the command line and returns the messages of the warnings it gave."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        main(args)
    return [str(w.message) for w in caught]


# ------------------------------------------------------------------------------------------ failing at decode time


@pytest.mark.parametrize("name", DAMAGED)
def test_damaged_files_pass_the_index_and_fail_to_decode(tmp_path, name):
    path = damaged(tmp_path / name)
    info = probe_video(path)
    assert info.frames == 16
    with pytest.raises(VideoDecodeError, match=r"decoding stopped after [12] of 16 frames"):
        decode_frames(path, [2, 6, 10, 14], 16, promised=info.frames)


def test_a_file_gone_or_replaced_after_the_index_fails_to_decode(tmp_path):
    gone, replaced = write_clip(tmp_path / "gone.mp4"), write_clip(tmp_path / "replaced.mp4")
    gone.unlink()
    replaced.write_bytes(b"no longer a video")
    with pytest.raises(VideoDecodeError, match="FileNotFoundError"):
        decode_frames(gone, [0, 1], 16, promised=8)
    with pytest.raises(VideoDecodeError, match="InvalidDataError"):
        decode_frames(replaced, [0, 1], 16, promised=8)


def test_a_short_end_within_a_tenth_is_padded_not_a_failure(tmp_path):
    path = write_clip(tmp_path / "a.mp4", frames=16)
    assert decode_frames(path, [0, 15, 16, 17], 16, promised=18).shape == (4, 16, 16, 3)  # 2 of 18 missing
    with pytest.raises(VideoDecodeError, match="stopped after 16 of 20 frames"):
        decode_frames(path, [0, 15, 19], 16, promised=20)


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_leave_out_what_fails_to_decode_and_list_it(tmp_path, workers):
    folder = tmp_path / "clips"
    for i in range(3):
        write_clip(folder / f"good{i}.mp4", frames=8, seed=i)
    for name in DAMAGED:
        damaged(folder / name)
    data = module(tmp_path, predict_path=str(folder), batch_size=5, num_workers=workers)
    data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    assert batch["name"] == ["good0.mp4", "good1.mp4", "good2.mp4"] and batch["frames"].shape[0] == 3
    assert [(i, name) for i, name, _ in batch["skipped"]] == [(0, "cut.avi"), (4, "holes.mp4")]
    assert all("decoding stopped" in why for _, _, why in batch["skipped"])


def test_a_batch_none_of_whose_videos_decodes_is_empty_and_the_model_passes_it(tmp_path):
    batch = collate([{"index": 3, "name": "a.avi", "failed": "decoding stopped"}])
    assert batch["skipped"] == [(3, "a.avi", "decoding stopped")] and batch["name"] == [] and not len(batch["index"])
    model = VideoModel(backbone="resnet18", weights=None, hidden_size=4)
    model.adopt({"class_names": ["a", "b"]})
    loss = model.training_step(batch, 0)
    loss.backward()  # a zero gradient for every trained weight: DDP processes step together
    assert float(loss) == 0 and all(float(p.grad.abs().sum()) == 0 for p in model.parameters() if p.requires_grad)
    assert model.evaluate(batch, "val") == [] and model.predict_step(batch, 0) == []


def test_on_bad_video_error_stops_at_the_first_that_fails_to_decode(tmp_path):
    folder = tmp_path / "clips"
    write_clip(folder / "good.mp4")
    damaged(folder / "cut.avi")
    data = module(tmp_path, predict_path=str(folder), on_bad_video="error")
    data.setup("predict")
    with pytest.raises(UserError, match=r"cut\.avi: cannot be read as a video \(decoding stopped after 1 of 16"):
        next(iter(data.predict_dataloader()))


@pytest.mark.parametrize("workers", [0, 2])
def test_predict_writes_every_good_video_and_names_the_others_once(tmp_path, monkeypatch, checkpoint, workers):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "clips"
    for i in range(3):
        write_clip(folder / f"good{i}.mp4", frames=8, seed=i)
    for name in DAMAGED:
        damaged(folder / name)
    messages = run_quietly(["predict", *FAST, f"--data.cache_dir={tmp_path / 'cache'}",
                            f"--data.predict_path={folder}", f"--data.num_workers={workers}",
                            "--prediction_writer.path=out.csv", f"--ckpt_path={checkpoint}"])
    assert pd.read_csv(tmp_path / "out.csv")["video"].tolist() == ["good0.mp4", "good1.mp4", "good2.mp4"]
    skipped = [m for m in messages if "skipped" in m]
    assert len(skipped) == 1 and skipped[0].startswith(
        f"predict data in {folder} (--data.predict_path): skipped 2 of 5 videos that are missing, unreadable or "
        "have no frames: cut.avi (decoding stopped after 1 of 16 frames), holes.mp4 (decoding stopped after 2")


def test_training_skips_and_names_what_fails_to_decode_in_workers(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = class_folders(tmp_path / "videos", bad=("c02.avi",))
    messages = run_quietly(["fit", *FAST, f"--data.cache_dir={tmp_path / 'cache'}", "--data.dataset=folder",
                            f"--data.path={root}", "--data.val_fraction=0", "--data.test_fraction=0",
                            "--data.num_workers=2", "--trainer.max_epochs=2"])
    skipped = [m for m in messages if "skipped" in m]
    assert skipped == [f"the train split of folder data in {root}: skipped 1 of 7 videos that are missing, unreadable "
                       "or have no frames: a/v_a_g00_c02.avi (decoding stopped after 1 of 16 frames)"]  # once


@pytest.mark.parametrize(("command", "split"), [("fit", "train"), ("test", "test"), ("predict", "predict")])
def test_a_split_none_of_whose_videos_decodes_is_one_user_error(tmp_path, monkeypatch, checkpoint, command, split):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "videos"
    for c in ("a", "b"):
        for g in range(2):
            damaged(root / c / f"v_{c}_g{g:02d}_c01{'.avi' if g else '.mp4'}")
    args = [command, *FAST, f"--data.cache_dir={tmp_path / 'cache'}"]
    args += [f"--ckpt_path={checkpoint}"] if command != "fit" else []
    if command == "predict":
        args += [f"--data.predict_path={root / 'a'}"]
        what = f"predict data in {root / 'a'} \\(--data.predict_path\\)"
    else:
        test_fraction = 0.5 if split == "test" else 0
        args += ["--data.dataset=folder", f"--data.path={root}", "--data.val_fraction=0",
                 f"--data.test_fraction={test_fraction}"]
        what = f"the {split} split of folder data in {root}"
    with pytest.raises(UserError, match=f"every video of {what} is missing, unreadable or has no frames"):
        run_quietly(args)
