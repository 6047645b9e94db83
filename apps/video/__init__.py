"""Video classification, LRCN: frames -> ImageEncoder per frame -> Recurrent over frames -> class.

``python -m apps.video {fit,validate,test,predict}``; see configs/video/.
"""

from apps.common.cli import run
from apps.video.data import SkippedVideos, VideoDataModule
from apps.video.model import VideoModel


def main(args: list[str] | None = None):
    """The video command line (``args``, or sys.argv when None)."""
    return run(VideoModel, VideoDataModule, "video", callbacks={"skipped_videos": SkippedVideos}, args=args)
