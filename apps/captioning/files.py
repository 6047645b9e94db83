"""Images and captions on disk: Karpathy split JSON, COCO captions JSON, image folders and lists, and the check that
every image can be read (bad ones skipped with a count, or an error naming the file)."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_warn
from PIL import Image

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass
class Entry:
    """An image file and its reference captions (none when predicting)."""

    path: Path
    captions: list[str]


def _require(mapping: dict, key: str, where: str):
    if not isinstance(mapping, dict) or key not in mapping:
        found = sorted(mapping) if isinstance(mapping, dict) else type(mapping).__name__
        raise ValueError(f"{where}: missing key {key!r} (found {found})")
    return mapping[key]


def _load_json(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"annotation file {path} does not exist")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None


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
            raise ValueError(f"{where}: split {split!r}; expected train, restval, val or test")
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
            raise ValueError(f"{where}: image_id {image_id} is not among the file's images")
        captions[image_id].append(_require(note, "caption", where))
    return [Entry(images / files[i], captions[i]) for i in sorted(files)]


def image_files(location: Path) -> list[Path]:
    """The images to caption: every image file under a folder (sorted), or the paths listed in a text file (one per
    line, relative to the list's folder)."""
    if location.is_dir():
        return sorted(p for p in location.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if location.is_file():
        lines = [line.strip() for line in location.read_text().splitlines()]
        return [(location.parent / line) for line in lines if line and not line.startswith("#")]
    raise FileNotFoundError(f"predict_path {location} is neither a folder of images nor a list file")


def load_rgb(path: Path) -> Image.Image:
    """An image as RGB: grayscale and palette images converted, transparency laid over white."""
    with Image.open(path) as image:
        image.load()
        if image.mode in ("RGBA", "LA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")


def _readable(path: Path) -> bool:
    try:
        with Image.open(path) as image:
            image.verify()
        return True
    except (OSError, SyntaxError, ValueError):
        return False


def check_images(entries: list[Entry], on_bad_image: str, verify: bool, split: str) -> list[Entry]:
    """The entries whose image exists (and, with ``verify``, passes PIL's check); the others are dropped with a
    count and the first names, or raise, by ``on_bad_image``."""
    if verify:
        with ThreadPoolExecutor(8) as pool:
            good = list(pool.map(_readable, (e.path for e in entries)))
    else:
        good = [e.path.is_file() for e in entries]
    bad = [e.path for e, ok in zip(entries, good, strict=True) if not ok]
    if bad:
        shown = ", ".join(str(p) for p in bad[:5])
        message = f"{split}: {len(bad)} of {len(entries)} images missing or unreadable (first: {shown})"
        if on_bad_image == "error":
            raise ValueError(f"{message}; pass --data.on_bad_image=skip to leave them out")
        rank_zero_warn(f"{message}; skipped")
    return [e for e, ok in zip(entries, good, strict=True) if ok]
