"""Image captioning: image -> ImageEncoder (CNN grid) -> ShowAttendTellDecoder with soft attention -> caption.

``python -m apps.captioning {fit,validate,test,predict}``; see configs/captioning/.
"""

from apps.captioning.data import CaptioningDataModule
from apps.captioning.model import CaptioningModel
from apps.common.cli import run


def main(args: list[str] | None = None):
    """The captioning command line (``args``, or sys.argv when None)."""
    return run(CaptioningModel, CaptioningDataModule, "captioning", args=args)
