"""Which videos each split holds and their classes: UCF101's and HMDB51's official split files, a class-per-folder
set with or without split lists, a random split that keeps each group of related clips together, predict lists."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np

from apps.common.errors import UserError

VIDEO_SUFFIXES = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")
SPLITS = ("train", "val", "test")
UCF101_SPLIT_DIR, HMDB51_SPLIT_DIR = "ucfTrainTestlist", "testTrainMulti_7030_splits"


@dataclass
class Video:
    """A video a split lists: its file (None when it is not there), its name relative to the data folder (or as a
    predict list gives it), its class id (-1: unknown), the group of videos it must share a split with, and its frame
    count (once the index has read the file)."""

    path: Path | None
    name: str
    label: int
    group: str = ""
    frames: int = 0


def video_files(folder: Path) -> list[Path]:
    """Every video file under ``folder`` (by suffix, any case), sorted."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES and p.is_file())


def class_folders(root: Path) -> list[str]:
    """The class folders of a class-per-folder set: the sub-folders holding at least one video file, sorted."""
    if not root.is_dir():
        raise UserError(f"video folder {root} (--data.path) does not exist")
    names = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")
                   and any(p.suffix.lower() in VIDEO_SUFFIXES for p in d.rglob("*")))
    if not names:
        raise UserError(f"{root} (--data.path) holds no class folders with video files ({', '.join(VIDEO_SUFFIXES)}); "
                        "expected <root>/<class>/<video>")
    return names


def video_group(name: str, dataset: str = "folder") -> str:
    """The group a video shares a split with: ``<class>/gNN`` for UCF101-style names (``v_X_g08_c01``: clips of one
    group share actor and background), the stem less its trailing clip number for HMDB51 (``..._med_2``: clips of
    one source video), else the class and the file's stem."""
    path = PurePosixPath(name)
    folder = path.parts[0] if len(path.parts) > 1 else ""
    found = re.search(r"_g(\d+)_", path.stem)
    if found:
        return f"{folder}/g{int(found.group(1))}"
    stem = re.sub(r"_\d+$", "", path.stem) if dataset == "hmdb51" else path.stem
    return f"{folder}/{stem}"


class _Resolver:
    """Finds the files a split list names under a data folder, exactly or else ignoring case (UCF101's lists write
    ``HandstandPushups/v_HandStandPushups_...`` for some files)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lower: dict[str, Path] | None = None

    def __call__(self, name: str) -> Path | None:
        path = self.root / name
        if path.is_file():
            return path
        if self.lower is None:
            self.lower = {p.relative_to(self.root).as_posix().lower(): p for p in video_files(self.root)}
        return self.lower.get(name.lower())


def split_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of the non-empty, non-comment lines of a split file."""
    if not path.is_file():
        raise UserError(f"split file {path} does not exist")
    return [(number, line.split()) for number, line in enumerate(path.read_text().splitlines(), start=1)
            if line.strip() and not line.lstrip().startswith("#")]


def find_split_dir(split_path: str | None, root: Path, name: str, marker: str) -> Path:
    """The split folder: ``split_path`` itself or its sub-folder ``name``; without it ``<root>/<name>`` or
    ``<root>/../<name>``. ``marker`` is a file (glob) the folder must hold."""
    candidates = ([Path(split_path).expanduser(), Path(split_path).expanduser() / name] if split_path
                  else [root / name, root.parent / name])
    for candidate in candidates:
        if candidate.is_dir() and any(candidate.glob(marker)):
            return candidate
    raise UserError(f"no split folder with {marker} at {' or '.join(map(str, candidates))}; pass "
                            f"--data.split_path (the folder {name} of the official splits)")


def ucf101_classes(split_dir: Path) -> list[str]:
    """UCF101's class names by id, from classInd.txt (``<number> <class>`` lines numbered from 1)."""
    index_path = split_dir / "classInd.txt"
    classes = []
    for number, fields in split_lines(index_path):
        if len(fields) != 2 or not fields[0].isdigit() or int(fields[0]) != len(classes) + 1:
            raise UserError(f"{index_path}:{number}: expected '<number> <class>' numbered from 1 in order, got "
                             f"{' '.join(fields)!r}")
        classes.append(fields[1])
    return classes


def read_ucf101(root: Path, split_dir: Path, fold: int) -> tuple[list[str], dict[str, list[Video]]]:
    """Class names (classInd.txt order) and the train and test videos of UCF101 fold ``fold``, from
    ``trainlist0N.txt`` (``Class/v_Class_gXX_cYY.avi <class number>``, the number that of the class folder) and
    ``testlist0N.txt`` (the path alone)."""
    index_path = split_dir / "classInd.txt"
    classes = ucf101_classes(split_dir)
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    resolve = _Resolver(root)
    splits = {}
    for split, stem in (("train", "trainlist"), ("test", "testlist")):
        path = split_dir / f"{stem}{fold:02d}.txt"
        listed = []
        for number, fields in split_lines(path):
            name = fields[0]
            label = by_name.get(name.split("/")[0].lower()) if "/" in name else None
            if label is None:
                raise UserError(f"{path}:{number}: {name!r} is not <class>/<video> with a class of {index_path}")
            if len(fields) > 1 and fields[1] != str(label + 1):
                raise UserError(f"{path}:{number}: class number {fields[1]} of {name!r} does not match its folder "
                                f"{classes[label]!r}, number {label + 1} in {index_path}")
            listed.append(Video(resolve(name), name, label, video_group(name, "ucf101")))
        splits[split] = listed
    return classes, splits


def hmdb51_split_files(split_dir: Path, fold: int) -> dict[str, Path]:
    """HMDB51's class names by id, each with its split file of fold ``fold`` (``<class>_test_split<fold>.txt``), in
    the order of the files' names (climb_stairs before climb)."""
    suffix = f"_test_split{fold}.txt"
    files = sorted(split_dir.glob(f"*{suffix}"))
    if not files:
        raise UserError(f"{split_dir} has no <class>{suffix} files (--data.fold {fold}; HMDB51 folds are 1 to 3)")
    return {f.name[: -len(suffix)]: f for f in files}


def read_hmdb51(root: Path, split_dir: Path, fold: int) -> tuple[list[str], dict[str, list[Video]]]:
    """Class names (see hmdb51_split_files) and the train and test videos of HMDB51 fold ``fold``, from
    ``<class>_test_split<fold>.txt`` files of ``<video>.avi <1|2|0>`` lines (1 train, 2 test, 0 unused)."""
    files = hmdb51_split_files(split_dir, fold)
    resolve = _Resolver(root)
    splits: dict[str, list[Video]] = {"train": [], "test": []}
    for label, (cls, path) in enumerate(files.items()):
        for number, fields in split_lines(path):
            if len(fields) != 2 or fields[1] not in ("0", "1", "2"):
                raise UserError(f"{path}:{number}: expected '<video>.avi <1|2|0>' (1 train, 2 test, 0 unused), got "
                                 f"{' '.join(fields)!r}")
            if fields[1] == "0":
                continue
            name = f"{cls}/{fields[0]}"
            listed = Video(resolve(name), name, label, video_group(name, "hmdb51"))
            splits["train" if fields[1] == "1" else "test"].append(listed)
    return list(files), splits


def read_folder(root: Path, split_dir: Path | None) -> tuple[list[str], dict[str, list[Video]]]:
    """Class names (the sorted class folders) and the videos of a class-per-folder set: all of them under "all",
    or, with a split folder, those ``train.txt``, ``test.txt`` and (if there) ``val.txt`` list, one path relative
    to ``root`` per line, its first folder the class."""
    classes = class_folders(root)
    by_name = {c: i for i, c in enumerate(classes)}
    if split_dir is None:
        return classes, {"all": [Video(p, p.relative_to(root).as_posix(), by_name[p.relative_to(root).parts[0]],
                                       video_group(p.relative_to(root).as_posix()))
                                 for c in classes for p in video_files(root / c)]}
    resolve = _Resolver(root)
    splits = {}
    for split in SPLITS:
        path = split_dir / f"{split}.txt"
        if split == "val" and not path.is_file():
            continue
        listed = []
        for number, fields in split_lines(path):
            name = fields[0]
            label = by_name.get(name.split("/")[0]) if "/" in name else None
            if label is None:
                raise UserError(f"{path}:{number}: {name!r} is not <class>/<video> with a class folder of {root}")
            listed.append(Video(resolve(name), name, label, video_group(name)))
        splits[split] = listed
    return classes, splits


def split_by_group(videos: Sequence[Video], fractions: dict[str, float], seed: int) -> dict[str, list[Video]]:
    """Splits videos at random by group, class by class (so that every class is in every split it can be): each
    named split takes its fraction of a class's groups (at least one while the class has groups to spare), the rest
    is "train". No group is ever in two splits. Seeded: the same seed gives the same split."""
    by_class: dict[int, dict[str, list[Video]]] = {}
    for video in videos:
        by_class.setdefault(video.label, {}).setdefault(video.group, []).append(video)
    splits: dict[str, list[Video]] = {name: [] for name in ("train", *fractions)}
    for label, groups in sorted(by_class.items()):
        keys = sorted(groups)
        np.random.default_rng([seed, label]).shuffle(keys)
        start = 0
        for name, fraction in fractions.items():
            spare = len(keys) - start - 1  # train keeps one group
            count = min(spare, max(1, round(len(keys) * fraction))) if fraction > 0 else 0
            for key in keys[start : start + max(count, 0)]:
                splits[name] += groups[key]
            start += max(count, 0)
        for key in keys[start:]:
            splits["train"] += groups[key]
    for name in splits:
        splits[name].sort(key=lambda v: v.name)
    return splits


def predict_list(path: Path) -> list[Video]:
    """The videos to predict: every video file under a folder (named relative to it), or those a text file lists,
    one path per line (relative to the file's folder unless absolute; blank lines and # comments skipped)."""
    if path.is_dir():
        return [Video(p, p.relative_to(path).as_posix(), -1) for p in video_files(path)]
    if not path.is_file():
        raise UserError(f"--data.predict_path {path} is neither a folder of videos nor a file listing them")
    listed = []
    for _, fields in split_lines(path):
        name = " ".join(fields)
        file = Path(name).expanduser()
        file = file if file.is_absolute() else path.parent / file
        listed.append(Video(file if file.is_file() else None, name, -1))
    return listed
