"""Video data that is wrong: videos that pass the index and fail to decode (skipped and named, not a traceback),
splits left empty, options the dataset does not read, stale or damaged caches, checkpoints of other classes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pandas as pd
import pytest
import torch

from apps.common.errors import UserError
from apps.video import main
from apps.video.data import VideoDataModule, VideoDecodeError, decode_frames, index_videos, probe_video
from apps.video.data.dataset import collate
from apps.video.features import FeatureCache
from apps.video.model import VideoModel
from tests.conftest import ROOT, run_app
from tests.video_files import cut_off, punch_hole, write_clip

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


def good_and_damaged(folder: Path) -> Path:
    """Three good clips and the DAMAGED ones side by side."""
    for i in range(3):
        write_clip(folder / f"good{i}.mp4", frames=8, seed=i)
    for name in DAMAGED:
        damaged(folder / name)
    return folder


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
          "--data.val_fraction=0.5", "--data.test_fraction=0", "--trainer.limit_train_batches=1",
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
    folder = good_and_damaged(tmp_path / "clips")
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
    folder = good_and_damaged(tmp_path / "clips")
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
                            f"--data.path={root}", "--data.val_fraction=0.3", "--data.test_fraction=0",
                            "--data.num_workers=2", "--trainer.max_epochs=2"])
    skipped = [m for m in messages if "skipped" in m]
    assert skipped == [f"the train split of folder data in {root}: skipped 1 of 5 videos that are missing, unreadable "
                       "or have no frames: a/v_a_g00_c02.avi (decoding stopped after 1 of 16 frames)"]  # once


@pytest.mark.parametrize(("command", "split"), [("fit", "(train|val)"), ("test", "test"), ("predict", "predict")])
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
        fractions = (0, 0.5) if split == "test" else (0.5, 0)  # every video of both fit splits is damaged
        args += ["--data.dataset=folder", f"--data.path={root}", f"--data.val_fraction={fractions[0]}",
                 f"--data.test_fraction={fractions[1]}"]
        what = f"the {split} split of folder data in {root}"
    with pytest.raises(UserError, match=f"every video of {what} is missing, unreadable or has no frames"):
        run_quietly(args)


# ------------------------------------------------------------------------------------------------- empty splits


def test_empty_predict_data_is_one_user_error(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("no videos here\n")
    (tmp_path / "list.txt").write_text("# nothing yet\n\n")
    write_clip(tmp_path / "bad" / "x.mp4").write_bytes(b"not a video")
    for folder, why in [("empty", "the folder holds no video files"), ("notes", "the folder holds no video files"),
                        ("list.txt", "the file lists no videos")]:
        data = module(tmp_path, predict_path=str(tmp_path / folder))
        with pytest.raises(UserError, match=f"predict data in {tmp_path / folder} .* is empty: {why}"):
            data.setup("predict")
    with pytest.raises(UserError, match=r"every video of predict data in .*bad .* x\.mp4 \(InvalidDataError"):
        module(tmp_path, predict_path=str(tmp_path / "bad")).setup("predict")


def test_empty_splits_say_which_and_why(tmp_path):
    one_group = tmp_path / "one_group"
    for c in ("a", "b"):
        write_clip(one_group / c / f"v_{c}_g01_c01.mp4")
        write_clip(one_group / c / f"v_{c}_g01_c02.mp4")
    root = class_folders(tmp_path / "videos", groups=2)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("a/v_a_g00_c01.mp4\nb/v_b_g00_c01.mp4\n")
    (lists / "val.txt").write_text("# none\n")
    (lists / "test.txt").write_text("")
    cases = [
        ({"path": str(one_group)}, "fit", r"the val split of folder data in .*one_group is empty: --data\.val_fraction "
         r"0\.1 holds out whole groups of related videos"),
        ({"path": str(one_group), "val_fraction": 0.0}, "test", r"the test split of .* is empty: "
         r"--data\.test_fraction 0\.2 holds out whole groups"),
        ({"path": str(root), "val_fraction": 0.0}, "validate", r"the val split of .* is empty: "
         r"--data\.val_fraction is 0"),
        ({"path": str(root), "split_path": str(lists)}, "fit", r"the val split of .* is empty: .*lists/val\.txt lists "
         "no videos"),
        ({"path": str(root), "split_path": str(lists)}, "test", r"the test split of .* is empty: .*lists/test\.txt "
         "lists no videos"),
    ]
    for options, stage, message in cases:
        with pytest.raises(UserError, match=message):
            module(tmp_path, dataset="folder", **options).setup(stage)
    with pytest.raises(UserError, match=r"the val split of generated data .* is empty: --data\.generated_sizes gives"):
        module(tmp_path, generated_sizes=(8, 0, 2)).setup("validate")


def test_fitting_without_validation_is_one_user_error(tmp_path):
    """The best checkpoint is chosen on a validation metric: options that leave no validation say so."""
    root = class_folders(tmp_path / "videos", groups=2)
    data = module(tmp_path, dataset="folder", path=str(root), val_fraction=0.0, test_fraction=0.0)
    with pytest.raises(UserError, match=r"the val split of folder data in .*videos is empty: --data.val_fraction is 0"):
        data.setup("fit")
    generated = module(tmp_path, generated_sizes=(8, 0, 2))
    with pytest.raises(UserError, match=r"the val split of .* is empty: --data.generated_sizes gives it no clips"):
        generated.setup("fit")


def test_a_split_none_of_whose_videos_the_index_reads_is_one_user_error(tmp_path):
    root = class_folders(tmp_path / "videos", groups=2)
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "train.txt").write_text("a/v_a_g00_c01.mp4\nb/v_b_g00_c01.mp4\n")
    (lists / "test.txt").write_text("a/gone.mp4\nb/v_b_g01_c01.mp4\n")
    (root / "b" / "v_b_g01_c01.mp4").write_bytes(b"")
    data = module(tmp_path, dataset="folder", path=str(root), split_path=str(lists), val_fraction=0.0)
    with pytest.raises(UserError, match=r"every video of the test split of folder data in .*videos is missing, "
                                        r"unreadable or has no frames \(2\): a/gone\.mp4 \(file not found\), b/v_b"):
        data.setup("test")


# ------------------------------------------------------------------------------------------------------ options


def ucf101(root: Path, train_line: str = "a/v_a_g01_c01.avi 1") -> Path:
    lists = root / "ucfTrainTestlist"
    lists.mkdir(parents=True)
    (lists / "classInd.txt").write_text("1 a\n2 b\n")
    (lists / "trainlist01.txt").write_text(train_line + "\n")
    (lists / "testlist01.txt").write_text("b/v_b_g01_c01.avi\n")
    return root


@pytest.mark.parametrize(("options", "message"), [
    ({"dataset": "kinetics"}, r"--data\.dataset 'kinetics' is unknown"),
    ({"on_bad_video": "ignore"}, r"--data\.on_bad_video must be skip or error"),
    ({"num_frames": 0}, r"--data\.num_frames must be a positive whole number, got 0"),
    ({"frame_size": 0}, r"--data\.frame_size must be a positive"),
    ({"test_clips": 0}, r"--data\.test_clips must be a positive"),
    ({"batch_size": 0}, r"--data\.batch_size is 0; expected at least 1"),
    ({"index_workers": 0}, r"--data\.index_workers must be a positive"),
    ({"num_workers": -1}, r"--data\.num_workers is -1; expected 0 or more"),
    ({"decode_threads": -2}, r"--data\.decode_threads must be 0 or more"),
    ({"val_fraction": 0.6, "test_fraction": 0.5}, r"--data\.val_fraction and --data\.test_fraction must be"),
    ({"generated_sizes": (0, 2, 2)}, r"--data\.generated_sizes must be three clip counts"),
    ({"generated_sizes": (8, -1, 2)}, r"--data\.generated_sizes must be three clip counts"),
    ({"frame_size": 8}, r"--data\.frame_size must be at least 16 for the generated clips"),
    ({"path": "videos"}, r"--data\.path is not read by --data\.dataset generated"),
    ({"split_path": "lists"}, r"--data\.split_path is not read by --data\.dataset generated"),
    ({"val_fraction": 0.3}, r"--data\.val_fraction 0\.3 does not apply to --data\.dataset generated"),
    ({"fold": 2}, r"--data\.fold 2 does not apply to --data\.dataset generated"),
    ({"dataset": "folder"}, r"--data\.dataset folder needs --data\.path"),
    ({"dataset": "folder", "path": "videos", "fold": 3}, r"--data\.fold 3 does not apply to --data\.dataset folder"),
    ({"dataset": "ucf101", "path": "videos", "fold": 4}, r"--data\.fold must be 1, 2 or 3 \(the official splits of "
                                                         "ucf101\\), got 4"),
    ({"dataset": "hmdb51", "path": "videos", "fold": 0}, r"--data\.fold must be 1, 2 or 3"),
    ({"dataset": "ucf101", "path": "videos", "test_fraction": 0.3}, r"--data\.test_fraction 0\.3 does not apply to "
                                                                    r"--data\.dataset ucf101"),
])
def test_wrong_options_name_themselves_when_the_module_is_built(tmp_path, options, message):
    with pytest.raises(UserError, match=message):
        module(tmp_path, **options)


def test_options_that_split_files_replace_are_refused(tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "val.txt").write_text("a/x.mp4\n")
    with pytest.raises(UserError, match=r"--data\.val_fraction 0\.2 does not apply .*val\.txt in .*lists"):
        module(tmp_path, dataset="folder", path="videos", split_path=str(lists), val_fraction=0.2)
    with pytest.raises(UserError, match=r"--data\.test_fraction 0\.3 does not apply .*test\.txt in .*lists"):
        module(tmp_path, dataset="folder", path="videos", split_path=str(lists), test_fraction=0.3)


def test_ucf101_class_numbers_must_match_the_class_folders(tmp_path):
    for c in ("a", "b"):
        write_clip(tmp_path / "ucf" / c / f"v_{c}_g01_c01.avi")
    root = ucf101(tmp_path / "ucf", "a/v_a_g01_c01.avi 2")
    with pytest.raises(UserError, match=r"trainlist01\.txt:1: class number 2 of 'a/v_a_g01_c01\.avi' does not match "
                                        r"its folder 'a', number 1 in .*classInd\.txt"):
        module(tmp_path, dataset="ucf101", path=str(root)).setup("fit")


def test_the_command_line_names_the_option(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for flags, message in [(["--data.num_frames=0"], "--data.num_frames must be a positive whole number"),
                           (["--data.dataset=folder", f"--data.path={tmp_path}", "--data.fold=2"],
                            "--data.fold 2 does not apply to --data.dataset folder")]:
        with pytest.raises(UserError, match=message):
            main(["fit", *FAST, f"--data.cache_dir={tmp_path / 'cache'}", *flags])


# ------------------------------------------------------------------------------------------------------- caches


def stale_caches(fresh: dict) -> dict[str, tuple[bytes, str]]:
    """Index cache files of other versions or damaged, each with the warning's reason."""
    entries = fresh["videos"]
    older = {path: {k: v for k, v in entry.items() if k not in ("width", "height")} for path, entry in entries.items()}
    text = json.dumps(fresh).encode()
    return {
        "older version": (json.dumps({"version": 0, "videos": older}).encode(), "of format version 0"),
        "newer version": (json.dumps({"version": 2, "videos": {}}).encode(), "of format version 2"),
        "no version": (json.dumps({"videos": older}).encode(), "not a video index"),
        "a list": (json.dumps(list(entries)).encode(), "not a video index"),
        "videos a list": (json.dumps({"version": 1, "videos": list(entries)}).encode(), "not a video index"),
        "cut off": (text[: len(text) // 2], "unreadable \\(JSONDecodeError"),
        "not text": (b"\xff\xfe\x00\x01", "unreadable \\(JSONDecodeError"),
    }


def test_index_caches_of_other_versions_or_damaged_are_rebuilt_saying_so(tmp_path):
    files = [write_clip(tmp_path / "videos" / f"v{i}.mp4", frames=5 + i) for i in range(2)]
    cache = tmp_path / "index.json"
    fresh = index_videos(files, cache, workers=1)
    for name, (content, reason) in stale_caches(json.loads(cache.read_text())).items():
        cache.write_bytes(content)
        with pytest.warns(UserWarning, match=f"video index cache {cache} is {reason}.*probing every video again and "
                                             "rewriting it"):
            assert index_videos(files, cache, workers=1) == fresh, name
        assert json.loads(cache.read_text())["version"] == 1, name


def test_an_index_entry_missing_fields_is_probed_again(tmp_path, monkeypatch):
    files = [write_clip(tmp_path / "videos" / f"v{i}.mp4", frames=5 + i) for i in range(2)]
    cache = tmp_path / "index.json"
    fresh = index_videos(files, cache, workers=1)
    content = json.loads(cache.read_text())
    del content["videos"][str(files[0])]["frames"]
    content["videos"][str(files[1])]["width"] = "wide"
    cache.write_text(json.dumps(content))
    assert index_videos(files, cache, workers=1) == fresh


def test_an_index_cache_that_cannot_be_written_is_a_user_error(tmp_path):
    files = [write_clip(tmp_path / "videos" / "v.mp4")]
    cache = tmp_path / "index.json"
    cache.mkdir()  # a folder where the file should be
    with pytest.warns(UserWarning, match="is unreadable"), pytest.raises(
            UserError, match=f"cannot write the video index cache {cache} .*pass --data.cache_dir a writable folder"):
        index_videos(files, cache, workers=1)


def test_damaged_feature_cache_files_are_computed_again_with_one_warning(tmp_path):
    backbone = torch.nn.Conv2d(3, 2, 3)
    frames = torch.rand(2, 1, 3, 8, 8)
    compute = lambda x: x.mean((-1, -2))  # noqa: E731 - a stand-in for the CNN: (M, 1, 3, H, W) -> (M, 1, 3)
    first = FeatureCache(tmp_path, backbone)
    expected = first.features(["a", "b"], torch.tensor([[0], [1]]), frames, compute)
    first.flush()
    files = sorted(first.folder.glob("*.pt"))
    assert len(files) == 2 and not list(first.folder.glob(".*"))  # written whole, no temporary left
    files[0].write_bytes(files[0].read_bytes()[:40])  # cut off
    torch.save([1, 2, 3], files[1])  # not a table of frames
    again = FeatureCache(tmp_path, backbone)
    calls = []
    with pytest.warns(UserWarning, match="feature cache file .* is unreadable") as caught:
        got = again.features(["a", "b"], torch.tensor([[0], [1]]), frames, lambda x: calls.append(len(x)) or compute(x))
    assert len(caught) == 1 and calls == [2] and torch.allclose(got, expected)


def test_features_pooled_otherwise_are_kept_apart(tmp_path):
    backbone = torch.nn.Conv2d(3, 2, 3)
    assert FeatureCache(tmp_path, backbone, "grid 1").folder != FeatureCache(tmp_path, backbone, "grid 2").folder
    model = VideoModel(backbone="resnet18", weights=None, finetune_from_epoch=None, spatial_grid=2,
                       feature_cache=str(tmp_path))
    assert model.cache.folder == FeatureCache(tmp_path, model.image_encoder.features, "grid 2").folder


# -------------------------------------------------------------------------------------- checkpoints and classes


@pytest.mark.parametrize(("stored", "differ"), [
    (["cat", "dog"], "only in the checkpoint: cat, dog; only in the data: a, b"),
    (["a", "b", "c"], "only in the checkpoint: c; only in the data: none"),
    (["b", "a"], "the same names in another order: checkpoint b, a, data a, b"),
])
def test_a_checkpoint_of_other_classes_names_itself_the_data_and_the_classes(tmp_path, stored, differ):
    root = class_folders(tmp_path / "videos", groups=2)
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"artefacts": {"class_names": stored}}, checkpoint)
    data = module(tmp_path, dataset="folder", path=str(root), val_fraction=0.0)
    data.checkpoint_path = str(checkpoint)
    with pytest.raises(UserError, match=f"the checkpoint {checkpoint} knows {len(stored)} classes and folder data in "
                                        f"{root} 2, which differ \\({differ}\\); its class ids would mean other"):
        data.setup("test")


def test_a_checkpoint_without_class_names_is_not_a_video_model(tmp_path):
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"artefacts": {"tokenizer": "..."}}, checkpoint)
    data = module(tmp_path)
    data.checkpoint_path = str(checkpoint)
    with pytest.raises(UserError, match=f"the checkpoint {checkpoint} .* holds no class names"):
        data.artefacts()


def test_the_command_line_refuses_a_checkpoint_of_other_classes(tmp_path, monkeypatch, checkpoint):
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "other"
    for c in ("cat", "dog"):
        write_clip(root / c / f"v_{c}_g01_c01.mp4")
    with pytest.raises(UserError, match=f"the checkpoint {checkpoint} knows 2 classes and folder data in {root} 2, "
                                        "which differ \\(only in the checkpoint: a, b; only in the data: cat, dog\\)"):
        main(["test", *FAST, f"--data.cache_dir={tmp_path / 'cache'}", "--data.dataset=folder", f"--data.path={root}",
              "--data.val_fraction=0", f"--ckpt_path={checkpoint}"])


def test_under_ddp_every_good_prediction_is_written_and_the_skipped_are_named_once(tmp_path, checkpoint):
    folder = good_and_damaged(tmp_path / "clips")
    ddp = ["--config", str(ROOT / "configs/trainer/ddp.yaml"), "--trainer.accelerator=cpu", "--trainer.devices=2"]
    done = run_app(["predict", *FAST, *ddp, f"--data.cache_dir={tmp_path / 'cache'}", f"--data.predict_path={folder}",
                    f"--ckpt_path={checkpoint}", f"--prediction_writer.path={tmp_path / 'out.csv'}"], tmp_path,
                   app="video")
    assert pd.read_csv(tmp_path / "out.csv")["video"].tolist() == ["good0.mp4", "good1.mp4", "good2.mp4"]
    assert done.stderr.count("skipped 2 of 5 videos") == 1, done.stderr[-3000:]
