"""Tiny video files for the tests, in the formats of the real data sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from apps.video.data import clip_state, render_clip, write_video


def write_clip(path: Path, frames: int = 8, width: int = 32, height: int = 32, fps: int = 25, seed: int = 0,
               label: str = "move_right") -> Path:
    """A tiny rendered video; AVI files get MPEG-4 part 2 (like UCF101's and HMDB51's XviD), others H.264."""
    rng = np.random.default_rng(seed)
    pixels = render_clip(clip_state(label, rng, frames, width, height), width, height, rng)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".avi":
        write_video(path, pixels, fps=fps, codec="mpeg4", pixel_format="yuv420p", options={"qscale": "3"})
    else:
        write_video(path, pixels, fps=fps)
    return path


def cut_off(path: Path, keep: float = 0.9) -> Path:
    """Cuts the end off a video file: an AVI's header still promises every frame, its data stops early."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def punch_hole(path: Path) -> Path:
    """Zeroes the middle third of a video file's bytes: an MP4's header (at its end) stays whole, the frames do not
    decode past the hole."""
    data = bytearray(path.read_bytes())
    third = len(data) // 3
    data[third : 2 * third] = bytes(third)
    path.write_bytes(bytes(data))
    return path
