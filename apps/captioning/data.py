"""Images with reference captions: generated scenes of shapes, Karpathy split JSON, COCO captions JSON.

Captions become word ids with a Vocabulary built from the training captions (words seen at least ``min_word_count``
times; the rest are ``<unk>``); the model keeps it in its checkpoints, so a checkpoint alone can caption. Training
items are (image, one of its captions, drawn anew each time); evaluation items carry every reference of the image.
Images are opened by files.load_rgb (8-bit RGB from any mode), then pass through torchvision.transforms.v2 (resize,
crop, normalise; augmentation on training only).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from apps.captioning.files import (
    Entry,
    UnreadableImageError,
    check_images,
    image_files,
    load_rgb,
    read_coco,
    read_karpathy,
)
from apps.captioning.scenes import PLACES, GeneratedScenes, scene_captions, scene_things
from apps.captioning.vocabulary import BOS, EOS, PAD, SPECIALS, Vocabulary, checkpoint_vocabulary, words
from apps.common.data import AppData
from apps.common.errors import UserError

DATASETS = ("generated", "karpathy", "coco")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


# ---------------------------------------------------------------------------------------------- datasets, batches


def transform(image_size: int, augment: bool) -> v2.Compose:
    """Resize and centre-crop (or, with augment, a random crop of 80-100% and brightness/contrast jitter), then
    normalise with the ImageNet statistics torchvision's weights expect. No flips: captions say left and right."""
    if augment:
        geometry = [v2.RandomResizedCrop(image_size, scale=(0.8, 1.0), ratio=(0.9, 1.1), antialias=True),
                    v2.ColorJitter(brightness=0.2, contrast=0.2)]
    else:
        geometry = [v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size)]
    return v2.Compose([v2.ToImage(), *geometry, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


class CaptionDataset(Dataset):
    """Images with their references, from generated scenes or files. Item i: the image tensor, the ids of one
    caption (a random reference in training, the first otherwise), all references, i and the image's name.
    An image that fails to decode here (it passed the check but is truncated) is returned as None and dropped by
    ``collate``, or raises, by ``on_bad_image`` (the data module's check decodes every image first, so this is rare)."""

    def __init__(self, source: GeneratedScenes | list[Entry], vocabulary: Vocabulary, image_transform, train: bool,
                 max_caption_length: int, on_bad_image: str = "skip") -> None:
        self.source, self.vocabulary, self.transform = source, vocabulary, image_transform
        self.train, self.max_caption_length, self.on_bad_image = train, max_caption_length, on_bad_image

    def __len__(self) -> int:
        return len(self.source)

    def name(self, i: int) -> str:
        return f"scene-{i:06d}" if isinstance(self.source, GeneratedScenes) else str(self.source[i].path)

    def raw(self, i: int) -> tuple[Image.Image, list[str]]:
        """The RGB image and references of item i, before the transform."""
        if isinstance(self.source, GeneratedScenes):
            return self.source.scene(i)
        entry = self.source[i]
        return load_rgb(entry.path), entry.captions

    def __getitem__(self, i: int):
        try:
            image, captions = self.raw(i)
        except UnreadableImageError as err:
            if self.on_bad_image == "error":
                raise UserError(f"image {err.path} cannot be decoded: {err.reason}") from err
            rank_zero_warn(f"image {err.path} cannot be decoded ({err.reason}); left out of its batch")
            return None
        caption = ""
        if captions:
            caption = captions[int(torch.randint(len(captions), ()))] if self.train else captions[0]
        ids = self.vocabulary.encode(caption)[: self.max_caption_length]
        return self.transform(image), ids, captions, i, self.name(i)


def collate(items) -> dict:
    """Stacked images and padded captions: ``target_in`` (BOS + words) and ``target_out`` (words + EOS)."""
    items = [item for item in items if item is not None]
    if not items:
        raise UserError("no image of a batch could be decoded (they are named in the warnings above); leave "
                        "--data.verify_images on to find and skip such images before the run")
    images, ids, references, index, names = zip(*items, strict=True)
    T = max(len(x) for x in ids) + 1
    target_in = torch.full((len(ids), T), PAD, dtype=torch.long)
    target_out = torch.full((len(ids), T), PAD, dtype=torch.long)
    for b, x in enumerate(ids):
        target_in[b, : len(x) + 1] = torch.tensor([BOS, *x])
        target_out[b, : len(x) + 1] = torch.tensor([*x, EOS])
    return {"image": torch.stack(images), "target_in": target_in, "target_out": target_out,
            "references": list(references), "index": torch.tensor(index), "name": list(names)}


class CaptioningDataModule(AppData):
    """Images and captions, a word vocabulary, and batches of images with padded captions."""

    collate = staticmethod(collate)

    def __init__(
        self,
        dataset: str = "generated",
        path: str | None = None,
        annotations: str | None = None,
        val_annotations: str | None = None,
        image_size: int = 224,
        augment: bool = False,
        min_word_count: int = 5,
        max_caption_length: int = 30,
        on_bad_image: str = "skip",
        verify_images: bool = True,
        generated_sizes: tuple[int, int, int] = (20000, 500, 1000),
        max_objects: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        predict_path: str | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            dataset: "generated" (rendered shapes, offline), "karpathy" (split JSON) or "coco" (captions JSON).
            path: the image folder the annotations' file names are relative to.
            annotations: karpathy: dataset_flickr8k.json / dataset_flickr30k.json / dataset_coco.json; coco: the
                training captions JSON (captions_train2014.json).
            val_annotations: coco only: the validation captions JSON; its images in id order are split in half,
                the first half for validation and the second for testing.
            image_size: side of the square images the encoder sees.
            augment: random crops and brightness/contrast jitter on training images.
            min_word_count: words seen fewer times in the training captions become <unk>.
            max_caption_length: training captions are cut to this many words.
            on_bad_image: "skip" missing or unreadable images (each named, with why, in one warning) or "error".
            verify_images: decode every image once when the data is set up (JPEGs at 1/8 size), so that undecodable
                ones are named and left out before the run (else only check that each file exists).
            generated_sizes: train, validation and test scenes of the generated dataset.
            max_objects: most shapes in a generated scene (1 to 9).
            batch_size: images per batch (per process).
            num_workers: DataLoader worker processes.
            predict_path: predict: a folder of images (its files in any format Pillow reads, by their extension), or
                a text file listing image paths.
            seed: seed of the generated scenes.
        """
        super().__init__()
        if dataset not in DATASETS:
            raise UserError(f"--data.dataset: unknown dataset {dataset!r}; expected one of {DATASETS}")
        if on_bad_image not in ("skip", "error"):
            raise UserError(f"--data.on_bad_image must be 'skip' or 'error', got {on_bad_image!r}")
        if dataset != "generated" and not (path and annotations):
            raise UserError(f"dataset {dataset!r} needs --data.path (the image folder) and --data.annotations "
                            "(the captions JSON)")
        if dataset == "coco" and not val_annotations:
            raise UserError("dataset 'coco' needs --data.val_annotations (captions_val2014.json) for val and test")
        if not 1 <= max_objects <= len(PLACES):
            raise UserError(f"--data.max_objects must be 1 to {len(PLACES)}, got {max_objects}")
        for option, value in (("image_size", image_size), ("max_caption_length", max_caption_length)):
            if value < 1:
                raise UserError(f"--data.{option} must be at least 1, got {value}")
        if dataset == "generated" and min(generated_sizes) < 1:
            raise UserError(f"--data.generated_sizes: the train, val and test scenes must each be at least 1, got "
                            f"{list(generated_sizes)}")
        self.vocabulary: Vocabulary | None = None

    def read_splits(self, names: tuple[str, ...]) -> dict[str, GeneratedScenes | list[Entry]]:
        hp = self.hparams
        if hp.dataset == "generated":
            return {name: GeneratedScenes(hp.generated_sizes[k], hp.seed * 3 + k, hp.image_size, hp.max_objects)
                    for k, name in enumerate(("train", "val", "test")) if name in names}
        images, annotations = Path(hp.path).expanduser(), Path(hp.annotations).expanduser()
        if not images.is_dir():
            raise UserError(f"--data.path {images}: no such folder (the images the annotations name)")
        if hp.dataset == "karpathy":
            splits = read_karpathy(annotations, images)
            sources = {name: f"the {name} split of {annotations}" for name in splits}
        else:
            val_annotations = Path(hp.val_annotations).expanduser()
            held_out = read_coco(val_annotations, images)
            half = len(held_out) // 2
            splits = {"train": read_coco(annotations, images) if "train" in names else [],
                      "val": held_out[:half], "test": held_out[half:]}
            sources = {"train": str(annotations), **{name: f"the {name} half of the {len(held_out)} images of "
                                                            f"{val_annotations}" for name in ("val", "test")}}
        return {name: check_images(splits[name], hp.on_bad_image, hp.verify_images,
                                   f"{sources[name]} (images in {images})") for name in names}

    def captions(self, source: GeneratedScenes | list[Entry]) -> Iterable[str]:
        """Every reference caption of a split."""
        if isinstance(source, GeneratedScenes):
            return (c for i in range(len(source)) for c in scene_captions(
                scene_things(random.Random(source.seed * 1_000_003 + i), source.max_objects)))
        return (c for entry in source for c in entry.captions)

    def artefacts(self) -> dict:
        return {"vocabulary": list(self.vocabulary.tokens)}

    def make_splits(self, names: tuple[str, ...]) -> dict[str, CaptionDataset]:
        hp = self.hparams
        saved = self.saved_artefacts()
        if self.vocabulary is None and saved:  # the ids must mean what they meant when the model was trained
            self.vocabulary = checkpoint_vocabulary(saved, self.checkpoint_path)
        if names == ("predict",):
            if self.vocabulary is None:
                raise UserError("predict needs a trained model: pass --ckpt_path (the vocabulary is in it)")
            if not hp.predict_path:
                raise UserError("predict needs --data.predict_path: a folder of images or a file listing them")
            location = Path(hp.predict_path).expanduser()
            entries = [Entry(p, []) for p in image_files(location)]
            entries = check_images(entries, hp.on_bad_image, hp.verify_images, f"--data.predict_path {location}")
            return {"predict": self._dataset(entries, train=False)}
        sources = self.read_splits(names if self.vocabulary else tuple(dict.fromkeys(("train", *names))))
        if self.vocabulary is None:
            self.vocabulary = self.build_vocabulary(sources["train"])
        elif saved:
            self.warn_on_unknown_words(sources)
        splits = {split: self._dataset(source, train=split == "train") for split, source in sources.items()}
        rank_zero_info(
            f"captioning data: {hp.dataset} ({', '.join(f'{s} {len(d)}' for s, d in splits.items())} images), "
            f"vocabulary {len(self.vocabulary)} words"
        )
        return splits

    def data_name(self) -> str:
        return "generated scenes" if self.hparams.dataset == "generated" else str(self.hparams.annotations)

    def build_vocabulary(self, train: GeneratedScenes | list[Entry]) -> Vocabulary:
        """The training captions' vocabulary; one of only the special tokens is an error naming the option."""
        hp = self.hparams
        vocabulary = Vocabulary.from_captions(self.captions(train), hp.min_word_count)
        if len(vocabulary) == len(SPECIALS):
            counts = Counter(w for caption in self.captions(train) for w in words(caption))
            commonest = "they hold no words" if not counts else "the commonest, {!r}, occurs {} times".format(
                *counts.most_common(1)[0])
            raise UserError(f"--data.min_word_count={hp.min_word_count}: no word of the training captions of "
                            f"{self.data_name()} occurs that often ({commonest}); the vocabulary would hold only "
                            f"{', '.join(SPECIALS)}")
        return vocabulary

    def warn_on_unknown_words(self, sources: dict) -> None:
        """Warns when a checkpoint's vocabulary knows under half of the words of the captions: it was trained on
        other data, and the rest are <unk> to it."""
        for split, source in sources.items():
            counts = Counter(w for caption in self.captions(source) for w in words(caption))
            known, total = sum(n for w, n in counts.items() if w in self.vocabulary.index), sum(counts.values())
            if known < total / 2:
                rank_zero_warn(f"--ckpt_path {self.checkpoint_path}: its vocabulary knows only {known} of the "
                               f"{total} words of the {split} captions of {self.data_name()}; the others are <unk> "
                               "to it (was it trained on other data?)")

    def _dataset(self, source, train: bool) -> CaptionDataset:
        hp = self.hparams
        return CaptionDataset(source, self.vocabulary, transform(hp.image_size, hp.augment and train), train,
                              hp.max_caption_length, hp.on_bad_image)
