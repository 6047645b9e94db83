"""Video clips for classification: rendered motion clips, UCF101, HMDB51, any class-per-folder set of video files.

Every source is a folder of real video files read by one reader: the embedded default renders clips of a shape
that moves, rotates or changes size (8 classes, no single frame tells which) and writes them once as H.264 MP4
files (4:4:4, CRF 10: near lossless) into ``<cache_dir>/video/generated-<hash of the settings>/<class>/<class>_<i>.mp4``
with ``train.txt``, ``val.txt`` and ``test.txt`` beside them; after that it is read exactly as a real
class-per-folder data set.

Videos are decoded with PyAV. An index of every video (frame count, fps, width, height) is built once, in
parallel, and cached in ``<cache_dir>/video/index-<hash of the folder>.json`` keyed by path, size and mtime, so a
second setup probes nothing. Unreadable and zero-frame videos are left out with a count and the first few names
(``on_bad_video="skip"``) or are an error naming the file (``"error"``).

Frame sampling, by frame index (so clips of any frame rate cover their whole duration alike):

- training: TSN random segments -- the clip's frames cut into ``num_frames`` equal segments, one random frame each;
- validation: uniform -- the middle frame of each segment;
- test and predict: ``test_clips`` clips K, the k-th taking frame ``floor((j + (k + 0.5) / K) * N / T)`` of
  segment j, i.e. K uniform samplings at evenly spaced offsets inside the segments (K = 1 is the uniform one);
  the model averages its K predictions.

A clip of N < T frames is padded by repetition: the same formulas repeat frames evenly (N = 5, T = 8 gives frames
0 0 1 2 2 3 4 4). Only the needed frames are kept while decoding, which stops after the last needed one. Every frame
is resized to ``frame_size`` x ``frame_size`` (the whole picture, aspect ratio not kept), so mixed resolutions and
frame rates batch together.

Batches (see :func:`collate`) ALWAYS carry the clip dimension K, in every stage:

- ``frames``: float32 (B, K, T, 3, H, W), normalised with the ImageNet mean and std; K = 1 in training and
  validation, K = ``test_clips`` in test and predict;
- ``label``: long (B,), the class id (-1 in predict);
- ``index``: long (B,), the clip's position in its split (to remove the repeats DDP samplers add);
- ``name``: list of B strings, the video's path relative to its data folder (or as a predict list gives it);
- ``frame_index``: long (B, K, T), the index of each frame in its video.

No augmentation flips frames: a mirror image turns move_left into move_right and rotate_cw into rotate_ccw.
"""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import multiprocessing
import os
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from apps.common.data import SplitLoaders

DATASETS = ("generated", "ucf101", "hmdb51", "folder")
VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SPLITS = ("train", "val", "test")
CLASS_NAMES_KEY = "class_names"  # where checkpoints keep the class names (the model writes them)
UCF101_SPLIT_DIR, HMDB51_SPLIT_DIR = "ucfTrainTestlist", "testTrainMulti_7030_splits"
#: how many bad videos a warning or an error names
SHOWN = 5
#: new videos to probe from which the index uses a process pool (fewer are probed faster than a pool starts)
POOL_THRESHOLD = 64

# ------------------------------------------------------------------------------------------- rendered clips

GENERATED_CLASSES = ("move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink")
#: bump when the rendering changes, so that cached generated sets are rendered anew
GENERATOR_VERSION = 2
#: the generated files: H.264 (libx264, in PyAV's wheel) in MP4 at CRF 10, near lossless, with full-resolution colour
#: (4:4:4): 4:2:0 would halve the colour resolution of shapes only a few pixels wide and shift their colours by ~12/255
CODEC, PIXEL_FORMAT, CODEC_OPTIONS, FPS = "libx264", "yuv444p", {"crf": "10", "preset": "veryfast"}, 25


def _unit_polygon(points: list[tuple[float, float]]) -> np.ndarray:
    """Vertices moved so that the polygon's area centroid is at 0 and scaled so that the farthest vertex is at 1."""
    p = np.asarray(points, dtype=np.float64)
    x, y = p[:, 0], p[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    area = cross.sum() / 2
    centroid = np.array([((x + np.roll(x, -1)) * cross).sum(), ((y + np.roll(y, -1)) * cross).sum()]) / (6 * area)
    p = p - centroid
    return p / np.linalg.norm(p, axis=1).max()


#: shapes with no rotational symmetry, so that a turn of up to 180 degrees has one direction
SHAPES = {
    "triangle": _unit_polygon([(0, -1), (0.65, 0.8), (-0.65, 0.8)]),
    "ell": _unit_polygon([(-0.8, -1), (-0.2, -1), (-0.2, 0.4), (0.8, 0.4), (0.8, 1), (-0.8, 1)]),
    "tee": _unit_polygon([(-1, -0.9), (1, -0.9), (1, -0.3), (0.3, -0.3), (0.3, 1), (-0.3, 1), (-0.3, -0.3),
                          (-1, -0.3)]),
    "flag": _unit_polygon([(-0.6, -1), (0.9, -0.55), (-0.1, -0.1), (-0.1, 1), (-0.6, 1)]),
}
#: radius (centre to farthest vertex) of the reference frame, as a share of the shorter side: log-uniform in this range
RADIUS_RANGE = (0.14, 0.32)
#: over a whole clip: distance moved (share of the shorter side), turn (degrees), growth factor
MOVE_RANGE, TURN_RANGE, GROWTH_RANGE = (0.3, 0.5), (90.0, 180.0), (1.4, 1.7)


@dataclass
class ClipState:
    """The state of the shape in every frame of a rendered clip: centre (T, 2) in pixels (x, y; wrapped into the
    frame), radius (T,) in pixels, angle (T,) in radians (growing = clockwise on screen), and the constants."""

    centre: np.ndarray
    radius: np.ndarray
    angle: np.ndarray
    shape: str
    colour: tuple[int, int, int]
    background: int


def clip_state(label: str, rng: np.random.Generator, num_frames: int, width: int, height: int) -> ClipState:
    """Draws a clip of class ``label``: the state of the reference frame ``num_frames // 2`` is drawn the same way for
    every class, and the motion runs symmetrically around it.

    So no single frame tells the class: position and angle are uniform in every frame of every class (positions
    wrap around the frame edges like a torus, angles around the circle), shape, colour and background are drawn
    independently of the class, and so is the size of the reference frame. The one residue that cannot go: a clip
    that grows must start smaller than it ends, so away from the reference frame, size differs in distribution for
    grow and shrink. It is kept small: the reference size is log-uniform over a factor of 2.3, more than a clip's
    whole growth (a factor of 1.4 to 1.7), so only sizes near the ends of that range hint at the class, and most in
    the first and last frames.
    """
    if label not in GENERATED_CLASSES:
        raise ValueError(f"unknown generated class {label!r}; expected one of {GENERATED_CLASSES}")
    side = min(width, height)
    u = np.arange(num_frames, dtype=np.float64) - num_frames // 2  # steps from the reference frame
    steps = max(num_frames - 1, 1)
    shape = list(SHAPES)[rng.integers(len(SHAPES))]
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.55, 1), rng.uniform(0.65, 1)
    colour = tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, saturation, value))
    background = int(rng.integers(15, 80))
    centre0 = np.array([rng.uniform(0, width), rng.uniform(0, height)])
    radius0 = side * math.exp(rng.uniform(math.log(RADIUS_RANGE[0]), math.log(RADIUS_RANGE[1])))
    angle0 = rng.uniform(0, 2 * math.pi)
    speed = rng.uniform(*MOVE_RANGE) * side / steps
    spin = math.radians(rng.uniform(*TURN_RANGE)) / steps
    rate = math.log(rng.uniform(*GROWTH_RANGE)) / steps
    direction = {"move_left": (-1, 0), "move_right": (1, 0), "move_up": (0, -1), "move_down": (0, 1)}.get(label, (0, 0))
    centre = (centre0 + speed * u[:, None] * np.array(direction)) % np.array([width, height])
    turn = {"rotate_cw": 1, "rotate_ccw": -1}.get(label, 0)
    angle = (angle0 + turn * spin * u) % (2 * math.pi)
    scale = {"grow": 1, "shrink": -1}.get(label, 0)
    radius = radius0 * np.exp(scale * rate * u)
    return ClipState(centre, radius, angle, shape, colour, background)


def render_clip(state: ClipState, width: int, height: int, rng: np.random.Generator, noise: float = 3.0,
                supersample: int = 2) -> np.ndarray:
    """The frames (T, H, W, 3) uint8 of a clip state: the shape drawn antialiased (``supersample`` x finer, then
    averaged) over a plain grey background with fresh Gaussian noise of std ``noise`` in every frame."""
    s = supersample
    frames = []
    for centre, radius, angle in zip(state.centre, state.radius, state.angle, strict=True):
        image = Image.new("RGB", (width * s, height * s), (state.background,) * 3)
        draw = ImageDraw.Draw(image)
        c, n = math.cos(angle), math.sin(angle)
        unit = SHAPES[state.shape]
        points = np.stack([unit[:, 0] * c - unit[:, 1] * n, unit[:, 0] * n + unit[:, 1] * c], axis=1) * radius
        for dx in (-width, 0, width):  # the torus: copies one frame away show what crosses an edge
            for dy in (-height, 0, height):
                shifted = (points + centre + (dx, dy)) * s
                draw.polygon([tuple(p) for p in shifted.tolist()], fill=state.colour)
        if s > 1:
            image = image.reduce(s)
        frames.append(np.asarray(image, dtype=np.float32))
    video = np.stack(frames)
    if noise:
        video += rng.normal(0, noise, video.shape).astype(np.float32)
    return np.clip(np.rint(video), 0, 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: int = FPS, codec: str = CODEC, pixel_format: str = PIXEL_FORMAT,
                options: dict[str, str] | None = None) -> None:
    """Writes frames (T, H, W, 3) uint8 RGB as a video file (the container follows the suffix)."""
    _, H, W, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = W, H, pixel_format
        stream.options = dict(CODEC_OPTIONS if options is None else options)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def generated_folder(cache_dir: str, sizes: Sequence[int], num_frames: int, frame_size: int, seed: int) -> Path:
    """Where the generated set of these settings lives: ``<cache_dir>/video/generated-<hash>``."""
    settings = {"version": GENERATOR_VERSION, "sizes": list(sizes), "frames": num_frames, "size": frame_size,
                "seed": seed, "codec": [CODEC, PIXEL_FORMAT, CODEC_OPTIONS]}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(cache_dir).expanduser() / "video" / f"generated-{digest}"


def _render_and_write(job: tuple[Path, int, str, int, int, int]) -> None:
    """Renders clip ``number`` of class ``label`` from (seed, number) alone and writes it to ``path``."""
    path, seed, label, number, num_frames, frame_size = job
    rng = np.random.default_rng([seed, number])
    state = clip_state(label, rng, num_frames, frame_size, frame_size)
    write_video(path, render_clip(state, frame_size, frame_size, rng))


def generate_clips(folder: Path, sizes: Sequence[int], num_frames: int, frame_size: int, seed: int,
                   workers: int = 1) -> Path:
    """Renders the generated set into ``folder`` unless it is there already: ``<class>/<class>_<i>.mp4`` (clips
    numbered over all splits, classes taking turns) and ``train.txt``, ``val.txt``, ``test.txt`` listing them.

    Each clip's frames depend on (seed, number) alone, so ``workers`` processes render the same clips as one; their
    files are not always the same bytes, as the H.264 encoder does not repeat itself exactly (measured: 8 to 600
    files in 3,000 differ between two renders, by under 1 grey level per frame on average). It is written
    into a temporary folder beside and renamed when complete, so an interrupted run leaves nothing half written and
    processes that generate at once do not mix their files."""
    if (folder / "test.txt").is_file():
        return folder
    if len(sizes) != 3 or min(sizes) < 0:
        raise ValueError(f"generated_sizes must be three clip counts (train, val, test), got {list(sizes)}")
    if frame_size < 16:
        raise ValueError(f"the generated clips need a frame_size of at least 16, got {frame_size}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for label in GENERATED_CLASSES:
            (temporary / label).mkdir()
        labels = [GENERATED_CLASSES[number % len(GENERATED_CLASSES)] for number in range(sum(sizes))]
        names = [f"{label}/{label}_{number}.mp4" for number, label in enumerate(labels)]
        jobs = [(temporary / name, seed, label, number, num_frames, frame_size)
                for number, (name, label) in enumerate(zip(names, labels, strict=True))]
        note = f"rendering {len(jobs)} clips into {folder} (once)"
        with _in_processes(_render_and_write, jobs, workers) as done, _Progress(note, "rendering clips",
                                                                                 len(jobs)) as advance:
            for _ in done:
                advance()
        start = 0
        for split, count in zip(SPLITS, sizes, strict=True):
            (temporary / f"{split}.txt").write_text("".join(f"{n}\n" for n in names[start:start + count]))
            start += count
        try:
            os.replace(temporary, folder)
        except OSError:  # another process finished first: keep its files
            if not (folder / "test.txt").is_file():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return folder


@contextmanager
def _in_processes(function: Callable, items: list, workers: int) -> Iterator[Iterator]:
    """``function`` over ``items``, results in order: in up to ``workers`` processes (one per core at most) when
    there are enough items, else in this one; unfinished work is cancelled when the context closes."""
    workers = min(workers, os.cpu_count() or 1)
    if workers < 2 or len(items) < POOL_THRESHOLD or "fork" not in multiprocessing.get_all_start_methods():
        yield map(function, items)
        return
    # forked (not spawned) so that no child imports the program's __main__ again; all children start here,
    # before the progress bar's thread does
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        yield pool.map(function, items, chunksize=max(1, min(64, len(items) // (8 * workers))))
    finally:
        pool.shutdown(cancel_futures=True)


# ----------------------------------------------------------------------------------------- progress notes


class _Progress:
    """A note (on rank zero) of what is done, then a rich progress bar labelled ``label`` while it is; the context
    gives ``advance()``, to call once per item."""

    def __init__(self, note: str, label: str, total: int) -> None:
        self.note, self.label, self.total, self.bar = note, label, total, None

    def __enter__(self) -> Callable[[], None]:
        rank_zero_info(f"video data: {self.note}")
        if rank_zero_only.rank == 0 and self.total > 0:
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            task = self.bar.add_task(self.label, total=self.total)
            return lambda: self.bar.advance(task)
        return lambda: None

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


# ---------------------------------------------------------------------------------------------- the index


@dataclass
class VideoInfo:
    """What the index knows of a video file."""

    frames: int
    fps: float
    width: int
    height: int


def probe_video(path: str | os.PathLike) -> VideoInfo:
    """Frame count, frame rate and size of a video file; an error when it cannot be opened, has no video stream, or
    no frame decodes. The count is the container's when it has one (AVI, MP4), else that of the stream's packets
    (MKV, WebM); the first frame is always decoded, to know the file is a video a decoder reads."""
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        first, packets = None, 0
        for packet in container.demux(stream):
            if packet.size == 0:  # the flushing packet at the end
                continue
            packets += 1
            if first is None:
                first = next(iter(packet.decode()), None)
                if first is not None and stream.frames > 0:
                    break
        if first is None:  # a decoder may hold the first frames back until flushed
            first = next(iter(stream.codec_context.decode(None)), None)
        if first is None:
            raise ValueError("no frame decodes")
        frames = stream.frames if stream.frames > 0 else packets
        rate = stream.average_rate or stream.guessed_rate
        return VideoInfo(frames, float(rate) if rate else 0.0, first.width, first.height)


def _file_key(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _probe_or_reason(path: Path) -> VideoInfo | str:
    """probe_video's answer, or why the file cannot be read (any failure: PyAV's, no stream, no frame)."""
    try:
        return probe_video(path)
    except Exception as err:
        return f"{type(err).__name__}: {err}".strip()


def index_videos(paths: Sequence[Path], cache_file: Path, workers: int = 8) -> dict[str, VideoInfo | str]:
    """The index entry of every path (keyed by ``str(path)``): its VideoInfo, or why it cannot be read (a string).

    Entries are cached in ``cache_file`` (JSON) under the path with the file's size and mtime; only files that are
    new or changed since are probed, with a progress bar: in a pool of ``workers`` forked processes (at most one
    per core) when there are at least POOL_THRESHOLD of them, else in this process (probing is mostly Python and
    FFmpeg work under the GIL, so threads would not help). Missing files are reported as such and never cached."""
    cached: dict[str, dict] = {}
    if cache_file.is_file():
        try:
            cached = json.loads(cache_file.read_text()).get("videos", {})
        except (json.JSONDecodeError, AttributeError):
            rank_zero_warn(f"video index cache {cache_file} is not valid JSON; probing every video again")
    result: dict[str, VideoInfo | str] = {}
    todo: list[tuple[Path, tuple[int, int]]] = []
    for path in paths:
        key = _file_key(path)
        entry = cached.get(str(path))
        if key is None:
            result[str(path)] = "file not found"
        elif entry is not None and (entry.get("size"), entry.get("mtime_ns")) == key:
            result[str(path)] = entry["error"] if entry.get("error") else VideoInfo(
                entry["frames"], entry["fps"], entry["width"], entry["height"])
        else:
            todo.append((path, key))
    if not todo:
        return result
    files = [p for p, _ in todo]
    note = f"indexing {len(todo)} videos (frame count, fps, size) into {cache_file}"
    with _in_processes(_probe_or_reason, files, workers) as answers, _Progress(note, "indexing videos",
                                                                                len(todo)) as advance:
        for (path, (size, mtime)), info in zip(todo, answers, strict=True):
            result[str(path)] = info
            fields = {"error": info} if isinstance(info, str) else dict(vars(info), error=None)
            cached[str(path)] = {"size": size, "mtime_ns": mtime, **fields}
            advance()
    cache_file.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.")
    with os.fdopen(handle, "w") as f:
        json.dump({"version": 1, "videos": cached}, f)
    os.replace(temporary, cache_file)
    return result


def index_file(cache_dir: str, root: Path) -> Path:
    """The index cache of the videos under ``root``."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / "video" / f"index-{digest}.json"


# --------------------------------------------------------------------------------------------- the layouts


@dataclass
class Listed:
    """A video a split lists: its file (None when it is not there), its name relative to the data folder, its
    class id (-1: unknown), and the group of videos it must share a split with."""

    path: Path | None
    name: str
    label: int
    group: str


def video_files(folder: Path) -> list[Path]:
    """Every video file under ``folder`` (by suffix, any case), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def class_folders(root: Path) -> list[str]:
    """The class folders of a class-per-folder set: the sub-folders holding at least one video file, sorted."""
    if not root.is_dir():
        raise FileNotFoundError(f"video folder {root} (--data.path) does not exist")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                   and any(p.suffix.lower() in VIDEO_SUFFIXES for p in d.rglob("*")))
    if not names:
        raise ValueError(f"{root} holds no class folders with video files ({', '.join(VIDEO_SUFFIXES)}); expected "
                         f"<root>/<class>/<video>")
    return names


def video_group(name: str, dataset: str = "folder") -> str:
    """The group a video shares a split with: ``<class>/gNN`` for UCF101-style names (``v_X_g08_c01``: clips of one
    group share actor and background), the stem less its trailing clip number for HMDB51 (``..._med_2``: clips of
    one source video), else the class and the file's stem."""
    path = PurePosixPath(name)
    folder = path.parts[0] if len(path.parts) > 1 else ""
    found = re.search(r"_g(\d+)_", path.stem)
    if found:
        return f"{folder}/g{int(found.group(1))}"
    stem = re.sub(r"_\d+$", "", path.stem) if dataset == "hmdb51" else path.stem
    return f"{folder}/{stem}"


class _Resolver:
    """Finds the files a split list names under a data folder, exactly or else ignoring case (UCF101's lists write
    ``HandstandPushups/v_HandStandPushups_...`` for some files)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lower: dict[str, Path] | None = None

    def __call__(self, name: str) -> Path | None:
        path = self.root / name
        if path.is_file():
            return path
        if self.lower is None:
            self.lower = {p.relative_to(self.root).as_posix().lower(): p for p in video_files(self.root)}
        return self.lower.get(name.lower())


def _split_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-empty, non-comment lines of a split file."""
    if not path.is_file():
        raise FileNotFoundError(f"split file {path} does not exist")
    return [(number, line.split()) for number, line in enumerate(path.read_text().splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def find_split_dir(split_path: str | None, root: Path, name: str, marker: str) -> Path:
    """The split folder: ``split_path`` itself or its sub-folder ``name``; without it ``<root>/<name>`` or
    ``<root>/../<name>``. ``marker`` is a file (glob) the folder must hold."""
    candidates = ([Path(split_path).expanduser(), Path(split_path).expanduser() / name] if split_path
                  else [root / name, root.parent / name])
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob(marker)):
            return candidate
    raise FileNotFoundError(f"no split folder with {marker} at {' or '.join(map(str, candidates))}; pass "
                            f"--data.split_path (the folder {name} of the official splits)")


def read_ucf101(root: Path, split_dir: Path, fold: int) -> tuple[list[str], dict[str, list[Listed]]]:
    """Class names (classInd.txt order) and the train and test videos of UCF101 fold ``fold``, from
    ``trainlist0N.txt`` (``Class/v_Class_gXX_cYY.avi <class number>``) and ``testlist0N.txt`` (the path alone)."""
    index_path = split_dir / "classInd.txt"
    classes = []
    for number, fields in _split_lines(index_path):
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) != len(classes) + 1:
            raise ValueError(f"{index_path}:{number}: expected '<number> <class>' numbered from 1 in order, got "
                             f"{' '.join(fields)!r}")
        classes.append(fields[1])
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    resolve = _Resolver(root)
    splits = {}
    for split, stem in (("train", "trainlist"), ("test", "testlist")):
        path = split_dir / f"{stem}{fold:02d}.txt"
        listed = []
        for number, fields in _split_lines(path):
            name = fields[0]
            label = by_name.get(name.split("/")[0].lower()) if "/" in name else None
            if label is None:
                raise ValueError(f"{path}:{number}: {name!r} is not <class>/<video> with a class of {index_path}")
            listed.append(Listed(resolve(name), name, label, video_group(name, "ucf101")))
        splits[split] = listed
    return classes, splits


def read_hmdb51(root: Path, split_dir: Path, fold: int) -> tuple[list[str], dict[str, list[Listed]]]:
    """Class names (sorted) and the train and test videos of HMDB51 fold ``fold``, from
    ``<class>_test_split<fold>.txt`` files of ``<video>.avi <1|2|0>`` lines (1 train, 2 test, 0 unused)."""
    suffix = f"_test_split{fold}.txt"
    files = sorted(split_dir.glob(f"*{suffix}"))
    if not files:
        raise FileNotFoundError(f"{split_dir} has no <class>{suffix} files (HMDB51 folds are 1 to 3)")
    classes = [f.name[: -len(suffix)] for f in files]
    resolve = _Resolver(root)
    splits: dict[str, list[Listed]] = {"train": [], "test": []}
    for label, (cls, path) in enumerate(zip(classes, files, strict=True)):
        for number, fields in _split_lines(path):
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise ValueError(f"{path}:{number}: expected '<video>.avi <1|2|0>' (1 train, 2 test, 0 unused), got "
                                 f"{' '.join(fields)!r}")
            if fields[1] == "0":
                continue
            name = f"{cls}/{fields[0]}"
            listed = Listed(resolve(name), name, label, video_group(name, "hmdb51"))
            splits["train" if fields[1] == "1" else "test"].append(listed)
    return classes, splits


def read_folder(root: Path, split_dir: Path | None) -> tuple[list[str], dict[str, list[Listed]]]:
    """Class names (the sorted class folders) and the videos of a class-per-folder set: all of them under "all",
    or, with a split folder, those ``train.txt``, ``test.txt`` and (if there) ``val.txt`` list, one path relative
    to ``root`` per line, its first folder the class."""
    classes = class_folders(root)
    by_name = {c: i for i, c in enumerate(classes)}
    if split_dir is None:
        return classes, {"all": [Listed(p, p.relative_to(root).as_posix(), by_name[p.relative_to(root).parts[0]],
                                        video_group(p.relative_to(root).as_posix()))
                                 for c in classes for p in video_files(root / c)]}
    resolve = _Resolver(root)
    splits = {}
    for split in SPLITS:
        path = split_dir / f"{split}.txt"
        if split == "val" and not path.is_file():
            continue
        listed = []
        for number, fields in _split_lines(path):
            name = fields[0]
            label = by_name.get(name.split("/")[0]) if "/" in name else None
            if label is None:
                raise ValueError(f"{path}:{number}: {name!r} is not <class>/<video> with a class folder of {root}")
            listed.append(Listed(resolve(name), name, label, video_group(name)))
        splits[split] = listed
    return classes, splits


def split_by_group(videos: Sequence[Listed], fractions: dict[str, float], seed: int) -> dict[str, list[Listed]]:
    """Splits videos at random by group, class by class (so that every class is in every split it can be): each
    named split takes its fraction of a class's groups (at least one while the class has groups to spare), the rest
    is "train". No group is ever in two splits. Seeded: the same seed gives the same split."""
    by_class: dict[int, dict[str, list[Listed]]] = {}
    for video in videos:
        by_class.setdefault(video.label, {}).setdefault(video.group, []).append(video)
    splits: dict[str, list[Listed]] = {name: [] for name in ("train", *fractions)}
    for label, groups in sorted(by_class.items()):
        keys = sorted(groups)
        np.random.default_rng([seed, label]).shuffle(keys)
        start = 0
        for name, fraction in fractions.items():
            spare = len(keys) - start - 1  # train keeps one group
            count = min(spare, max(1, round(len(keys) * fraction))) if fraction > 0 else 0
            for key in keys[start : start + max(count, 0)]:
                splits[name] += groups[key]
            start += max(count, 0)
        for key in keys[start:]:
            splits["train"] += groups[key]
    for name in splits:
        splits[name].sort(key=lambda v: v.name)
    return splits


# ------------------------------------------------------------------------------------------- frame sampling


def uniform_indices(num_available: int, num_frames: int, offset: float = 0.5) -> list[int]:
    """``num_frames`` indices into ``num_available`` frames: frame ``floor((j + offset) * N / T)`` of each of the T
    equal segments (offset 0.5: their middles). Sorted; fewer frames than T repeat evenly."""
    n = max(num_available, 1)
    return [min(int((j + offset) * n / num_frames), n - 1) for j in range(num_frames)]


def segment_indices(num_available: int, num_frames: int, generator: torch.Generator | None = None) -> list[int]:
    """TSN sampling: the frames cut into ``num_frames`` equal segments, one random frame in each (torch's random
    state, which differs per DataLoader worker). Sorted; fewer frames than T repeat evenly."""
    n = max(num_available, 1)
    indices = []
    for j in range(num_frames):
        start = j * n // num_frames
        end = max((j + 1) * n // num_frames, start + 1)
        indices.append(min(start + int(torch.randint(end - start, (1,), generator=generator)), n - 1))
    return indices


def clip_indices(num_available: int, num_frames: int, clips: int) -> list[list[int]]:
    """``clips`` uniform samplings at evenly spaced offsets inside the segments: clip k takes offset (k + 0.5) / K."""
    return [uniform_indices(num_available, num_frames, (k + 0.5) / clips) for k in range(clips)]


def decode_frames(path: str | os.PathLike, indices: Sequence[int], size: int, threads: int = 1) -> np.ndarray:
    """The frames at ``indices`` (any order, repeats allowed) of a video, (len(indices), size, size, 3) uint8 RGB.

    Decodes in order, converts and resizes (area averaging, one reused scaler) only the wanted frames, and stops
    after the last one. A video that ends early (a container's frame count can be off by a few) or breaks off gives
    its last decoded frame for the frames past the end; one that yields no frame at all is an error naming the file.
    ``threads``: decoder threads (1: none, the right choice when DataLoader workers already use every core; 0: as
    many as FFmpeg likes)."""
    wanted = set(indices)
    last = max(wanted)
    got: dict[int, np.ndarray] = {}
    failure = None
    scaler = VideoReformatter()
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO" if threads != 1 else "SLICE"
        stream.thread_count = threads
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = scaler.reformat(frame, size, size, "rgb24", interpolation="AREA").to_ndarray()
                if i >= last:
                    break
        except av.error.FFmpegError as err:
            failure = err
    if not got:
        raise RuntimeError(f"{path}: no frame could be decoded" + (f" ({failure})" if failure else ""))
    decoded = sorted(got)
    for i in sorted(wanted - got.keys()):  # past the end: the last decoded frame before it (or the first one)
        earlier = [d for d in decoded if d < i]
        got[i] = got[earlier[-1] if earlier else decoded[0]]
    return np.stack([got[i] for i in indices])


# ------------------------------------------------------------------------------------------------ datasets


@dataclass
class Video:
    """A readable video of a split: its file, name (relative path), class id (-1: unknown) and frame count."""

    path: str
    name: str
    label: int
    frames: int


class VideoClips(Dataset):
    """Clips of videos: item i is a dict of ``frames`` uint8 (K, T, H, W, 3), ``frame_index`` (K, T), ``label``,
    ``index`` (= i), ``name``.

    ``sampling`` "segments" (training: one random frame per segment, K = 1) or "uniform" (K = ``clips`` samplings at
    evenly spaced offsets; see the module's docstring)."""

    def __init__(self, videos: Sequence[Video], num_frames: int, frame_size: int, sampling: str = "uniform",
                 clips: int = 1, decode_threads: int = 1) -> None:
        if sampling not in ("segments", "uniform"):
            raise ValueError(f"sampling must be 'segments' or 'uniform', got {sampling!r}")
        if sampling == "segments" and clips != 1:
            raise ValueError("segment sampling takes one clip per video")
        self.videos, self.num_frames, self.frame_size = list(videos), num_frames, frame_size
        self.sampling, self.clips, self.decode_threads = sampling, clips, decode_threads

    def __len__(self) -> int:
        return len(self.videos)

    def indices(self, i: int) -> list[list[int]]:
        """The frame indices of item i, (K, T)."""
        n = self.videos[i].frames
        if self.sampling == "segments":
            return [segment_indices(n, self.num_frames)]
        return clip_indices(n, self.num_frames, self.clips)

    def __getitem__(self, i: int) -> dict:
        video = self.videos[i]
        indices = self.indices(i)
        flat = [j for clip in indices for j in clip]
        frames = decode_frames(video.path, flat, self.frame_size, self.decode_threads)
        frames = torch.from_numpy(frames).view(len(indices), self.num_frames, *frames.shape[1:])
        return {"frames": frames, "frame_index": torch.tensor(indices), "label": video.label, "index": i,
                "name": video.name}


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def collate(items: Sequence[dict]) -> dict:
    """A batch of clips.

    - ``frames``: float32 (B, K, T, 3, H, W), ALWAYS with the clip dimension K (1 in training and validation,
      ``test_clips`` in test and predict), scaled to [0, 1] and normalised with the ImageNet mean and std;
    - ``label``: long (B,), the class id (-1 when unknown, as in predict);
    - ``index``: long (B,), the clip's position in its split;
    - ``name``: list[str], the videos' paths relative to their data folder;
    - ``frame_index``: long (B, K, T), which frame of its video each frame is (a feature cache's key).
    """
    frames = torch.stack([item["frames"] for item in items]).permute(0, 1, 2, 5, 3, 4).contiguous().float().div_(255)
    return {
        "frames": frames.sub_(_MEAN).div_(_STD),
        "frame_index": torch.stack([item["frame_index"] for item in items]),
        "label": torch.tensor([item["label"] for item in items], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "name": [item["name"] for item in items],
    }


def predict_list(path: Path) -> list[Listed]:
    """The videos to predict: every video file under a folder (named relative to it), or those a text file lists,
    one path per line (relative to the file's folder unless absolute; blank lines and # comments skipped)."""
    if path.is_dir():
        return [Listed(p, p.relative_to(path).as_posix(), -1, "") for p in video_files(path)]
    if not path.is_file():
        raise FileNotFoundError(f"predict_path {path} is neither a folder of videos nor a file listing them")
    listed = []
    for _, fields in _split_lines(path):
        name = " ".join(fields)
        file = Path(name).expanduser()
        file = file if file.is_absolute() else path.parent / file
        listed.append(Listed(file if file.is_file() else None, name, -1, ""))
    return listed


# ----------------------------------------------------------------------------------------------- the module


class VideoDataModule(SplitLoaders):
    """Video clips for classification; ``class_names`` and ``num_classes`` tell the model what the ids mean."""

    collate = staticmethod(collate)

    def __init__(
        self,
        dataset: str = "generated",
        path: str | None = None,
        split_path: str | None = None,
        fold: int = 1,
        num_frames: int = 16,
        frame_size: int = 64,
        test_clips: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        on_bad_video: str = "skip",
        generated_sizes: tuple[int, int, int] = (1600, 200, 400),
        cache_dir: str = "~/.cache/rnn-apps",
        batch_size: int = 16,
        num_workers: int = 0,
        decode_threads: int = 1,
        index_workers: int = 8,
        predict_path: str | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            dataset: "generated" (rendered motion clips, offline), "ucf101", "hmdb51" or "folder" (class-per-folder).
            path: the data folder: <path>/<class>/<video> (ucf101, hmdb51, folder).
            split_path: ucf101: folder of classInd.txt, trainlist0N.txt, testlist0N.txt (None: ucfTrainTestlist in
                or beside path); hmdb51: folder of <class>_test_splitN.txt (None: testTrainMulti_7030_splits in or
                beside path); folder: folder of train.txt, test.txt and optional val.txt listing <class>/<video>
                paths (None: a random split by video group).
            fold: the official split to use, 1 to 3 (ucf101, hmdb51).
            num_frames: frames T per clip (and per generated video).
            frame_size: every frame is resized to frame_size x frame_size (and generated at that size).
            test_clips: clips K per video in test and predict, at evenly spaced offsets; the model averages them.
            val_fraction: share of each class's training groups held out for validation (ucf101, hmdb51, folder
                without val.txt).
            test_fraction: share of each class's groups held out for testing (folder without split files).
            on_bad_video: "skip" unreadable, missing or zero-frame videos (counted and named in a warning) or
                "error".
            generated_sizes: train, validation and test clips of the generated set.
            cache_dir: where the generated set and the video index are kept.
            batch_size: videos per batch (per process).
            num_workers: DataLoader worker processes (decoding runs in them).
            decode_threads: decoder threads per video: 1 (none; best when workers use every core), 0 (FFmpeg's
                choice) or more (can help large frames with few workers).
            index_workers: processes rendering the generated set and probing videos while the index is built
                (at most one per core).
            predict_path: a folder of videos (searched recursively) or a text file listing video paths, for predict.
            seed: seed of the generated clips and of random splits.
        """
        super().__init__()
        if dataset not in DATASETS:
            raise ValueError(f"unknown dataset {dataset!r}; expected one of {DATASETS}")
        if dataset != "generated" and not path:
            raise ValueError(f"dataset {dataset!r} needs --data.path: the folder of <class>/<video> files")
        if on_bad_video not in ("skip", "error"):
            raise ValueError(f"on_bad_video must be 'skip' or 'error', got {on_bad_video!r}")
        if dataset in ("ucf101", "hmdb51") and fold not in (1, 2, 3):
            raise ValueError(f"fold must be 1, 2 or 3 (the official splits of {dataset}), got {fold}")
        if num_frames < 1 or frame_size < 1 or test_clips < 1:
            raise ValueError(f"num_frames, frame_size and test_clips must be positive, got {num_frames}, {frame_size}, "
                             f"{test_clips}")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction and test_fraction must be in [0, 1) with a sum below 1, got "
                             f"{val_fraction} and {test_fraction}")
        self.save_hyperparameters()
        self.splits: dict[str, VideoClips] = {}
        self._class_names: list[str] | None = None
        self._videos: dict[str, list[Video]] | None = None
        #: the checkpoint the command restores (set by the launcher); its class names, when it has them, win
        self.checkpoint_path: str | None = None

    # ------------------------------------------------------------------ classes

    @property
    def root(self) -> Path:
        """The folder the videos are read from (for "generated", the rendered set in the cache)."""
        hp = self.hparams
        if hp.dataset == "generated":
            return generated_folder(hp.cache_dir, hp.generated_sizes, hp.num_frames, hp.frame_size, hp.seed)
        return Path(hp.path).expanduser()

    @property
    def class_names(self) -> list[str]:
        """Class names by id: those the restored checkpoint (``checkpoint_path``) stores under CLASS_NAMES_KEY (top
        level or in its hyper_parameters), else the data set's, read from the split files or the class folders (no
        video is opened, so this is cheap before setup too). Setup for fit, validate and test checks that a
        restored checkpoint's names are the data's."""
        if self._class_names is None:
            self._class_names = self._checkpoint_class_names() or self._read_class_names()
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _checkpoint_class_names(self) -> list[str] | None:
        if not self.checkpoint_path:
            return None
        checkpoint = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        names = checkpoint.get(CLASS_NAMES_KEY) or checkpoint.get("hyper_parameters", {}).get(CLASS_NAMES_KEY)
        return list(names) if names else None

    def _read_class_names(self) -> list[str]:
        hp = self.hparams
        if hp.dataset == "generated":
            return sorted(GENERATED_CLASSES)  # the folder reader sorts the class folders
        root = self.root
        if hp.dataset == "ucf101":
            split_dir = find_split_dir(hp.split_path, root, UCF101_SPLIT_DIR, "classInd.txt")
            return [fields[1] for _, fields in _split_lines(split_dir / "classInd.txt")]
        if hp.dataset == "hmdb51":
            suffix = f"_test_split{hp.fold}.txt"
            split_dir = find_split_dir(hp.split_path, root, HMDB51_SPLIT_DIR, f"*{suffix}")
            return sorted(f.name[: -len(suffix)] for f in split_dir.glob(f"*{suffix}"))
        return class_folders(root)

    # ------------------------------------------------------------------ reading

    def read_listing(self) -> tuple[list[str], dict[str, list[Listed]]]:
        """Class names and the listed videos of train, val and test (no video opened yet)."""
        hp = self.hparams
        root = self.root
        if not root.is_dir():
            raise FileNotFoundError(f"video folder {root} (--data.path) does not exist")
        if hp.dataset == "ucf101":
            classes, splits = read_ucf101(root, find_split_dir(hp.split_path, root, UCF101_SPLIT_DIR,
                                                               "classInd.txt"), hp.fold)
        elif hp.dataset == "hmdb51":
            split_dir = find_split_dir(hp.split_path, root, HMDB51_SPLIT_DIR, f"*_test_split{hp.fold}.txt")
            classes, splits = read_hmdb51(root, split_dir, hp.fold)
        else:
            split_dir = root if hp.dataset == "generated" else hp.split_path and Path(hp.split_path).expanduser()
            classes, splits = read_folder(root, split_dir or None)
        if "all" in splits:
            splits = split_by_group(splits["all"], {"val": hp.val_fraction, "test": hp.test_fraction}, hp.seed)
        elif "val" not in splits:
            carved = split_by_group(splits["train"], {"val": hp.val_fraction}, hp.seed)
            splits = {"train": carved["train"], "val": carved["val"], "test": splits["test"]}
        return classes, {name: splits[name] for name in SPLITS}

    def readable(self, listed: dict[str, Sequence[Listed]], cache_root: Path, what: str) -> dict[str, list[Video]]:
        """The videos of each split that the index can read, in order. The others (missing, unreadable, no frames)
        are left out with one warning that counts them and names the first few, or are an error naming the first
        (``on_bad_video``). One index pass covers every split."""
        paths = [v.path for split in listed.values() for v in split if v.path is not None]
        index = index_videos(paths, index_file(self.hparams.cache_dir, cache_root), self.hparams.index_workers)
        videos: dict[str, list[Video]] = {name: [] for name in listed}
        bad: list[tuple[Listed, str]] = []
        for name, split in listed.items():
            for v in split:
                info = "file not found" if v.path is None else index[str(v.path)]
                if isinstance(info, VideoInfo) and info.frames <= 0:
                    info = "no frames"
                if isinstance(info, str):
                    bad.append((v, info))
                else:
                    videos[name].append(Video(str(v.path), v.name, v.label, info.frames))
        if bad and self.hparams.on_bad_video == "error":
            v, reason = bad[0]
            raise ValueError(f"{v.path or cache_root / v.name}: cannot be read as a video ({reason}); {len(bad)} "
                             f"such in {what} (pass --data.on_bad_video skip to leave them out)")
        if bad:
            shown = ", ".join(f"{v.name} ({reason})" for v, reason in bad[:SHOWN])
            total = sum(len(split) for split in listed.values())
            rank_zero_warn(f"{what}: skipped {len(bad)} of {total} videos that are missing, unreadable or have no "
                           f"frames: {shown}{', ...' if len(bad) > SHOWN else ''}")
        return videos

    def _prepare(self) -> dict[str, list[Video]]:
        """Renders the generated set if it is missing, then reads the splits and the index (probing only videos
        that are new or changed)."""
        if self._videos is None:
            hp = self.hparams
            if hp.dataset == "generated":
                generate_clips(self.root, hp.generated_sizes, hp.num_frames, hp.frame_size, hp.seed,
                               hp.index_workers)
            classes, listed = self.read_listing()
            stored = self._checkpoint_class_names()
            if stored is not None and stored != classes:
                raise ValueError(f"the checkpoint {self.checkpoint_path} knows {len(stored)} classes ({stored[:4]} "
                                 f"...), the data {len(classes)} ({classes[:4]} ...); its class ids would mean other "
                                 "classes")
            self._class_names = classes
            self._videos = self.readable(listed, self.root, f"{hp.dataset} data in {self.root}")
        return self._videos

    def prepare_data(self) -> None:
        """On one process per node: render the generated set and build the index, so that setup finds both."""
        self._prepare()

    def setup(self, stage: str) -> None:
        hp = self.hparams
        if stage == "predict":
            if not hp.predict_path:
                raise ValueError("predict needs --data.predict_path: a folder of videos or a text file listing them")
            where = Path(hp.predict_path).expanduser()
            listed = predict_list(where)
            videos = self.readable({"predict": listed}, where if where.is_dir() else where.parent,
                                   f"predict data in {where}")["predict"]
            self.splits["predict"] = VideoClips(videos, hp.num_frames, hp.frame_size, "uniform", hp.test_clips,
                                                hp.decode_threads)
            rank_zero_info(f"video data: predicting {len(videos)} videos from {where}")
            return
        if self.splits.keys() >= set(SPLITS):
            return
        videos = self._prepare()
        for name in SPLITS:
            sampling = "segments" if name == "train" else "uniform"
            clips = hp.test_clips if name == "test" else 1
            self.splits[name] = VideoClips(videos[name], hp.num_frames, hp.frame_size, sampling, clips,
                                           hp.decode_threads)
        where = f"fold {hp.fold}" if hp.dataset in ("ucf101", "hmdb51") else str(self.root)
        rank_zero_info(
            f"video data: {hp.dataset} ({where}), {self.num_classes} classes, "
            f"{', '.join(f'{s} {len(d)}' for s, d in self.splits.items())} videos; {hp.num_frames} frames of "
            f"{hp.frame_size}x{hp.frame_size}, {hp.test_clips} test clip(s)"
        )

