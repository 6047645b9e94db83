"""Video data: rendered motion clips, frame sampling, UCF101/HMDB51/folder splits, bad videos, index cache, predict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

import apps.video.data as video_data
import apps.video.data.index as video_index
import apps.video.data.pool as video_pool
from apps.common.errors import UserError
from apps.video.data import (
    GENERATED_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Video,
    VideoDataModule,
    clip_indices,
    clip_state,
    decode_frames,
    generate_clips,
    probe_video,
    render_clip,
    segment_indices,
    split_by_group,
    uniform_indices,
    video_group,
)
from tests.conftest import ROOT
from tests.video_files import write_clip


def module(tmp_path: Path, **options) -> VideoDataModule:
    defaults = {"num_frames": 4, "frame_size": 16, "batch_size": 4, "cache_dir": str(tmp_path / "cache"),
                "index_workers": 2}
    return VideoDataModule(**{**defaults, **options})


def names(data: VideoDataModule, split: str) -> list[str]:
    return [v.name for v in data.splits[split].videos]


# --------------------------------------------------------------------------------------------- rendered clips


def shape_mask(frames: np.ndarray) -> np.ndarray:
    """Where the shape is: pixels far from the frame's median (the background), (T, H, W) bool."""
    f = frames.astype(np.float32)
    return np.abs(f - np.median(f, axis=(1, 2), keepdims=True)).sum(-1) > 60


def cyclic_shift(a: np.ndarray, b: np.ndarray) -> tuple[int, int]:
    """The (dx, dy) that np.roll-s mask a onto mask b best (phase correlation; signed, wrapped to half the frame)."""
    spectrum = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
    peak = np.unravel_index(np.argmax(np.fft.ifft2(spectrum / (np.abs(spectrum) + 1e-9)).real), a.shape)
    dy, dx = (int(p) if p <= n // 2 else int(p) - n for p, n in zip(peak, a.shape, strict=True))
    return dx, dy


def turned(mask: np.ndarray, degrees: float) -> np.ndarray:
    """The mask turned clockwise on screen by ``degrees`` about its centroid (PIL turns counter-clockwise)."""
    ys, xs = np.nonzero(mask)
    image = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(image.rotate(-degrees, resample=Image.BILINEAR, center=(xs.mean(), ys.mean()))) > 127


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


@pytest.mark.parametrize("label", GENERATED_CLASSES)
def test_each_class_shows_its_motion(label):
    T, S = 16, 64
    for seed in range(4):
        rng = np.random.default_rng([3, seed])
        state = clip_state(label, rng, T, S, S)
        if label.startswith("rotate"):
            state.centre[:] = S / 2  # away from the edges, so that the turn is measured about the shape's centre
        mask = shape_mask(render_clip(state, S, S, rng))
        dx, dy = cyclic_shift(mask[0], mask[-1])
        area = mask[-1].sum() / mask[0].sum()
        if label.startswith("move"):
            want = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}[label]
            moved = dx * want[0] + dy * want[1]
            assert 0.25 * S <= moved <= 0.55 * S and abs(dx * want[1] + dy * want[0]) <= 1, (dx, dy)
            assert 0.8 < area < 1.25
        elif label in ("grow", "shrink"):
            assert (area > 1.6) if label == "grow" else (area < 1 / 1.6), area
        else:
            assert 0.75 < area < 1.33
            turn = (state.angle[3] - state.angle[0]) % (2 * math.pi)  # 3 frames of turning, either way
            step = math.degrees(min(turn, 2 * math.pi - turn))
            forward = label == "rotate_cw"
            cw, ccw = iou(turned(mask[0], step), mask[3]), iou(turned(mask[0], -step), mask[3])
            assert (cw > ccw + 0.1) if forward else (ccw > cw + 0.1), (cw, ccw)


def test_no_single_frame_tells_the_class():
    """The reference frame (T // 2): shape area, centroid and colour have the same mean for every class; the first
    frame's position and angle too (they wrap around)."""
    T, S, n = 16, 48, 120
    stats = {}
    for k, label in enumerate(GENERATED_CLASSES):
        rows = []
        for i in range(n):
            rng = np.random.default_rng([11, k, i])
            state = clip_state(label, rng, T, S, S)
            m = T // 2
            middle = video_data.ClipState(state.centre[m : m + 1], state.radius[m : m + 1], state.angle[m : m + 1],
                                          state.shape, state.colour, state.background)
            frame = render_clip(middle, S, S, rng)
            mask = shape_mask(frame)[0]
            ys, xs = np.nonzero(mask)
            first_angle = state.angle[0]
            rows.append([mask.sum(), xs.mean(), ys.mean(), frame[0][mask].mean(), state.centre[0, 0],
                         state.centre[0, 1], math.cos(first_angle), math.sin(first_angle)])
        stats[label] = np.array(rows)
    everything = np.concatenate(list(stats.values()))
    spread = everything.std(0) / math.sqrt(n)  # standard error of a class mean
    for label, rows in stats.items():
        z = np.abs(rows.mean(0) - everything.mean(0)) / spread
        assert z.max() < 4.5, (label, z.round(2))
    # and the motion is what differs: grow's first frame is smaller than its last, in every clip
    assert all(clip_state("grow", np.random.default_rng(i), T, S, S).radius[0] <
               clip_state("grow", np.random.default_rng(i), T, S, S).radius[-1] for i in range(5))


def test_generated_files_decode_to_the_rendered_frames(tmp_path):
    folder = generate_clips(tmp_path / "gen", (8, 8, 8), num_frames=8, frame_size=32, seed=5)
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == sorted(GENERATED_CLASSES)
    listed = [line for split in ("train", "val", "test") for line in (folder / f"{split}.txt").read_text().split()]
    assert len(listed) == len(set(listed)) == 24
    name = listed[3]
    label, number = name.split("/")[0], int(Path(name).stem.rsplit("_", 1)[1])
    rng = np.random.default_rng([5, number])
    rendered = render_clip(clip_state(label, rng, 8, 32, 32), 32, 32, rng)
    info = probe_video(folder / name)
    assert (info.frames, info.width, info.height, info.fps) == (8, 32, 32, 25.0)
    decoded = decode_frames(folder / name, list(range(8)), 32)
    assert decoded.shape == (8, 32, 32, 3) and decoded.dtype == np.uint8
    error = np.abs(decoded.astype(int) - rendered.astype(int))
    assert error.mean() < 4  # near lossless: colours survive
    mask = shape_mask(rendered)
    inside = mask & np.roll(mask, 1, 1) & np.roll(mask, -1, 1) & np.roll(mask, 1, 2) & np.roll(mask, -1, 2)
    assert inside.sum() > 50  # the shape's colour (away from its edges, which 4:2:0 chroma blurs)
    assert np.abs(decoded[inside].astype(int) - rendered[inside].astype(int)).mean() < 8
    # written once: a second call finds the set and renders nothing
    stamp = (folder / "test.txt").stat().st_mtime_ns
    generate_clips(folder, (8, 8, 8), num_frames=8, frame_size=32, seed=5)
    assert (folder / "test.txt").stat().st_mtime_ns == stamp


def test_generated_files_are_the_same_rendered_by_two_processes(tmp_path):
    one = generate_clips(tmp_path / "one", (40, 16, 16), num_frames=4, frame_size=32, seed=2, workers=1)
    two = generate_clips(tmp_path / "two", (40, 16, 16), num_frames=4, frame_size=32, seed=2, workers=2)
    for split in ("train", "val", "test"):
        assert (one / f"{split}.txt").read_text() == (two / f"{split}.txt").read_text()
    names = (one / "train.txt").read_text().split()
    assert len(names) == 40

    def frames(folder, name):
        return decode_frames(folder / name, range(4), 32).astype(float)

    for name, other in zip(names[::7], names[1::7], strict=True):
        # the same clip, up to the encoder: two renders of the same frames are not always the same H.264 bytes
        # (measured: 8 to 600 files in 3,000, each frame's mean difference under 1 grey level); another clip is far
        assert np.abs(frames(one, name) - frames(two, name)).mean((1, 2, 3)).max() < 2
        assert np.abs(frames(one, name) - frames(two, other)).mean() > 5


def test_generated_module_batches(tmp_path):
    data = module(tmp_path, generated_sizes=(16, 8, 8), num_frames=6, frame_size=32, test_clips=3)
    assert data.class_names == sorted(GENERATED_CLASSES) and data.num_classes == 8  # before setup
    data.prepare_data()
    data.setup("fit")
    data.setup("test")
    assert {s: len(d) for s, d in data.splits.items()} == {"train": 16, "val": 8, "test": 8}
    assert data.root.name.startswith("generated-") and data.root.parent == tmp_path / "cache" / "video"
    batch = next(iter(data.train_dataloader()))
    assert batch["frames"].shape == (4, 1, 6, 3, 32, 32) and batch["frames"].dtype == torch.float32
    assert batch["label"].dtype == torch.long and batch["index"].dtype == torch.long
    assert all(data.class_names[int(y)] == n.split("/")[0] for y, n in zip(batch["label"], batch["name"],
                                                                           strict=True))
    test = next(iter(data.test_dataloader()))
    assert test["frames"].shape == (4, 3, 6, 3, 32, 32)
    assert test["index"].tolist() == [0, 1, 2, 3]
    # normalised with ImageNet statistics: the background is dark grey, i.e. well below the mean
    pixels = test["frames"].permute(0, 1, 2, 4, 5, 3).reshape(-1, 3) * torch.tensor(IMAGENET_STD) + torch.tensor(
        IMAGENET_MEAN)
    assert pixels.min() >= 0 and pixels.max() <= 1 + 1e-5 and pixels.median() < 0.4
    val = next(iter(data.val_dataloader()))
    assert val["frames"].shape[:3] == (4, 1, 6)


# ------------------------------------------------------------------------------------------------- sampling


@pytest.mark.parametrize("n", [1, 3, 5, 8, 16, 17, 100])
def test_uniform_and_segment_indices(n):
    T = 8
    uniform = uniform_indices(n, T)
    assert len(uniform) == T and uniform == sorted(uniform) and min(uniform) >= 0 and max(uniform) < n
    if n >= T:
        assert len(set(uniform)) == T  # distinct frames
        assert uniform[0] < n / T and uniform[-1] >= n - n / T  # they span the clip
    else:
        assert sorted(set(uniform)) == list(range(n))  # every frame, repeated to fill T
    generator = torch.Generator().manual_seed(0)
    seen = set()
    for _ in range(50):
        segments = segment_indices(n, T, generator)
        assert len(segments) == T and segments == sorted(segments) and max(segments) < n
        if n >= T:
            for j, i in enumerate(segments):  # one frame inside each segment
                assert j * n // T <= i < (j + 1) * n // T
        else:
            assert sorted(set(segments)) == list(range(n))
        seen.update(segments)
    assert seen == set(range(n))  # random segments reach every frame
    clips = clip_indices(n, T, 3)
    assert len(clips) == 3 and clip_indices(n, T, 1) == [uniform]
    assert all(c == sorted(c) and max(c) < n for c in clips)
    if n >= 3 * T:
        assert clips[0] < clips[1] < clips[2]  # evenly spaced offsets


def test_short_clip_padded_by_repetition():
    assert uniform_indices(5, 8) == [0, 0, 1, 2, 2, 3, 4, 4]
    assert uniform_indices(1, 4) == [0, 0, 0, 0]


def test_decoding_past_the_end_repeats_the_last_frame(tmp_path):
    path = write_clip(tmp_path / "a.mp4", frames=5)
    frames = decode_frames(path, [0, 4, 6, 9], 16)
    assert frames.shape == (4, 16, 16, 3)
    assert np.array_equal(frames[1], frames[2]) and np.array_equal(frames[1], frames[3])
    assert not np.array_equal(frames[0], frames[1])


# --------------------------------------------------------------------------------------------- layouts


@pytest.fixture(scope="module")
def ucf_root(tmp_path_factory) -> Path:
    """A tiny UCF101: 2 classes x 3 groups x 2 clips, AVI files, with the split folder beside the videos. One class
    is spelt with another case in its file names, as UCF101's HandstandPushups is."""
    root = tmp_path_factory.mktemp("ucf") / "UCF-101"
    classes = {"ApplyLipstick": "ApplyLipstick", "HandstandPushups": "HandStandPushups"}
    for c, (folder, spelt) in enumerate(classes.items()):
        for g in (1, 2, 3):
            for k in (1, 2):
                write_clip(root / folder / f"v_{spelt}_g{g:02d}_c{k:02d}.avi", seed=c * 10 + g * 2 + k)
    lists = root / "ucfTrainTestlist"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyLipstick\n2 HandstandPushups\n")
    train = [f"{f}/v_{s}_g{g:02d}_c{k:02d}.avi {c + 1}" for c, (f, s) in enumerate(classes.items())
             for g in (2, 3) for k in (1, 2)]
    test = [f"{f}/v_{f}_g01_c{k:02d}.avi" for f in classes for k in (1, 2)]  # the lists' own spelling
    (lists / "trainlist01.txt").write_text("\n".join(train) + "\n")
    (lists / "testlist01.txt").write_text("\r\n".join(test) + "\r\n")
    return root


def test_ucf101_split_files(ucf_root, tmp_path):
    data = module(tmp_path, dataset="ucf101", path=str(ucf_root), val_fraction=0.5)
    assert data.class_names == ["ApplyLipstick", "HandstandPushups"]
    data.setup("fit")
    assert len(data.splits["test"]) == 4 and all("_g01_" in n for n in names(data, "test"))
    assert len(data.splits["train"]) + len(data.splits["val"]) == 8
    groups = {split: {video_group(n) for n in names(data, split)} for split in ("train", "val")}
    assert not groups["train"] & groups["val"] and len(groups["val"]) == 2  # one of two groups per class
    for v in data.splits["test"].videos:
        assert Path(v.path).is_file() and v.label == ("Handstand" in v.name)
    batch = next(iter(data.test_dataloader()))
    assert batch["frames"].shape == (4, 1, 4, 3, 16, 16)


def test_ucf101_without_split_folder_names_where_it_looked(ucf_root, tmp_path):
    data = module(tmp_path, dataset="ucf101", path=str(ucf_root), split_path=str(tmp_path))
    with pytest.raises(UserError, match="ucfTrainTestlist"):
        data.setup("fit")
    with pytest.raises(ValueError, match="fold must be 1, 2 or 3"):
        module(tmp_path, dataset="ucf101", path=str(ucf_root), fold=4)


def test_folder_split_by_group_on_real_files(ucf_root, tmp_path):
    data = module(tmp_path, dataset="folder", path=str(ucf_root), val_fraction=0.3, test_fraction=0.3, seed=1)
    data.setup("fit")
    groups = {s: {video_group(n) for n in names(data, s)} for s in ("train", "val", "test")}
    assert sum(len(g) for g in groups.values()) == 6 == len(set.union(*groups.values()))
    assert all(len(data.splits[s]) == 4 for s in ("train", "val", "test"))  # one group of 2 clips per class each


def test_split_by_group_never_shares_a_group():
    videos = [Video(None, f"c{c}/v_c{c}_g{g:02d}_c{k:02d}.avi", c, video_group(f"c{c}/v_c{c}_g{g:02d}_c{k:02d}.avi"))
              for c in range(3) for g in range(1, 11) for k in range(1, 1 + g % 4 + 1)]
    videos += [Video(None, f"c0/plain_{i}.mp4", 0, video_group(f"c0/plain_{i}.mp4")) for i in range(5)]
    splits = split_by_group(videos, {"val": 0.2, "test": 0.3}, seed=3)
    assert sum(len(s) for s in splits.values()) == len(videos)
    owner = {}
    for name, split in splits.items():
        for v in split:
            assert owner.setdefault(v.group, name) == name, v.group
        assert {v.label for v in split} == {0, 1, 2}  # every class in every split
    assert split_by_group(videos, {"val": 0.2, "test": 0.3}, seed=3) == splits
    assert split_by_group(videos, {"val": 0.2, "test": 0.3}, seed=4) != splits
    assert video_group("Run/v_Run_g08_c03.avi") == "Run/g8"
    assert video_group("brush_hair/April_09_brush_hair_u_nm_np1_ba_goo_2.avi", "hmdb51") == \
        "brush_hair/April_09_brush_hair_u_nm_np1_ba_goo"


def test_hmdb51_split_files(tmp_path):
    root = tmp_path / "hmdb51"
    splits = root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    clips = [("A", 0, 1), ("A", 1, 1), ("B", 0, 1), ("C", 0, 2), ("C", 1, 2), ("D", 0, 0)]  # source, clip, mark
    for c, cls in enumerate(("wave", "brush_hair")):
        lines = []
        for i, (source, clip, mark) in enumerate(clips):
            name = f"{source}_{cls}_f_nm_np1_fr_med_{clip}.avi"
            write_clip(root / cls / name, seed=c * 10 + i)
            lines.append(f"{name} {mark} ")
        (splits / f"{cls}_test_split1.txt").write_text("\n".join(lines) + "\n")
        (splits / f"{cls}_test_split2.txt").write_text("\n".join(lines) + "\n")
    data = module(tmp_path, dataset="hmdb51", path=str(root), val_fraction=0.5)
    assert data.class_names == ["brush_hair", "wave"]
    data.setup("fit")
    source = {s: [Path(n).name[0] for n in names(data, s)] for s in ("train", "val", "test")}
    assert sorted(source["test"]) == ["C"] * 4  # 2: test
    assert not any("D" in s for s in source.values())  # 0: unused
    assert sorted(source["train"] + source["val"]) == ["A"] * 4 + ["B"] * 2  # 1: train, of which ...
    for cls in ("wave", "brush_hair"):  # ... one of the two source videos per class is held out, clips together
        held = {Path(n).name[0] for n in names(data, "val") if n.startswith(cls)}
        kept = {Path(n).name[0] for n in names(data, "train") if n.startswith(cls)}
        assert len(held) == len(kept) == 1 and held != kept
    (splits / "wave_test_split1.txt").write_text("oops.avi 3\n")
    broken = module(tmp_path, dataset="hmdb51", path=str(root))
    with pytest.raises(ValueError, match=r"wave_test_split1.txt:1: expected"):
        broken.setup("fit")


def test_hmdb51_class_names_before_setup_are_the_ids_of_the_labels(tmp_path):
    """Class names whose split files sort otherwise than the names: climb_stairs_test_split1.txt < climb_test_..."""
    splits = tmp_path / "hmdb51" / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    for cls in ("climb", "climb_stairs"):
        (splits / f"{cls}_test_split1.txt").write_text(f"a_{cls}_1.avi 1\nb_{cls}_1.avi 2\n")
    data = module(tmp_path, dataset="hmdb51", path=str(splits.parent))
    before = data.class_names
    classes, listed = data.read_listing()
    assert before == classes
    assert all(classes[v.label] == v.name.split("/")[0] for split in listed.values() for v in split)


# ---------------------------------------------------------------------------------------- bad input, mixes


@pytest.fixture
def messy_root(tmp_path) -> Path:
    """A class-per-folder set of mixed sizes, frame rates, lengths and containers, with two broken files."""
    root = tmp_path / "videos"
    shapes = [(48, 32, 10, 5, ".mp4"), (40, 40, 30, 12, ".avi"), (64, 48, 25, 20, ".mkv"), (32, 24, 15, 3, ".mp4")]
    for c in ("a", "b"):
        for i, (w, h, fps, n, suffix) in enumerate(shapes):
            write_clip(root / c / f"clip{i}{suffix}", frames=n, width=w, height=h, fps=fps, seed=i)
    (root / "a" / "empty.mp4").write_bytes(b"")
    (root / "b" / "notes.mp4").write_text("not a video\n")
    return root


def test_bad_videos_skipped_with_a_count_or_an_error(messy_root, tmp_path):
    data = module(tmp_path, dataset="folder", path=str(messy_root), val_fraction=0.25, test_fraction=0.25)
    with pytest.warns(UserWarning, match=r"skipped 2 of 10 videos") as caught:
        data.setup("fit")
    message = str(caught[0].message)
    assert "a/empty.mp4" in message and "b/notes.mp4" in message
    assert sum(len(d) for d in data.splits.values()) == 8
    strict = module(tmp_path, dataset="folder", path=str(messy_root), on_bad_video="error")
    with pytest.raises(ValueError, match=r"(empty|notes)\.mp4: cannot be read as a video"):
        strict.setup("fit")


def test_mixed_sizes_and_frame_rates_batch_alike(messy_root, tmp_path):
    (messy_root / "a" / "empty.mp4").unlink()
    (messy_root / "b" / "notes.mp4").unlink()
    info = {p.name: probe_video(p) for p in (messy_root / "a").iterdir()}
    assert info["clip2.mkv"].frames == 20 and info["clip1.avi"].fps == 30 and info["clip0.mp4"].width == 48
    data = module(tmp_path, dataset="folder", path=str(messy_root), num_frames=8, val_fraction=0.25,
                  test_fraction=0.25, batch_size=8, num_workers=1)
    data.setup("fit")
    frames = {v.name: v.frames for v in data.splits["train"].videos}
    assert len(frames) == 4 and min(frames.values()) < 8  # a clip shorter than T is among them
    batch = next(iter(data.train_dataloader()))
    assert batch["frames"].shape == (4, 1, 8, 3, 16, 16)
    assert torch.isfinite(batch["frames"]).all()


def test_index_cache_makes_a_second_setup_probe_nothing(ucf_root, tmp_path, monkeypatch):
    first = module(tmp_path, dataset="ucf101", path=str(ucf_root))
    first.setup("fit")
    cache = list((tmp_path / "cache" / "video").glob("index-*.json"))
    assert len(cache) == 1

    def refuse(path):
        raise AssertionError(f"probed {path} again")

    monkeypatch.setattr(video_index, "probe_video", refuse)
    second = module(tmp_path, dataset="ucf101", path=str(ucf_root))
    second.setup("fit")
    second.setup("test")
    assert [names(second, s) for s in ("train", "val", "test")] == [names(first, s) for s in ("train", "val", "test")]
    # a changed file is probed again, and only it
    probed = []
    monkeypatch.setattr(video_index, "probe_video", lambda path: probed.append(Path(path).name) or VideoInfo())
    VideoInfo = lambda: video_data.VideoInfo(7, 25.0, 32, 32)  # noqa: E731
    changed = ucf_root / "ApplyLipstick" / "v_ApplyLipstick_g02_c01.avi"
    changed.touch()
    third = module(tmp_path, dataset="ucf101", path=str(ucf_root))
    third.setup("fit")
    assert probed == [changed.name]


def test_index_in_a_process_pool_matches_the_one_in_process(ucf_root, tmp_path, monkeypatch):
    files = video_data.video_files(ucf_root)
    alone = video_data.index_videos(files, tmp_path / "alone.json", workers=1)
    monkeypatch.setattr(video_pool, "POOL_THRESHOLD", 2)
    monkeypatch.setattr(video_pool.os, "cpu_count", lambda: 2)
    pooled = video_data.index_videos([*files, tmp_path / "gone.avi"], tmp_path / "pooled.json", workers=2)
    assert pooled == {**alone, str(tmp_path / "gone.avi"): "file not found"}
    assert all(info.frames == 8 and info.width == 32 for info in alone.values())


def test_folder_split_files_and_checkpoint_classes(ucf_root, tmp_path):
    lists = tmp_path / "lists"
    lists.mkdir()
    every = [f.relative_to(ucf_root).as_posix() for f in video_data.video_files(ucf_root)]
    (lists / "train.txt").write_text("\n".join(every[2:6] + every[8:]) + "\n")
    (lists / "test.txt").write_text("\n".join(every[:2] + every[6:8]) + "\n")
    data = module(tmp_path, dataset="folder", path=str(ucf_root), split_path=str(lists), val_fraction=0.5)
    data.setup("fit")
    assert sorted(names(data, "test")) == sorted(every[:2] + every[6:8])
    assert sorted(names(data, "train") + names(data, "val")) == sorted(every[2:6] + every[8:])
    assert len(data.splits["val"]) == 4  # no val.txt: one of the two training groups of each class
    checkpoint = tmp_path / "model.ckpt"
    torch.save({"artefacts": {"class_names": ["HandstandPushups", "ApplyLipstick"]}}, checkpoint)
    other = module(tmp_path, dataset="folder", path=str(ucf_root), split_path=str(lists))
    other.checkpoint_path = str(checkpoint)
    assert other.class_names == ["HandstandPushups", "ApplyLipstick"]  # what the model's ids mean
    with pytest.raises(ValueError, match="its class ids would mean other classes"):
        other.setup("fit")


# ----------------------------------------------------------------------------------------------- predict


def test_predict_from_a_folder_and_from_a_list(ucf_root, tmp_path):
    data = module(tmp_path, dataset="ucf101", path=str(ucf_root), predict_path=str(ucf_root / "ApplyLipstick"),
                  test_clips=2)
    data.setup("predict")
    assert len(data.splits["predict"]) == 6
    batch = next(iter(data.predict_dataloader()))
    assert batch["frames"].shape == (4, 2, 4, 3, 16, 16)
    assert batch["label"].tolist() == [-1] * 4 and batch["name"][0] == "v_ApplyLipstick_g01_c01.avi"

    listing = tmp_path / "lists" / "to_predict.txt"
    listing.parent.mkdir()
    absolute = ucf_root / "HandstandPushups" / "v_HandStandPushups_g03_c02.avi"
    (tmp_path / "lists" / "here.avi").write_bytes((ucf_root / "ApplyLipstick" / "v_ApplyLipstick_g01_c01.avi")
                                                  .read_bytes())
    listing.write_text(f"# videos to classify\n{absolute}\n\nhere.avi\nmissing.avi\n")
    data = module(tmp_path, dataset="ucf101", path=str(ucf_root), predict_path=str(listing))
    with pytest.warns(UserWarning, match=r"skipped 1 of 3 videos.*missing\.avi \(file not found\)"):
        data.setup("predict")
    batch = next(iter(data.predict_dataloader()))
    assert batch["name"] == [str(absolute), "here.avi"] and batch["frames"].shape == (2, 1, 4, 3, 16, 16)
    with pytest.raises(ValueError, match="predict_path"):
        module(tmp_path).setup("predict")


def test_options_are_checked(tmp_path):
    with pytest.raises(UserError, match=r"--data\.dataset 'kinetics' is unknown"):
        VideoDataModule(dataset="kinetics")
    with pytest.raises(ValueError, match=r"needs --data\.path"):
        VideoDataModule(dataset="folder")
    with pytest.raises(ValueError, match="on_bad_video"):
        VideoDataModule(on_bad_video="ignore")
    with pytest.raises(UserError, match="does not exist"):
        module(tmp_path, dataset="folder", path=str(tmp_path / "nowhere")).setup("fit")


def test_decode_benchmark_runs(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))  # benchmarks/ is not an installed package
    from benchmarks import video_decode

    video_decode.main(["--clips", "3", "--frames", "8", "--width", "64", "--height", "48", "--frame-size", "16",
                       "--num-frames", "4", "--batch-size", "2", "--workers", "0", "--epochs", "1", "--json"])
    report = json.loads(capsys.readouterr().out)
    decode, training = report["rows"]
    assert decode["num_workers"] == 0 and decode["clips"] == 3 and decode["frames_per_s"] == pytest.approx(
        4 * decode["clips_per_s"], rel=0.01)
    assert training["measure"] == "training step (default config)" and training["clips"] == 3
    config_frames = yaml.safe_load((ROOT / "configs/video/default.yaml").read_text())["data"]["num_frames"]
    assert training["frames_per_s"] == pytest.approx(config_frames * training["clips_per_s"], rel=0.01)
