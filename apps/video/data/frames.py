"""Which frames a clip takes, by frame index so that clips of any frame rate cover their whole duration alike, and
decoding just those frames with PyAV."""

from __future__ import annotations

import os
from collections.abc import Sequence

import av
import numpy as np
import torch
from av.video.reformatter import VideoReformatter


def uniform_indices(num_available: int, num_frames: int, offset: float = 0.5) -> list[int]:
    """``num_frames`` indices into ``num_available`` frames: frame ``floor((j + offset) * N / T)`` of each of the T
    equal segments (offset 0.5: their middles). Sorted; fewer frames than T repeat evenly (N = 5, T = 8 gives
    0 0 1 2 2 3 4 4)."""
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


class VideoDecodeError(Exception):
    """A video whose frames cannot be decoded although the index read it (cut off, damaged, gone since): the
    message says why, the caller names the file."""


def decode_frames(path: str | os.PathLike, indices: Sequence[int], size: int, threads: int = 1,
                  promised: int = 0) -> np.ndarray:
    """The frames at ``indices`` (any order, repeats allowed) of a video, (len(indices), size, size, 3) uint8 RGB:
    the whole picture resized, aspect ratio not kept, so that videos of any resolution batch together.

    Decodes in order, converts and resizes (area averaging, one reused scaler) only the wanted frames, and stops
    after the last one. A video that ends early gives its last decoded frame for the frames past the end: a
    container's frame count can be off by a few. It is VideoDecodeError when no wanted frame decodes, or when it
    stops (ends, or breaks off with an error) more than a tenth short of the ``promised`` frame count (the index's;
    0: no promise): its data is cut off or damaged. ``threads``: decoder threads (1: none, the right choice when
    DataLoader workers already use every core; 0: as many as FFmpeg likes)."""
    wanted = set(indices)
    last = max(wanted)
    got: dict[int, np.ndarray] = {}
    failure, decoded = None, 0
    scaler = VideoReformatter()
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO" if threads != 1 else "SLICE"
            stream.thread_count = threads
            for i, frame in enumerate(container.decode(stream)):
                decoded = i + 1
                if i in wanted:
                    got[i] = scaler.reformat(frame, size, size, "rgb24", interpolation="AREA").to_ndarray()
                if i >= last:
                    break
    except (av.error.FFmpegError, OSError, IndexError) as err:  # IndexError: no video stream (any more)
        failure = f"{type(err).__name__}: {err}"
    because = f" ({failure})" if failure else ""
    stopped = f"decoding stopped after {decoded} of {promised or last + 1} frames{because}"
    if not got:
        raise VideoDecodeError(stopped if decoded else failure or "no frame decodes")
    if decoded <= last and promised and decoded < promised - max(2, promised // 10):
        raise VideoDecodeError(stopped)
    decoded_indices = sorted(got)
    for i in sorted(wanted - got.keys()):  # past the end: the last decoded frame before it (or the first one)
        earlier = [d for d in decoded_indices if d < i]
        got[i] = got[earlier[-1] if earlier else decoded_indices[0]]
    return np.stack([got[i] for i in indices])
