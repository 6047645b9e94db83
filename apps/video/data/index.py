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

from apps.common.errors import UserError
from apps.video.data.pool import in_processes, progress

#: the format of the index cache; a file of another version (or none) is probed anew and rewritten
INDEX_VERSION = 1


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


def read_cache(cache_file: Path) -> dict[str, dict]:
    """The entries of an index cache file, or none (with a warning that says why and that every video is probed
    again) when it is unreadable, not JSON, cut off, or of another version or format."""
    try:
        content = json.loads(cache_file.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:  # ValueError: not JSON, cut off, not UTF-8
        problem = f"unreadable ({type(err).__name__}: {err})"
    else:
        version = content.get("version") if isinstance(content, dict) else None
        if version == INDEX_VERSION and isinstance(content.get("videos"), dict):
            return content["videos"]
        problem = (f"of format version {version} (this version reads {INDEX_VERSION})"
                   if version not in (None, INDEX_VERSION) else "not a video index (no version or table of videos)")
    rank_zero_warn(f"video index cache {cache_file} is {problem}; probing every video again and rewriting it")
    return {}


def _cached_answer(entry, key: tuple[int, int]) -> VideoInfo | str | None:
    """A cache entry's answer when it describes the file as it is now (same size and mtime) and is whole, else
    None: the file is probed again."""
    if not isinstance(entry, dict) or (entry.get("size"), entry.get("mtime_ns")) != key:
        return None
    if entry.get("error"):
        return str(entry["error"])
    try:
        return VideoInfo(int(entry["frames"]), float(entry["fps"]), int(entry["width"]), int(entry["height"]))
    except (KeyError, TypeError, ValueError):
        return None


def index_videos(paths: Sequence[Path], cache_file: Path, workers: int = 8) -> dict[str, VideoInfo | str]:
    """The index entry of every path (keyed by ``str(path)``): its VideoInfo, or why it cannot be read (a string).

    Entries are cached in ``cache_file`` (JSON) under the path with the file's size and mtime; only files that are
    new or changed since are probed, with a progress bar: in a pool of ``workers`` forked processes (at most one
    per core) when there are enough of them (see in_processes), else in this process (probing is mostly Python and
    FFmpeg work under the GIL, so threads would not help). Missing files are reported as such and never cached.
    A cache file of another version, or damaged, is rebuilt (see read_cache); one that cannot be written is a
    UserError naming it."""
    cached = read_cache(cache_file)
    result: dict[str, VideoInfo | str] = {}
    todo: list[tuple[Path, tuple[int, int]]] = []
    for path in paths:
        key = _file_key(path)
        answer = None if key is None else _cached_answer(cached.get(str(path)), key)
        if key is None:
            result[str(path)] = "file not found"
        elif answer is not None:
            result[str(path)] = answer
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
    _write_cache(cache_file, cached)
    return result


def _write_cache(cache_file: Path, entries: dict[str, dict]) -> None:
    """Writes the cache atomically (a temporary file renamed), so a run killed meanwhile leaves the old one whole."""
    temporary = None
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=cache_file.parent, prefix=f".{cache_file.name}.")
        with os.fdopen(handle, "w") as f:
            json.dump({"version": INDEX_VERSION, "videos": entries}, f)
        os.replace(temporary, cache_file)
    except OSError as err:
        if temporary and os.path.exists(temporary):
            os.unlink(temporary)
        raise UserError(f"cannot write the video index cache {cache_file} ({type(err).__name__}: {err}); pass "
                        "--data.cache_dir a writable folder") from None


def index_file(cache_dir: str, root: Path) -> Path:
    """The index cache of the videos under ``root``: ``<cache_dir>/video/index-<hash of the folder>.json``."""
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return Path(cache_dir).expanduser() / "video" / f"index-{digest}.json"
