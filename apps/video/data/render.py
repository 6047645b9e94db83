"""The embedded default data: clips of a shape that moves, rotates or changes size (8 classes, no single frame tells
which), rendered from a seed and written once as a class-per-folder set of H.264 files with split lists."""

from __future__ import annotations

import colorsys
import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np
from PIL import Image, ImageDraw

from apps.video.data.layouts import SPLITS
from apps.video.data.pool import in_processes, progress

GENERATED_CLASSES = ("move_left", "move_right", "move_up", "move_down", "rotate_cw", "rotate_ccw", "grow", "shrink")
#: bump when the rendering changes, so that cached generated sets are rendered anew
GENERATOR_VERSION = 2
#: the generated files: H.264 (libx264, in PyAV's wheel) in MP4 at CRF 10, near lossless, with full-resolution colour
#: (4:4:4): 4:2:0 would halve the colour resolution of shapes only a few pixels wide
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
    files are not always the same bytes, as the H.264 encoder does not repeat itself exactly. It is written into a
    temporary folder beside and renamed when complete, so an interrupted run leaves nothing half written and
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
        with in_processes(_render_and_write, jobs, workers) as done, progress(note, "rendering clips",
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
