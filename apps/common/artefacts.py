"""What a checkpoint carries besides weights: the artefacts a model was trained with (a tokenizer, a vocabulary, class
or column names), read through one small API that loads a checkpoint file once."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import torch

from apps.common.errors import UserError

ARTEFACTS_KEY = "artefacts"  # where checkpoints keep them: a dict of plain values (strings, lists, numbers)
WRITER_KEY = "model_class"  # the class path of the model that wrote a checkpoint, so another app can refuse it


@functools.cache
def _load(path: str, stamp: tuple[int, int]) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:
        reason = str(error).splitlines()[0].split(". ")[0] if str(error) else type(error).__name__
        if "mmap can only be used" in reason:  # torch's wording for any file that is not a zip archive
            reason = "not a zip archive as torch.save writes"
        raise UserError(f"{path}: not a checkpoint, or a truncated one ({reason[:160]})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The checkpoint at ``path``, loaded once per version of the file (memory-mapped: tensors are read lazily)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist")
    status = path.stat()
    return _load(str(path.resolve()), (status.st_mtime_ns, status.st_size))


def read_artefacts(path: str | os.PathLike) -> dict:
    """The artefacts stored in the checkpoint at ``path``."""
    checkpoint = read_checkpoint(path)
    if ARTEFACTS_KEY not in checkpoint:
        raise UserError(f"{path}: the checkpoint holds no {ARTEFACTS_KEY!r}; it was not written by this version "
                         "of rnn-apps")
    return checkpoint[ARTEFACTS_KEY]


def check_artefacts(ours: dict, theirs: dict, our_name: str, their_name: str) -> None:
    """Raises naming the first artefact that two sides (e.g. a checkpoint and the data) hold differently."""
    for key in sorted(ours.keys() & theirs.keys()):
        if ours[key] != theirs[key]:
            raise UserError(f"{our_name} and {their_name} differ in {key!r}: {_brief(ours[key])} against "
                             f"{_brief(theirs[key])}")


def _brief(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
