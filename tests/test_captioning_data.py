"""Captioning data and metrics: generated scenes, vocabulary, Karpathy and COCO JSON, bad images, batches, BLEU,
CIDEr-D and METEOR."""

from __future__ import annotations

import json
import random

import pytest
import torch
from PIL import Image

from apps.captioning import metrics
from apps.captioning.data import (
    BOS,
    EOS,
    PAD,
    UNK,
    CaptionDataset,
    CaptioningDataModule,
    Vocabulary,
    collate,
    transform,
)
from apps.captioning.files import Entry, check_images, image_files, load_rgb, read_coco, read_karpathy
from apps.captioning.scenes import GeneratedScenes, scene_captions, scene_things


def test_generated_scenes_are_reproducible_and_captions_name_every_shape():
    scenes = GeneratedScenes(50, seed=3, image_size=48, max_objects=3)
    for i in range(50):
        image, captions = scenes.scene(i)
        again, same = GeneratedScenes(50, seed=3, image_size=48, max_objects=3).scene(i)
        assert image.size == (48, 48) and image.tobytes() == again.tobytes() and captions == same
        things = scene_things(random.Random(3 * 1_000_003 + i), 3)
        assert captions == scene_captions(things) and len(captions) == 4
        for thing in things:
            assert f"{thing.size} {thing.colour} {thing.shape}" in captions[0]
        # reading order: shapes listed top to bottom, left to right
        assert [t.place for t in things] == sorted(t.place for t in things)
    counts = {len(scene_things(random.Random(k), 3)) for k in range(100)}
    assert counts == {1, 2, 3}


def test_generated_scenes_show_the_named_colour_where_the_caption_says():
    scenes = GeneratedScenes(20, seed=0, image_size=60, max_objects=1)
    for i in range(20):
        image, captions = scenes.scene(i)
        (thing,) = scene_things(random.Random(i), 1)
        row, col = thing.place
        cell = image.crop((col * 20, row * 20, col * 20 + 20, row * 20 + 20))
        colours = {c for _, c in cell.getcolors(400)}
        assert any(max(c) > 150 for c in colours), captions[0]  # the shape is in its cell, not elsewhere


def test_vocabulary_keeps_frequent_words_and_round_trips():
    vocabulary = Vocabulary.from_captions(["A dog runs.", "a dog sits", "a cat"], min_count=2)
    assert vocabulary.tokens == ["<pad>", "<bos>", "<eos>", "<unk>", "a", "dog"]
    assert vocabulary.encode("A dog, jumping!") == [4, 5, UNK]
    assert vocabulary.decode([4, 5, UNK, EOS, PAD]) == "a dog <unk>"
    with pytest.raises(ValueError, match="starts with"):
        Vocabulary(["a", "b"])


def test_collate_pads_captions_between_bos_and_eos():
    vocabulary = Vocabulary.from_captions(["a red circle", "a blue square on the left"], 1)
    dataset = CaptionDataset(GeneratedScenes(4, 0, 32, 2), vocabulary, transform(32, False), train=False,
                             max_caption_length=30)
    items = [(torch.zeros(3, 32, 32), [4, 5], ["x"], 0, "a"), (torch.zeros(3, 32, 32), [4, 5, 6, 7], ["y"], 1, "b")]
    batch = collate([*items, None])  # an image that failed to decode is left out
    assert batch["image"].shape == (2, 3, 32, 32) and batch["index"].tolist() == [0, 1]
    assert batch["target_in"].tolist() == [[BOS, 4, 5, PAD, PAD], [BOS, 4, 5, 6, 7]]
    assert batch["target_out"].tolist() == [[4, 5, EOS, PAD, PAD], [4, 5, 6, 7, EOS]]
    image, _, references, _, name = dataset[1]
    assert image.shape == (3, 32, 32) and len(references) == 4 and name == "scene-000001"


def _image(path, mode, size=(20, 16)):
    colour = {"L": 128, "P": 3, "RGBA": (255, 0, 0, 0), "RGB": (1, 2, 3)}[mode]
    Image.new(mode, size, colour).save(path)
    return path


def test_load_rgb_converts_grayscale_palette_and_transparency(tmp_path):
    assert load_rgb(_image(tmp_path / "gray.png", "L")).getpixel((0, 0)) == (128, 128, 128)
    assert load_rgb(_image(tmp_path / "palette.png", "P")).mode == "RGB"
    assert load_rgb(_image(tmp_path / "clear.png", "RGBA")).getpixel((0, 0)) == (255, 255, 255)  # over white


def _karpathy(tmp_path, images: dict[str, str], drop: str | None = None):
    folder = tmp_path / "images"
    folder.mkdir(exist_ok=True)
    items = []
    for name, split in images.items():
        item = {"filename": name, "split": split, "sentences": [{"raw": f"A photo of {name}."}, {"tokens": ["b"]}]}
        if drop:
            del item[drop]
        items.append(item)
    path = tmp_path / "dataset_flickr8k.json"
    path.write_text(json.dumps({"images": items}))
    return path, folder


def test_karpathy_json_splits_restval_into_train_and_names_missing_keys(tmp_path):
    path, folder = _karpathy(tmp_path, {"a.jpg": "train", "b.jpg": "restval", "c.jpg": "val", "d.jpg": "test"})
    splits = read_karpathy(path, folder)
    assert [e.path.name for e in splits["train"]] == ["a.jpg", "b.jpg"]
    assert splits["test"][0].captions == ["A photo of d.jpg.", "b"]
    path, folder = _karpathy(tmp_path, {"a.jpg": "train"}, drop="sentences")
    with pytest.raises(ValueError, match=r"dataset_flickr8k.json: images\[0\]: missing key 'sentences'"):
        read_karpathy(path, folder)
    path.write_text('{"images": [}')
    with pytest.raises(ValueError, match=r"dataset_flickr8k\.json:1: not valid JSON"):
        read_karpathy(path, folder)


def test_coco_json_groups_captions_by_image_and_names_missing_keys(tmp_path):
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg"}, {"id": 2, "file_name": "y.jpg"}],
                                "annotations": [{"image_id": 7, "caption": "one"}, {"image_id": 2, "caption": "two"},
                                                {"image_id": 7, "caption": "three"}]}))
    entries = read_coco(path, tmp_path)
    assert [(e.path.name, e.captions) for e in entries] == [("y.jpg", ["two"]), ("x.jpg", ["one", "three"])]
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg"}], "annotations": [{"image_id": 7}]}))
    with pytest.raises(ValueError, match=r"annotations\[0\]: missing key 'caption'"):
        read_coco(path, tmp_path)


def test_missing_and_corrupt_images_are_skipped_with_a_count_or_raise(tmp_path):
    good = _image(tmp_path / "good.png", "RGB")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    entries = [Entry(good, ["a"]), Entry(tmp_path / "broken.jpg", ["b"]), Entry(tmp_path / "gone.jpg", ["c"])]
    with pytest.warns(UserWarning, match=r"train: 2 of 3 images missing or unreadable \(first: .*broken.jpg"):
        assert check_images(entries, "skip", verify=True, split="train") == entries[:1]
    with pytest.raises(ValueError, match=r"2 of 3 images .*on_bad_image=skip"):
        check_images(entries, "error", verify=True, split="train")
    with pytest.warns(UserWarning, match="1 of 3"):  # without verifying, only the missing file is caught
        check_images(entries, "skip", verify=False, split="train")


def test_karpathy_data_module_builds_vocabulary_and_batches(tmp_path):
    path, folder = _karpathy(tmp_path, {"a.png": "train", "b.png": "train", "c.png": "val", "d.png": "test"})
    for name, mode in zip("abcd", ["RGB", "L", "P", "RGBA"], strict=True):
        _image(folder / f"{name}.png", mode, size=(40 + 10 * "abcd".index(name), 30))
    data = CaptioningDataModule("karpathy", path=str(folder), annotations=str(path), image_size=24, min_word_count=2,
                                augment=True, batch_size=2)
    data.setup("fit")
    assert data.vocabulary.tokens[4:] == ["a", "b", "of", "photo", "png"]  # "c" and "d": val and test only
    batch = next(iter(data.train_dataloader()))
    assert batch["image"].shape == (2, 3, 24, 24)  # mixed sizes and modes, one shape
    assert next(iter(data.val_dataloader()))["references"] == [["A photo of c.png.", "b"]]
    with pytest.raises(ValueError, match=r"needs --data\.path"):
        CaptioningDataModule("karpathy")


def test_image_files_from_a_folder_or_a_list(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_files(tmp_path)] == ["a.jpg", "b.png"]
    listing = tmp_path / "list.txt"
    listing.write_text("b.png\n# a comment\n\na.jpg\n")
    assert image_files(listing) == [tmp_path / "b.png", tmp_path / "a.jpg"]
    with pytest.raises(FileNotFoundError, match="neither a folder"):
        image_files(tmp_path / "nothing")


def test_bleu_uses_every_reference_and_cider_d_matches_the_coco_code():
    hypotheses = ["a red circle on the left", "a blue circle", "there is a small green triangle at the top"]
    references = [["a red circle on the left", "there is a red circle"], ["a blue square at the top"],
                  ["a small green triangle at the top", "there is a triangle", "a triangle"]]
    bleu = metrics.bleu_scores(hypotheses, references)
    assert bleu[1] > bleu[2] > bleu[3] > bleu[4] > 0
    assert metrics.bleu_scores(["a b c d", "e f g h"], [["x", "a b c d"], ["e f g h"]])[4] == pytest.approx(100)
    pytest.importorskip("pycocoevalcap")
    from pycocoevalcap.cider.cider import Cider  # the COCO evaluation's CIDEr-D (clipped, length penalty)

    expected, _ = Cider().compute_score(dict(enumerate(references)), {i: [h] for i, h in enumerate(hypotheses)})
    assert metrics.cider_d(hypotheses, references) == pytest.approx(expected, rel=1e-9)


def test_meteor_says_why_it_is_skipped(monkeypatch):
    monkeypatch.setattr(metrics.shutil, "which", lambda name: None)
    assert "no java" in metrics.meteor_available()


@pytest.mark.skipif(metrics.meteor_available() is not None, reason="needs java and pycocoevalcap")
def test_meteor_scores_through_the_java_jar():
    perfect = metrics.meteor(["a red circle on the left"], [["a red circle on the left", "a circle"]])
    worse = metrics.meteor(["a blue square"], [["a red circle on the left", "a circle"]])
    assert perfect == pytest.approx(100, abs=1) and 0 <= worse < perfect
    assert metrics.meteor(["", "a circle"], [["a red circle"], ["a circle"]]) < perfect  # an empty caption scores
