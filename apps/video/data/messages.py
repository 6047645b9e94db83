"""The messages of bad data, one wording wherever a fault is found (the index, a decode, a checkpoint)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from apps.common.errors import UserError

#: how many bad videos a warning or an error names
SHOWN = 5


def bad_video_error(path: Path | str, reason: str, what: str, count: int = 1) -> str:
    """The message of a video that cannot be read when ``--data.on_bad_video error`` asks to stop there."""
    return (f"{path}: cannot be read as a video ({reason}); {count} such in {what} (pass --data.on_bad_video skip to "
            "leave them out)")


def named(bad: Sequence[tuple[str, str]]) -> str:
    """The first few of (name, why) pairs, as a message lists them."""
    return ", ".join(f"{name} ({why})" for name, why in bad[:SHOWN]) + (", ..." if len(bad) > SHOWN else "")


def skipped_warning(what: str, bad: Sequence[tuple[str, str]], total: int) -> str:
    """The one warning for videos left out, whether the index found them bad or they failed while decoding."""
    return (f"{what}: skipped {len(bad)} of {total} videos that are missing, unreadable or have no frames: "
            f"{named(bad)}")


def none_readable(what: str, bad: Sequence[tuple[str, str]]) -> UserError:
    """The error of a split none of whose videos can be read."""
    return UserError(f"every video of {what} is missing, unreadable or has no frames ({len(bad)}): {named(bad)}")


def class_mismatch(checkpoint: str, stored: list[str], what: str, classes: list[str]) -> str:
    """The message of a checkpoint whose class ids mean other classes than the data's: which names differ."""
    only_stored, only_data = [c for c in stored if c not in classes], [c for c in classes if c not in stored]
    if only_stored or only_data:
        differ = f"only in the checkpoint: {_names(only_stored)}; only in the data: {_names(only_data)}"
    else:
        differ = f"the same names in another order: checkpoint {_names(stored)}, data {_names(classes)}"
    return (f"the checkpoint {checkpoint} knows {len(stored)} classes and {what} {len(classes)}, which differ "
            f"({differ}); its class ids would mean other classes: pass the data it was trained on, or fit anew "
            "without --ckpt_path")


def _names(names: list[str], shown: int = 6) -> str:
    return (", ".join(names[:shown]) + (f", ... ({len(names)})" if len(names) > shown else "")) or "none"
