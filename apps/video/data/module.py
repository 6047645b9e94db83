"""The LightningDataModule of the video app: its options are the command line's ``--data.*``."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Sequence
from pathlib import Path

from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from apps.common.data import AppData
from apps.common.errors import UserError
from apps.video.data.dataset import VideoClips, collate
from apps.video.data.index import VideoInfo, index_file, index_videos
from apps.video.data.layouts import (
    HMDB51_SPLIT_DIR,
    SPLITS,
    UCF101_SPLIT_DIR,
    VIDEO_SUFFIXES,
    Video,
    class_folders,
    find_split_dir,
    hmdb51_split_files,
    predict_list,
    read_folder,
    read_hmdb51,
    read_ucf101,
    split_by_group,
    ucf101_classes,
)
from apps.video.data.messages import bad_video_error, class_mismatch, none_readable, skipped_warning
from apps.video.data.options import check_video_options
from apps.video.data.render import GENERATED_CLASSES, generate_clips, generated_folder


class VideoDataModule(AppData):
    """Video clips for classification; ``class_names`` and ``num_classes`` tell the model what the ids mean."""

    collate = staticmethod(collate)

    def __init__(
        self,
        dataset: str = "generated",
        path: str | None = None,
        split_path: str | None = None,
        fold: int = 1,
        num_frames: int = 16,
        frame_size: int = 64,
        test_clips: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        on_bad_video: str = "skip",
        generated_sizes: tuple[int, int, int] = (1600, 200, 400),
        cache_dir: str = "~/.cache/rnn-apps",
        batch_size: int = 16,
        num_workers: int = 0,
        decode_threads: int = 1,
        index_workers: int = 8,
        predict_path: str | None = None,
        seed: int = 0,
    ) -> None:
        """
        Args:
            dataset: "generated" (rendered motion clips, offline), "ucf101", "hmdb51" or "folder" (class-per-folder).
            path: the data folder: <path>/<class>/<video> (ucf101, hmdb51, folder).
            split_path: ucf101: folder of classInd.txt, trainlist0N.txt, testlist0N.txt (None: ucfTrainTestlist in
                or beside path); hmdb51: folder of <class>_test_splitN.txt (None: testTrainMulti_7030_splits in or
                beside path); folder: folder of train.txt, test.txt and optional val.txt listing <class>/<video>
                paths (None: a random split by video group).
            fold: the official split to use, 1 to 3 (ucf101, hmdb51).
            num_frames: frames T per clip (and per generated video).
            frame_size: every frame is resized to frame_size x frame_size (and generated at that size).
            test_clips: clips K per video in test and predict, at evenly spaced offsets; the model averages them.
            val_fraction: share of each class's training groups held out for validation (ucf101, hmdb51, folder
                without val.txt).
            test_fraction: share of each class's groups held out for testing (folder without split files).
            on_bad_video: "skip" videos that are missing, unreadable, have no frames or fail to decode (counted and
                named in a warning; a split left with none is an error) or "error" (stop at the first).
            generated_sizes: train, validation and test clips of the generated set.
            cache_dir: where the generated set and the video index are kept.
            batch_size: videos per batch (per process).
            num_workers: DataLoader worker processes (decoding runs in them).
            decode_threads: decoder threads per video: 1 (none; best when workers use every core), 0 (FFmpeg's
                choice) or more (can help large frames with few workers).
            index_workers: processes rendering the generated set and probing videos while the index is built
                (at most one per core).
            predict_path: a folder of videos (searched recursively) or a text file listing video paths, for predict.
            seed: seed of the generated clips and of random splits.
        """
        super().__init__()
        defaults = {n: p.default for n, p in inspect.signature(VideoDataModule.__init__).parameters.items()}
        check_video_options(dict(self.hparams), defaults)
        self._class_names: list[str] | None = None
        self._videos: dict[str, list[Video]] | None = None
        self._bad: dict[str, list[tuple[str, str]]] = {}

    # ------------------------------------------------------------------ classes

    @property
    def root(self) -> Path:
        """The folder the videos are read from (for "generated", the rendered set in the cache)."""
        hp = self.hparams
        if hp.dataset == "generated":
            return generated_folder(hp.cache_dir, hp.generated_sizes, hp.num_frames, hp.frame_size, hp.seed)
        return Path(hp.path).expanduser()

    @property
    def class_names(self) -> list[str]:
        """Class names by id: those of the restored checkpoint, else the data set's, read from the split files or the
        class folders (no video is opened, so this is cheap before setup too). Setup for fit, validate and test
        checks that a restored checkpoint's names are the data's."""
        if self._class_names is None:
            self._class_names = self._checkpoint_class_names() or self._read_class_names()
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def _checkpoint_class_names(self) -> list[str] | None:
        saved = self.saved_artefacts()
        if saved and "class_names" not in saved:
            raise UserError(f"the checkpoint {self.checkpoint_path} (--ckpt_path) holds no class names: it is not "
                            "a video model's")
        return list(saved["class_names"]) if saved else None

    def artefacts(self) -> dict:
        return {"class_names": list(self.class_names)}

    def _read_class_names(self) -> list[str]:
        hp = self.hparams
        if hp.dataset == "generated":
            return sorted(GENERATED_CLASSES)  # the folder reader sorts the class folders
        if hp.dataset == "ucf101":
            return ucf101_classes(self._split_dir())
        if hp.dataset == "hmdb51":
            return list(hmdb51_split_files(self._split_dir(), hp.fold))
        return class_folders(self.root)

    # ------------------------------------------------------------------ reading

    def _split_dir(self) -> Path | None:
        """The folder of the split files (for ucf101 and hmdb51, found in or beside the data), or None: a random
        split."""
        hp = self.hparams
        if hp.dataset == "ucf101":
            return find_split_dir(hp.split_path, self.root, UCF101_SPLIT_DIR, "classInd.txt")
        if hp.dataset == "hmdb51":
            return find_split_dir(hp.split_path, self.root, HMDB51_SPLIT_DIR, f"*_test_split{hp.fold}.txt")
        if hp.dataset == "generated":
            return self.root
        return Path(hp.split_path).expanduser() if hp.split_path else None

    def read_listing(self) -> tuple[list[str], dict[str, list[Video]]]:
        """Class names and the listed videos of train, val and test (no video opened yet)."""
        hp = self.hparams
        root = self.root
        if not root.is_dir():
            raise UserError(f"video folder {root} (--data.path) does not exist")
        if hp.dataset == "ucf101":
            classes, splits = read_ucf101(root, self._split_dir(), hp.fold)
        elif hp.dataset == "hmdb51":
            classes, splits = read_hmdb51(root, self._split_dir(), hp.fold)
        else:
            classes, splits = read_folder(root, self._split_dir())
        if "all" in splits:
            splits = split_by_group(splits["all"], {"val": hp.val_fraction, "test": hp.test_fraction}, hp.seed)
        elif "val" not in splits:
            carved = split_by_group(splits["train"], {"val": hp.val_fraction}, hp.seed)
            splits = {"train": carved["train"], "val": carved["val"], "test": splits["test"]}
        return classes, {name: splits[name] for name in SPLITS}

    def _why_empty(self, split: str) -> str:
        """Why a split lists no video."""
        hp = self.hparams
        if hp.dataset == "generated":
            return "--data.generated_sizes gives it no clips"
        split_dir = self._split_dir()
        if hp.dataset == "ucf101" and split != "val":
            return f"{split_dir / f'{split}list{hp.fold:02d}.txt'} lists no videos"
        if hp.dataset == "hmdb51" and split != "val":
            mark = 1 if split == "train" else 2
            return f"no line of the *_test_split{hp.fold}.txt files in {split_dir} marks a video {mark}"
        if split_dir is not None and (split != "val" or (split_dir / "val.txt").is_file()):
            return f"{split_dir / f'{split}.txt'} lists no videos"
        fraction = hp.val_fraction if split == "val" else hp.test_fraction
        if fraction == 0:
            return f"--data.{split}_fraction is 0" + (" (the best checkpoint is chosen on validation)"
                                                       if split == "val" else "")
        return (f"--data.{split}_fraction {fraction} holds out whole groups of related videos (a source video, "
                "actor or scene), and no class has a group to spare: each keeps one for training")

    def readable(self, listed: dict[str, Sequence[Video]], cache_root: Path,
                 what: str) -> tuple[dict[str, list[Video]], dict[str, list[tuple[str, str]]]]:
        """The videos of each split that the index can read, in order, and (name, why) of the others (missing,
        unreadable, no frames): they are left out with one warning that counts them and names the first few, or
        are an error naming the first (``on_bad_video``). One index pass covers every split."""
        paths = [v.path for split in listed.values() for v in split if v.path is not None]
        index = index_videos(paths, index_file(self.hparams.cache_dir, cache_root), self.hparams.index_workers)
        videos: dict[str, list[Video]] = {name: [] for name in listed}
        bad: dict[str, list[tuple[str, str]]] = {name: [] for name in listed}
        first = None
        for name, split in listed.items():
            for v in split:
                info = "file not found" if v.path is None else index[str(v.path)]
                if isinstance(info, VideoInfo) and info.frames <= 0:
                    info = "no frames"
                if isinstance(info, str):
                    bad[name].append((v.name, info))
                    first = first or (v.path or cache_root / v.name, info)
                else:
                    videos[name].append(dataclasses.replace(v, frames=info.frames))
        every = [b for split in bad.values() for b in split]
        if every and self.hparams.on_bad_video == "error":
            raise UserError(bad_video_error(*first, what, len(every)))
        if every:
            rank_zero_warn(skipped_warning(what, every, sum(len(split) for split in listed.values())))
        return videos, bad

    def _prepare(self) -> dict[str, list[Video]]:
        """Renders the generated set if it is missing, then reads the splits and the index (probing only videos
        that are new or changed)."""
        if self._videos is None:
            hp = self.hparams
            if hp.dataset == "generated":
                generate_clips(self.root, hp.generated_sizes, hp.num_frames, hp.frame_size, hp.seed,
                               hp.index_workers)
            classes, listed = self.read_listing()
            stored = self._checkpoint_class_names()
            if stored is not None and stored != classes:
                raise UserError(class_mismatch(self.checkpoint_path, stored, self.what, classes))
            self._class_names = classes
            self._videos, self._bad = self.readable(listed, self.root, self.what)
        return self._videos

    @property
    def what(self) -> str:
        """The data set, as messages name it."""
        hp = self.hparams
        fold = f", fold {hp.fold}" if hp.dataset in ("ucf101", "hmdb51") else ""
        return f"{hp.dataset} data in {self.root}{fold}"

    def prepare_data(self) -> None:
        """On one process per node: render the generated set and build the index, so that setup finds both; not for
        predict, which reads --data.predict_path alone (a checkpoint's classes need not be those of --data.*)."""
        if self.trainer is None or self.trainer.state.fn != "predict":
            self._prepare()

    def make_splits(self, names: tuple[str, ...]) -> dict[str, VideoClips]:
        """The named splits; each must hold a readable video."""
        hp = self.hparams
        if names == ("predict",):
            return {"predict": self._predict_split()}
        videos = self._prepare()  # one listing and index for every split: all three are set up at once
        for name in names:
            what = f"the {name} split of {self.what}"
            if not videos[name] and self._bad[name]:
                raise none_readable(what, self._bad[name])
            if not videos[name]:
                raise UserError(f"{what} is empty: {self._why_empty(name)}")
        splits = {name: VideoClips(videos[name], hp.num_frames, hp.frame_size,
                                   "segments" if name == "train" else "uniform",
                                   hp.test_clips if name == "test" else 1, hp.decode_threads,
                                   f"the {name} split of {self.what}", hp.on_bad_video) for name in SPLITS}
        rank_zero_info(
            f"video data: {self.what}, {self.num_classes} classes, "
            f"{', '.join(f'{s} {len(videos[s])}' for s in SPLITS)} videos; {hp.num_frames} frames of "
            f"{hp.frame_size}x{hp.frame_size}, {hp.test_clips} test clip(s)"
        )
        return splits

    def _predict_split(self) -> VideoClips:
        hp = self.hparams
        if not hp.predict_path:
            raise UserError("predict needs --data.predict_path: a folder of videos or a text file listing them")
        where = Path(hp.predict_path).expanduser()
        listed = predict_list(where)
        what = f"predict data in {where} (--data.predict_path)"
        if not listed:
            raise UserError(f"{what} is empty: " + (f"the folder holds no video files ({', '.join(VIDEO_SUFFIXES)})"
                                                    if where.is_dir() else "the file lists no videos"))
        videos, bad = self.readable({"predict": listed}, where if where.is_dir() else where.parent, what)
        if not videos["predict"]:
            raise none_readable(what, bad["predict"])
        rank_zero_info(f"video data: predicting {len(videos['predict'])} videos from {where}")
        return VideoClips(videos["predict"], hp.num_frames, hp.frame_size, "uniform", hp.test_clips,
                          hp.decode_threads, what, hp.on_bad_video)
