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


def decode_frames(path: str | os.PathLike, indices: Sequence[int], size: int, threads: int = 1) -> np.ndarray:
    """The frames at ``indices`` (any order, repeats allowed) of a video, (len(indices), size, size, 3) uint8 RGB:
    the whole picture resized, aspect ratio not kept, so that videos of any resolution batch together.

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
