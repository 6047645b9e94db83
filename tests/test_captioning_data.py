"""Captioning data and metrics: generated scenes, vocabulary, Karpathy and COCO JSON, bad images, batches, BLEU,
CIDEr-D and METEOR."""

from __future__ import annotations

import json
import random

import pytest
import torch
from PIL import Image

from apps.captioning.data import CaptionDataset, CaptioningDataModule, collate, transform
from apps.captioning.files import Entry, check_images, image_files, load_rgb, read_coco, read_karpathy
from apps.captioning.scenes import GeneratedScenes, scene_captions, scene_things
from apps.captioning.vocabulary import BOS, EOS, PAD, UNK, Vocabulary
from apps.common.errors import UserError


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
    with pytest.raises(UserError, match=r"dataset_flickr8k.json: images\[0\]: missing key 'sentences'"):
        read_karpathy(path, folder)
    path.write_text('{"images": [}')
    with pytest.raises(UserError, match=r"dataset_flickr8k\.json:1: not valid JSON"):
        read_karpathy(path, folder)


def test_coco_json_groups_captions_by_image_and_names_missing_keys(tmp_path):
    path = tmp_path / "captions_val2014.json"
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg"}, {"id": 2, "file_name": "y.jpg"}],
                                "annotations": [{"image_id": 7, "caption": "one"}, {"image_id": 2, "caption": "two"},
                                                {"image_id": 7, "caption": "three"}]}))
    entries = read_coco(path, tmp_path)
    assert [(e.path.name, e.captions) for e in entries] == [("y.jpg", ["two"]), ("x.jpg", ["one", "three"])]
    path.write_text(json.dumps({"images": [{"id": 7, "file_name": "x.jpg"}], "annotations": [{"image_id": 7}]}))
    with pytest.raises(UserError, match=r"annotations\[0\]: missing key 'caption'"):
        read_coco(path, tmp_path)


def test_missing_and_corrupt_images_are_skipped_with_a_count_or_raise(tmp_path):
    good = _image(tmp_path / "good.png", "RGB")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    entries = [Entry(good, ["a"]), Entry(tmp_path / "broken.jpg", ["b"]), Entry(tmp_path / "gone.jpg", ["c"])]
    with pytest.warns(UserWarning, match=r"train: 2 of 3 images missing or unreadable: .*broken.jpg \(not an image "
                      r"format Pillow reads\); .*gone.jpg \(no such file\); skipped"):
        assert check_images(entries, "skip", verify=True, source="train") == entries[:1]
    with pytest.raises(UserError, match=r"2 of 3 images .*on_bad_image=skip"):
        check_images(entries, "error", verify=True, source="train")
    with pytest.warns(UserWarning, match="1 of 3"):  # without verifying, only the missing file is caught
        check_images(entries, "skip", verify=False, source="train")


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
    with pytest.raises(UserError, match=r"needs --data\.path"):
        CaptioningDataModule("karpathy")


def test_image_files_from_a_folder_or_a_list(tmp_path):
    for name in ("b.png", "a.jpg", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert [p.name for p in image_files(tmp_path)] == ["a.jpg", "b.png"]
    listing = tmp_path / "list.txt"
    listing.write_text("b.png\n# a comment\n\na.jpg\n")
    assert image_files(listing) == [tmp_path / "b.png", tmp_path / "a.jpg"]
    with pytest.raises(UserError, match="neither a folder"):
        image_files(tmp_path / "nothing")


@pytest.mark.parametrize(("options", "message"), [
    ({"max_caption_length": 0}, r"--data.max_caption_length must be at least 1, got 0"),
    ({"max_caption_length": -2}, r"--data.max_caption_length must be at least 1, got -2"),
    ({"image_size": 0}, r"--data.image_size must be at least 1, got 0"),
    ({"generated_sizes": (10, 0, 5)}, r"--data.generated_sizes: .* must each be at least 1, got \[10, 0, 5\]"),
    ({"generated_sizes": (0, 4, 4)}, r"--data.generated_sizes: .* must each be at least 1, got \[0, 4, 4\]"),
    ({"max_objects": 0}, r"--data.max_objects must be 1 to 9, got 0"),
    ({"on_bad_image": "ignore"}, r"--data.on_bad_image must be 'skip' or 'error', got 'ignore'"),
    ({"dataset": "flickr"}, r"--data.dataset: unknown dataset 'flickr'"),
    ({"batch_size": 0}, r"--data\.batch_size is 0; expected at least 1"),  # apps.common.data's check, at build time
    ({"num_workers": -1}, r"--data\.num_workers is -1; expected 0 or more"),
])
def test_degenerate_data_options_are_one_error_naming_the_option(options, message):
    with pytest.raises(UserError, match=message):
        CaptioningDataModule(**options)


@pytest.mark.parametrize(("options", "message"), [
    ({"beam_size": 0}, r"--model.beam_size must be at least 1, got 0"),
    ({"beam_size": -1}, r"--model.beam_size must be at least 1, got -1"),
    ({"max_length": 0}, r"--model.max_length must be at least 1, got 0"),
    ({"num_samples": -1}, r"--model.num_samples must be at least 0, got -1"),
    ({"dropout": 1.5}, r"--model.dropout must be from 0 to 1, got 1.5"),
    ({"teacher_forcing": -0.1}, r"--model.teacher_forcing must be from 0 to 1, got -0.1"),
    ({"label_smoothing": 2.0}, r"--model.label_smoothing must be from 0 to 1, got 2.0"),
])
def test_degenerate_model_options_are_one_error_naming_the_option(options, message):
    from apps.captioning.model import CaptioningModel

    with pytest.raises(UserError, match=message):
        CaptioningModel(weights=None, **options)


def _coco(path, image_names: list[str]):
    notes = [{"image_id": k, "caption": "A dog."} for k in range(len(image_names))]
    path.write_text(json.dumps({"images": [{"id": k, "file_name": n} for k, n in enumerate(image_names)],
                                "annotations": notes}))
    return path


def test_a_split_left_with_no_images_is_one_error_naming_the_file(tmp_path):
    path, folder = _karpathy(tmp_path, {"a.png": "train", "b.png": "val"})
    with pytest.raises(UserError, match=rf"the train split of {path} \(images in {folder}\): 1 of 1 images missing or "
                                        rf"unreadable: {folder / 'a.png'} \(no such file\); none is left"):
        CaptioningDataModule("karpathy", path=str(folder), annotations=str(path)).setup("fit")
    _image(folder / "a.png", "RGB")
    (folder / "b.png").write_bytes(b"broken")
    with pytest.raises(UserError, match=rf"the val split of {path} .*b.png \(not an image format Pillow reads\); none"):
        CaptioningDataModule("karpathy", path=str(folder), annotations=str(path), min_word_count=1).setup("fit")
    with pytest.raises(UserError, match=rf"the test split of {path} \(images in {folder}\): no images"):
        CaptioningDataModule("karpathy", path=str(folder), annotations=str(path), min_word_count=1).setup("test")
    train, val = _coco(tmp_path / "train.json", ["a.png"]), _coco(tmp_path / "val.json", ["a.png"])
    with pytest.raises(UserError, match=rf"the val half of the 1 images of {val} \(images in {folder}\): no images"):
        CaptioningDataModule("coco", path=str(folder), annotations=str(train), val_annotations=str(val),
                             min_word_count=1).setup("fit")
    val = _coco(tmp_path / "val.json", ["gone1.png", "gone2.png"])
    with pytest.raises(UserError, match=rf"the val half of the 2 images of {val} .*gone1.png \(no such file\); none"):
        CaptioningDataModule("coco", path=str(folder), annotations=str(train), val_annotations=str(val),
                             min_word_count=1, verify_images=False).setup("fit")
    with pytest.raises(UserError, match=rf"--data.path {tmp_path / 'nowhere'}: no such folder"):
        CaptioningDataModule("karpathy", path=str(tmp_path / "nowhere"), annotations=str(path)).setup("fit")
    with pytest.raises(UserError, match=rf"annotation file {tmp_path / 'none.json'} does not exist"):
        CaptioningDataModule("karpathy", path=str(folder), annotations=str(tmp_path / "none.json")).setup("fit")


def test_a_vocabulary_of_only_special_tokens_is_one_error_naming_min_word_count(tmp_path):
    path, folder = _karpathy(tmp_path, {"a.png": "train", "b.png": "val"})
    for name in ("a.png", "b.png"):
        _image(folder / name, "RGB")
    with pytest.raises(UserError, match=rf"--data.min_word_count=3: no word of the training captions of {path} occurs "
                                        r"that often \(the commonest, 'a', occurs 2 times\); the vocabulary would "
                                        r"hold only <pad>, <bos>, <eos>, <unk>"):
        CaptioningDataModule("karpathy", path=str(folder), annotations=str(path), min_word_count=3).setup("fit")
    with pytest.raises(UserError, match=r"--data.min_word_count=100000: .* generated scenes .*the commonest, 'a'"):
        CaptioningDataModule(generated_sizes=(8, 2, 2), image_size=16, min_word_count=100_000).setup("fit")
    path.write_text(json.dumps({"images": [{"filename": n, "split": s, "sentences": [{"raw": "... !"}]}
                                           for n, s in (("a.png", "train"), ("b.png", "val"))]}))
    with pytest.raises(UserError, match=r"--data.min_word_count=1: .* \(they hold no words\)"):
        CaptioningDataModule("karpathy", path=str(folder), annotations=str(path), min_word_count=1).setup("fit")


@pytest.mark.parametrize(("artefacts", "holds"), [
    ({"tokenizer": {"a": 1}, "classes": ["x"]}, r"artefacts \['classes', 'tokenizer'\]"),
    ({"vocabulary": ["a", "b"]}, r"a vocabulary starting \['a', 'b'\]"),
    ({"vocabulary": {"<pad>": 0}}, r"a vocabulary starting dict"),
])
def test_a_checkpoint_without_a_captioning_vocabulary_is_one_error_naming_it(artefacts, holds, tmp_path):
    checkpoint = tmp_path / "other.ckpt"
    torch.save({"artefacts": artefacts}, checkpoint)
    data = CaptioningDataModule(generated_sizes=(8, 2, 2), image_size=16, predict_path=str(tmp_path))
    data.checkpoint_path = str(checkpoint)
    for stage in ("predict", "test"):
        with pytest.raises(UserError, match=rf"--ckpt_path {checkpoint}: not a captioning checkpoint \(it holds "
                                            rf"{holds}"):
            data.setup(stage)


def test_a_checkpoint_vocabulary_that_knows_few_words_of_the_data_warns_naming_both(tmp_path):
    checkpoint = tmp_path / "flickr.ckpt"
    torch.save({"artefacts": {"vocabulary": ["<pad>", "<bos>", "<eos>", "<unk>", "dog", "grass"]}}, checkpoint)
    data = CaptioningDataModule(generated_sizes=(8, 4, 4), image_size=16)
    data.checkpoint_path = str(checkpoint)
    with pytest.warns(UserWarning, match=rf"--ckpt_path {checkpoint}: its vocabulary knows only 0 of the \d+ words of "
                                         r"the test captions of generated scenes"):
        data.setup("test")
    assert data.vocabulary.tokens[4:] == ["dog", "grass"]  # the checkpoint's ids are kept
