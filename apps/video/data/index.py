"""What each video file holds (frame count, fps, size), probed in parallel once and cached by path, size and mtime,
so that a second setup probes nothing."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import av
from lightning.pytorch.utilities import rank_zero_warn

from apps.video.data.pool import in_processes, progress


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
    per core) when there are enough of them (see in_processes), else in this process (probing is mostly Python and
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
    with in_processes(_probe_or_reason, files, workers) as answers, progress(note, "indexing videos",
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
    """The index cache of the videos under ``root``: ``<cache_dir>/video/index-<hash of the folder>.json``."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / "video" / f"index-{digest}.json"
