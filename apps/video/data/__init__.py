"""Video clips for classification: rendered motion clips, UCF101, HMDB51, any class-per-folder set of video files.
Every source is a folder of video files read by one reader; the rendered clips are written as one first."""

from apps.video.data.dataset import IMAGENET_MEAN, IMAGENET_STD
from apps.video.data.frames import VideoDecodeError, clip_indices, decode_frames, segment_indices, uniform_indices
from apps.video.data.index import VideoInfo, index_videos, probe_video
from apps.video.data.layouts import Video, split_by_group, video_files, video_group
from apps.video.data.module import VideoDataModule
from apps.video.data.render import GENERATED_CLASSES, ClipState, clip_state, generate_clips, render_clip, write_video
from apps.video.data.skipped import SkippedVideos

__all__ = [
    "GENERATED_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ClipState",
    "SkippedVideos",
    "Video",
    "VideoDataModule",
    "VideoDecodeError",
    "VideoInfo",
    "clip_indices",
    "clip_state",
    "decode_frames",
    "generate_clips",
    "index_videos",
    "probe_video",
    "render_clip",
    "segment_indices",
    "split_by_group",
    "uniform_indices",
    "video_files",
    "video_group",
    "write_video",
]
