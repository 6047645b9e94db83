"""The Dataset of clips and the collate that batches them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from apps.common.errors import UserError
from apps.video.data.frames import VideoDecodeError, clip_indices, decode_frames, segment_indices
from apps.video.data.layouts import Video
from apps.video.data.messages import bad_video_error

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class VideoClips(Dataset):
    """Clips of videos: item i is a dict of ``frames`` uint8 (K, T, H, W, 3), ``frame_index`` (K, T), ``label``,
    ``index`` (= i), ``name``; for a video that fails to decode (cut off, damaged), ``{"index", "name", "failed":
    why}``, which ``collate`` leaves out of the batch, or a UserError (``on_bad_video`` "error").

    ``sampling`` "segments" (training: one random frame per segment, K = 1) or "uniform" (K = ``clips`` samplings at
    evenly spaced offsets inside the segments: their middles when K = 1, as in validation; test and predict take K
    clips and the model averages them).

    No augmentation flips frames: a mirror image turns move_left into move_right and rotate_cw into rotate_ccw."""

    def __init__(self, videos: Sequence[Video], num_frames: int, frame_size: int, sampling: str = "uniform",
                 clips: int = 1, decode_threads: int = 1, what: str = "videos", on_bad_video: str = "skip") -> None:
        if sampling not in ("segments", "uniform"):
            raise ValueError(f"sampling must be 'segments' or 'uniform', got {sampling!r}")
        if sampling == "segments" and clips != 1:
            raise ValueError("segment sampling takes one clip per video")
        self.videos, self.num_frames, self.frame_size = list(videos), num_frames, frame_size
        self.sampling, self.clips, self.decode_threads = sampling, clips, decode_threads
        #: what the split is, for messages ("the train split of folder data in DIR")
        self.what, self.on_bad_video = what, on_bad_video

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
        try:
            frames = decode_frames(video.path, flat, self.frame_size, self.decode_threads, video.frames)
        except VideoDecodeError as err:
            if self.on_bad_video == "error":
                raise UserError(bad_video_error(video.path, str(err), self.what)) from None
            return {"index": i, "name": video.name, "failed": str(err)}
        frames = torch.from_numpy(frames).view(len(indices), self.num_frames, *frames.shape[1:])
        return {"frames": frames, "frame_index": torch.tensor(indices), "label": video.label, "index": i,
                "name": video.name}


_MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
_STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


def collate(items: Sequence[dict]) -> dict:
    """A batch of the clips that decoded (possibly none: then ``frames`` is empty and the lists too).

    - ``frames``: float32 (B, K, T, 3, H, W), ALWAYS with the clip dimension K (1 in training and validation,
      ``test_clips`` in test and predict), scaled to [0, 1] and normalised with the ImageNet mean and std;
    - ``label``: long (B,), the class id (-1 when unknown, as in predict);
    - ``index``: long (B,), the clip's position in its split (to drop the repeats DDP samplers add);
    - ``name``: list[str], the videos' paths relative to their data folder (or as a predict list gives them);
    - ``frame_index``: long (B, K, T), which frame of its video each frame is (a feature cache's key);
    - ``skipped``: list of (index, name, why) of the videos that failed to decode, left out of the batch.
    """
    skipped = [(item["index"], item["name"], item["failed"]) for item in items if "failed" in item]
    items = [item for item in items if "failed" not in item]
    if not items:
        empty = torch.empty(0, dtype=torch.long)
        return {"frames": torch.empty(0), "frame_index": empty, "label": empty, "index": empty, "name": [],
                "skipped": skipped}
    frames = torch.stack([item["frames"] for item in items]).permute(0, 1, 2, 5, 3, 4).contiguous().float().div_(255)
    return {
        "frames": frames.sub_(_MEAN).div_(_STD),
        "frame_index": torch.stack([item["frame_index"] for item in items]),
        "label": torch.tensor([item["label"] for item in items], dtype=torch.long),
        "index": torch.tensor([item["index"] for item in items], dtype=torch.long),
        "name": [item["name"] for item in items],
        "skipped": skipped,
    }
