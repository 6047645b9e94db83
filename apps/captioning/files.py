"""Images and captions on disk: Karpathy split JSON, COCO captions JSON, image folders and lists; ``load_rgb``, the
one way an image is opened (training, evaluation, prediction and the check), turning every Pillow mode into 8-bit
RGB; and the check that every image decodes (bad ones skipped and named, or an error)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image, ImageOps, UnidentifiedImageError

from apps.common.errors import UserError

#: what Pillow raises on a file it cannot decode (broken, truncated, too large, or a mode it cannot convert)
DECODING_ERRORS = (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError)
NAMED = 10  # bad files a message names one by one


@dataclass
class Entry:
    """An image file and its reference captions (none when predicting)."""

    path: Path
    captions: list[str]


class UnreadableImageError(Exception):
    """An image file that is missing or cannot be decoded; ``reason`` says why."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path, self.reason = path, reason


def _require(mapping: dict, key: str, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        found = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise UserError(f"{where}: missing key {key!r} (found {found})")
    return mapping[key]


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"annotation file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


def read_karpathy(annotations: Path, images: Path) -> dict[str, list[Entry]]:
    """Karpathy's split JSON (dataset_flickr8k.json, dataset_flickr30k.json, dataset_coco.json): ``images`` with
    ``filename``, optional ``filepath`` (COCO's train2014/val2014), ``split`` (train, restval, val or test;
    restval joins train) and ``sentences`` with ``raw`` (or ``tokens``)."""
    data = _load_json(annotations)
    splits: dict[str, list[Entry]] = {"train": [], "val": [], "test": []}
    for k, item in enumerate(_require(data, "images", str(annotations))):
        where = f"{annotations}: images[{k}]"
        split = _require(item, "split", where)
        if split not in ("train", "restval", "val", "test"):
            raise UserError(f"{where}: split {split!r}; expected train, restval, val or test")
        captions = []
        for j, sentence in enumerate(_require(item, "sentences", where)):
            if isinstance(sentence, dict) and "raw" not in sentence and "tokens" in sentence:
                captions.append(" ".join(sentence["tokens"]))
            else:
                captions.append(_require(sentence, "raw", f"{where}.sentences[{j}]"))
        path = images / item.get("filepath", "") / _require(item, "filename", where)
        splits["train" if split == "restval" else split].append(Entry(path, captions))
    return splits


def read_coco(annotations: Path, images: Path) -> list[Entry]:
    """A COCO captions JSON (captions_train2014.json, ...): ``images`` with ``id`` and ``file_name``, and
    ``annotations`` with ``image_id`` and ``caption``; images in id order."""
    data = _load_json(annotations)
    files = {}
    for k, item in enumerate(_require(data, "images", str(annotations))):
        where = f"{annotations}: images[{k}]"
        files[_require(item, "id", where)] = _require(item, "file_name", where)
    captions: dict[int, list[str]] = {i: [] for i in files}
    for k, note in enumerate(_require(data, "annotations", str(annotations))):
        where = f"{annotations}: annotations[{k}]"
        image_id = _require(note, "image_id", where)
        if image_id not in captions:
            raise UserError(f"{where}: image_id {image_id} is not among the file's images")
        captions[image_id].append(_require(note, "caption", where))
    return [Entry(images / files[i], captions[i]) for i in sorted(files)]


def image_suffixes() -> set[str]:
    """The file endings (lower case) of every format Pillow reads, as its plugins register them (MPO, the
    multi-picture JPEG, is read by the JPEG reader; PDF and Palm are write-only)."""
    extensions = Image.registered_extensions()  # loads every plugin, so Image.OPEN is complete after it
    return {suffix for suffix, name in extensions.items() if name in Image.OPEN or name == "MPO"}


def image_files(location: Path) -> list[Path]:
    """The images to caption: every file under a folder that Pillow's formats claim by their ending (sorted), or
    the paths listed in a text file (one per line, relative to the list's folder). Nothing to caption is an error."""
    if location.is_dir():
        suffixes = image_suffixes()
        files = sorted(p for p in location.rglob("*") if p.is_file())
        images = [p for p in files if p.suffix.lower() in suffixes]
        if not files:
            raise UserError(f"--data.predict_path {location}: the folder is empty; expected image files")
        if not images:
            known = ", ".join(sorted(s for s in suffixes if s in (".bmp", ".gif", ".jpg", ".png", ".tif", ".webp")))
            raise UserError(f"--data.predict_path {location}: no image files in the folder (none of its {len(files)} "
                            f"files ends in one of the {len(suffixes)} extensions Pillow reads, such as {known})")
        return images
    if location.is_file():
        lines = [line.strip() for line in location.read_text().splitlines()]
        listed = [(location.parent / line) for line in lines if line and not line.startswith("#")]
        if not listed:
            raise UserError(f"--data.predict_path {location}: the list file names no images (one path a line)")
        return listed
    raise UserError(f"--data.predict_path {location}: neither a folder of images nor a list file")


def eight_bit(values: np.ndarray, mode: str) -> np.ndarray:
    """The values of a one-band ``I;16*``, ``I`` or ``F`` image as uint8. 16-bit integers are scaled from 0-65535
    (divided by 257), as are 32-bit integers that fit in 16 bits; floats from the smallest usual full scale that holds
    them, [0, 1], [0, 255] or [0, 65535]; values beyond 65535, or negative, from their actual range. NaN is black,
    infinities are clipped."""
    values = values.astype(np.float32)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    scales = (1.0, 255.0, 65535.0) if mode == "F" else (65535.0,)
    if mode.startswith("I;16"):
        low, high = 0.0, 65535.0
    elif low >= 0:
        low, high = 0.0, next((top for top in scales if high <= top), high)
    scaled = (values - low) * (255.0 / max(high - low, 1e-12))
    return np.rint(np.clip(np.nan_to_num(scaled, nan=0.0, posinf=255.0, neginf=0.0), 0, 255)).astype(np.uint8)


def to_rgb(image: Image.Image) -> Image.Image:
    """A decoded image as 8-bit RGB: high bit depths scaled (``eight_bit``), any transparency laid over white, every
    other mode (1-bit, grayscale, palette, CMYK, YCbCr ...) converted by Pillow."""
    if image.mode in ("I", "F") or image.mode.startswith("I;16"):
        return Image.fromarray(eight_bit(np.asarray(image), image.mode), "L").convert("RGB")
    if image.has_transparency_data:
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return image.convert("RGB")


def load_rgb(path: Path, reduced: bool = False) -> Image.Image:
    """The image at ``path`` as 8-bit RGB (``to_rgb``), turned upright by its EXIF orientation. ``reduced`` decodes a
    JPEG at 1/8 size: every byte is still decoded, so it is a quick check. Raises UnreadableImageError."""
    try:
        with Image.open(path) as image:
            if reduced:
                image.draft(None, (1, 1))
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            return to_rgb(image)
    except FileNotFoundError:
        raise UnreadableImageError(path, "no such file") from None
    except UnidentifiedImageError:
        raise UnreadableImageError(path, "not an image format Pillow reads") from None
    except DECODING_ERRORS as error:
        raise UnreadableImageError(path, str(error) or type(error).__name__) from error


def _why_unreadable(path: Path, decode: bool) -> str | None:
    if not decode:
        return None if path.is_file() else "no such file"
    try:
        load_rgb(path, reduced=True)
    except UnreadableImageError as error:
        return error.reason
    return None


def check_images(entries: list[Entry], on_bad_image: str, verify: bool, source: str) -> list[Entry]:
    """The entries whose image exists and, with ``verify``, decodes through load_rgb. The others are named with why
    in a warning and skipped, or raise, by ``on_bad_image``. No entries, or none readable, is an error: ``source``
    (e.g. "the train split of FILE") says where they came from."""
    if not entries:
        raise UserError(f"{source}: no images")
    with ThreadPoolExecutor(8) as pool:
        reasons = list(pool.map(lambda e: _why_unreadable(e.path, verify), entries))
    bad = [f"{e.path} ({why})" for e, why in zip(entries, reasons, strict=True) if why]
    if bad:
        named = "; ".join(bad[:NAMED]) + (f"; and {len(bad) - NAMED} more" if len(bad) > NAMED else "")
        message = f"{source}: {len(bad)} of {len(entries)} images missing or unreadable: {named}"
        if len(bad) == len(entries):
            raise UserError(f"{message}; none is left")
        if on_bad_image == "error":
            raise UserError(f"{message}; pass --data.on_bad_image=skip to leave them out")
        rank_zero_warn(f"{message}; skipped")
    return [e for e, why in zip(entries, reasons, strict=True) if not why]
