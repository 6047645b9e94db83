"""Captioning images: every Pillow mode to 8-bit RGB against a reference picture, every format Pillow reads found in a
predict folder, and undecodable files skipped and named (or one error when nothing is left)."""

from __future__ import annotations

import struct
import warnings
import zlib

import numpy as np
import pytest
import torch
from PIL import Image, features

from apps.captioning.data import CaptionDataset, collate, transform
from apps.captioning.files import Entry, check_images, image_files, image_suffixes, load_rgb
from apps.captioning.vocabulary import Vocabulary
from apps.common.errors import UserError

# the reference picture: a gray ramp over the full 0-255 range, and colour patches
RAMP = np.tile(np.linspace(0, 255, 24).round().astype(np.uint8), (10, 1))
COLOURS = np.stack([RAMP, RAMP[:, ::-1], np.full_like(RAMP, 90)], axis=-1)
GRAY = np.stack([RAMP] * 3, axis=-1)


def _png16_rgb(path, values: np.ndarray) -> None:
    """A 16-bit RGB PNG (Pillow cannot write one): IHDR, one zlib IDAT of unfiltered big-endian rows, IEND."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    height, width, _ = values.shape
    rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in values)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def _over_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    a = alpha[..., None] / 255.0
    return rgb * a + 255 * (1 - a)


ALPHA = np.tile(np.array([0, 64, 128, 255], dtype=np.uint8), (10, 6))


def _write(kind: str, path):
    """Writes the reference in one mode; returns the file and the RGB picture it should load as."""
    if kind == "L":
        Image.fromarray(RAMP, "L").save(path := path.with_suffix(".png"))
        return path, GRAY
    if kind == "I;16 png":  # 16-bit: 8-bit values times 257
        Image.fromarray(RAMP.astype(np.uint16) * 257).save(path := path.with_suffix(".png"))
        return path, GRAY
    if kind == "I;16 uneven":  # values that are not multiples of 257 round to the nearest level
        values = (RAMP.astype(np.uint16) * 257 + 100).clip(0, 65535).astype(np.uint16)
        Image.fromarray(values).save(path := path.with_suffix(".tif"))
        return path, np.stack([np.rint(values / 257)] * 3, -1)
    if kind == "I tiff":
        Image.fromarray(RAMP.astype(np.int32) * 257, "I").save(path := path.with_suffix(".tif"))
        return path, GRAY
    if kind == "I negative":  # not a 16-bit image: its actual range -1000..1000
        Image.fromarray(RAMP.astype(np.int32) * 2000 // 255 - 1000, "I").save(path := path.with_suffix(".tif"))
        return path, GRAY
    if kind == "F [0,1]":
        Image.fromarray(RAMP.astype(np.float32) / 255, "F").save(path := path.with_suffix(".tif"))
        return path, GRAY
    if kind == "F [0,255]":
        Image.fromarray(RAMP.astype(np.float32), "F").save(path := path.with_suffix(".tif"))
        return path, GRAY
    if kind == "F [-1,1]":
        Image.fromarray(RAMP.astype(np.float32) / 127.5 - 1, "F").save(path := path.with_suffix(".tif"))
        return path, GRAY
    if kind == "F nan":  # NaN is black, the finite values keep their [0, 1] scale
        values = RAMP.astype(np.float32) / 255
        values[:, 0] = np.nan
        Image.fromarray(values, "F").save(path := path.with_suffix(".tif"))
        expected = GRAY.copy()
        expected[:, 0] = 0
        return path, expected
    if kind == "1":
        Image.fromarray(RAMP >= 128).save(path := path.with_suffix(".png"))
        return path, np.where(GRAY >= 128, 255, 0)
    if kind in ("P", "P transparent"):
        palette = np.array([[255, 0, 0], [0, 200, 0], [10, 20, 230], [250, 250, 0]], dtype=np.uint8)
        index = (RAMP // 64).astype(np.uint8)
        image = Image.fromarray(index, "P")
        image.putpalette(palette.tobytes())
        expected = palette[index].astype(float)
        if kind == "P transparent":
            image.info["transparency"] = 2
            expected[index == 2] = 255
        image.save(path := path.with_suffix(".png"), **({"transparency": 2} if kind == "P transparent" else {}))
        return path, expected
    if kind == "LA":
        Image.fromarray(np.stack([RAMP, ALPHA], -1), "LA").save(path := path.with_suffix(".png"))
        return path, _over_white(GRAY, ALPHA)
    if kind == "RGBA":
        Image.fromarray(np.dstack([COLOURS, ALPHA]), "RGBA").save(path := path.with_suffix(".png"))
        return path, _over_white(COLOURS, ALPHA)
    if kind == "CMYK":
        cmyk = np.dstack([255 - COLOURS, RAMP // 4]).astype(np.uint8)
        Image.fromarray(cmyk, "CMYK").save(path := path.with_suffix(".tif"))
        return path, (255 - cmyk[..., :3].astype(int)) * (255 - cmyk[..., 3:].astype(int)) / 255.0
    if kind == "RGB 16-bit png":
        _png16_rgb(path := path.with_suffix(".png"), COLOURS.astype(np.uint16) * 257)
        return path, COLOURS
    if kind == "EXIF rotated":  # orientation 6: stored on its side, shown turned 90 degrees clockwise
        exif = Image.Exif()
        exif[0x0112] = 6
        Image.fromarray(COLOURS).save(path := path.with_suffix(".png"), exif=exif)
        return path, np.rot90(COLOURS, k=-1)
    raise AssertionError(kind)


KINDS = ["L", "I;16 png", "I;16 uneven", "I tiff", "I negative", "F [0,1]", "F [0,255]", "F [-1,1]", "F nan", "1",
         "P", "P transparent", "LA", "RGBA", "CMYK", "RGB 16-bit png", "EXIF rotated"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_mode_loads_as_the_reference_picture(kind, tmp_path):
    path, expected = _write(kind, tmp_path / "picture")
    image = load_rgb(path)
    assert image.mode == "RGB"
    difference = np.abs(np.asarray(image, dtype=float) - expected)
    assert difference.max() <= 1, f"{kind} ({Image.open(path).mode}): off by up to {difference.max()}"


def test_training_test_and_predict_items_see_the_same_picture_in_every_mode(tmp_path):
    written = [_write(kind, tmp_path / f"{k}") for k, kind in enumerate(["L", "I;16 png", "I tiff", "F [0,1]"])]
    dataset = CaptionDataset([Entry(path, ["a ramp"]) for path, _ in written], Vocabulary.from_captions(["a"], 1),
                             transform(24, augment=False), train=False, max_caption_length=5)
    images = collate([dataset[i] for i in range(len(written))])["image"]
    assert torch.allclose(images, images[:1].expand_as(images), atol=0.02)  # one 8-bit level, normalised


def _save_in_every_format(folder) -> list[str]:
    """The reference saved in each format Pillow both writes and reads here."""
    names = []
    for suffix in (".bmp", ".dib", ".gif", ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".tif", ".tiff", ".ppm", ".pgm",
                   ".pbm", ".pcx", ".tga", ".qoi", ".sgi", ".ico", ".webp", ".BMP", ".Tif"):
        if suffix == ".webp" and not features.check("webp"):
            continue
        image = Image.fromarray(RAMP if suffix in (".pgm", ".pbm") else COLOURS)
        image.convert("1" if suffix == ".pbm" else image.mode).save(folder / f"x{suffix}")
        names.append(f"x{suffix}")
    return sorted(names)


def test_a_predict_folder_holds_every_format_pillow_reads_and_nothing_else(tmp_path):
    names = _save_in_every_format(tmp_path)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "doc.pdf").write_bytes(b"%PDF-1.4")  # Pillow writes PDF but cannot read it
    found = image_files(tmp_path)
    assert sorted(p.name for p in found) == names
    entries = [Entry(p, []) for p in found]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # all decode: no warning
        assert check_images(entries, "skip", verify=True, source="photos") == entries
    suffixes = image_suffixes()
    assert {".tif", ".tiff", ".webp", ".bmp", ".gif", ".jpg", ".png", ".mpo"} <= suffixes and ".pdf" not in suffixes


def _bad_files(folder) -> list[str]:
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(folder / "cut.jpg")
    (folder / "cut.jpg").write_bytes((folder / "cut.jpg").read_bytes()[:900])  # truncated: the header opens
    (folder / "text.png").write_text("not a picture")
    (folder / "empty.gif").write_bytes(b"")
    Image.fromarray(COLOURS).save(folder / "cut.png")
    (folder / "cut.png").write_bytes((folder / "cut.png").read_bytes()[:-30])
    return ["cut.jpg", "cut.png", "empty.gif", "text.png"]


def test_undecodable_files_are_skipped_and_every_one_named(tmp_path):
    bad = _bad_files(tmp_path)
    Image.fromarray(COLOURS).save(tmp_path / "good.webp" if features.check("webp") else tmp_path / "good.bmp")
    entries = [Entry(p, []) for p in image_files(tmp_path)]
    with pytest.warns(UserWarning, match=r"photos: 4 of 5 images missing or unreadable: ") as caught:
        kept = check_images(entries, "skip", verify=True, source="photos")
    assert [e.path.name for e in kept] in (["good.webp"], ["good.bmp"])
    message = str(caught[0].message)
    assert all(f"{tmp_path / name} (" in message for name in bad), message
    assert "truncated" in message  # the JPEG's header opened: only decoding finds it
    with pytest.raises(UserError, match=r"photos: 4 of 5 .*pass --data.on_bad_image=skip"):
        check_images(entries, "error", verify=True, source="photos")


def test_a_predict_folder_with_nothing_to_caption_is_one_error_naming_it(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    with pytest.raises(UserError, match=rf"--data.predict_path {folder}: the folder is empty"):
        image_files(folder)
    (folder / "notes.txt").write_text("x")
    with pytest.raises(UserError, match=rf"--data.predict_path {folder}: no image files in the folder \(none of its 1"):
        image_files(folder)
    bad = _bad_files(folder)
    entries = [Entry(p, []) for p in image_files(folder)]
    with pytest.raises(UserError, match=rf"{folder}: 4 of 4 images missing or unreadable: .*none is left") as caught:
        check_images(entries, "skip", verify=True, source=str(folder))
    assert all(name in str(caught.value) for name in bad)
    listing = tmp_path / "list.txt"
    listing.write_text("# nothing\n\n")
    with pytest.raises(UserError, match=r"list.txt: the list file names no images"):
        image_files(listing)
    with pytest.raises(UserError, match=r"neither a folder of images nor a list file"):
        image_files(tmp_path / "nothing")


def test_a_batch_whose_every_image_failed_to_decode_is_an_error_not_a_crash(tmp_path):
    bad = _bad_files(tmp_path)
    dataset = CaptionDataset([Entry(tmp_path / name, ["a"]) for name in bad], Vocabulary.from_captions(["a"], 1),
                             transform(24, augment=False), train=False, max_caption_length=5)
    with pytest.warns(UserWarning, match="cannot be decoded"):
        items = [dataset[i] for i in range(len(bad))]
    assert items == [None] * len(bad)
    with pytest.raises(UserError, match="no image of a batch could be decoded"):
        collate(items)
    dataset.on_bad_image = "error"
    with pytest.raises(UserError, match=r"cut.jpg cannot be decoded: image file is truncated"):
        dataset[0]
