"""The data base every app's data module subclasses, and fetching a file from a URL once into a cache."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader, Dataset, default_collate

from apps.common.artefacts import read_artefacts
from apps.common.errors import UserError, check_options

#: the splits each stage reads
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",), "predict": ("predict",)}


class AppData(pl.LightningDataModule):
    """Base of every app's data module: the stage-to-split flow, the artefacts a model is built from, the loaders.

    An app writes ``make_splits(names)`` (the datasets of the named splits), ``artefacts()`` (what a model trained
    on this data must carry: a tokenizer, class names, ...) and its ``__init__`` options (``batch_size`` and
    ``num_workers`` among them). ``saved_artefacts()`` are those of the checkpoint the command restores: Lightning
    restores a checkpoint only after setup, and the data must already speak its language (token ids, class ids).
    """

    collate = staticmethod(default_collate)

    def __init__(self) -> None:
        super().__init__()
        self.save_hyperparameters()
        hp = self.hparams  # the loader options of every app (num_workers where it loads with workers), before any work
        check_options({name: (hp[name], hp[name] >= least, expected) for name, least, expected in
                       (("batch_size", 1, "at least 1"), ("num_workers", 0, "0 or more")) if name in hp})
        self.splits: dict[str, Dataset] = {}
        #: the checkpoint the command restores (set by the launcher)
        self.checkpoint_path: str | None = None

    def make_splits(self, names: tuple[str, ...]) -> dict[str, Dataset]:
        raise NotImplementedError

    def artefacts(self) -> dict:
        return {}

    def saved_artefacts(self) -> dict | None:
        return read_artefacts(self.checkpoint_path) if self.checkpoint_path else None

    def setup(self, stage: str) -> None:
        names = tuple(name for name in STAGE_SPLITS[stage] if name not in self.splits)
        if names:
            self.splits.update(self.make_splits(names))
        for name in STAGE_SPLITS[stage]:  # an empty split would end a run with nothing written, or in collate
            if hasattr(self.splits[name], "__len__") and len(self.splits[name]) == 0:
                raise UserError(f"the {name} split is empty: no sample passed the data options (--data.*) that "
                                "choose and filter it")

    def loader(self, split: str, shuffle: bool = False) -> DataLoader:
        """A plain DataLoader of a split (Lightning adds the distributed sampler), persistent workers."""
        hp = self.hparams
        return DataLoader(self.splits[split], batch_size=hp.batch_size, shuffle=shuffle, collate_fn=self.collate,
                          num_workers=hp.num_workers, persistent_workers=hp.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self.loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self.loader("val")

    def test_dataloader(self) -> DataLoader:
        return self.loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self.loader("predict")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_url(location: str) -> bool:
    return urllib.parse.urlparse(location).scheme in ("http", "https", "ftp", "file")


def fetch(location: str, cache_dir: str | os.PathLike, sha256: str | None = None) -> Path:
    """A local path for ``location``: a local file as it is, or a URL downloaded once into ``cache_dir``.

    A download goes to a temporary file, is checked against ``sha256`` when given, and only then moves into the cache
    (atomically, so processes that fetch at once do not see half a file), with its hash in ``<name>.sha256`` beside
    it. A cached file is checked against that hash (and ``sha256``) on every later use; a mismatch is an error that
    names the file, never a silent re-download.
    """
    if not is_url(location):
        path = Path(location).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"data file {str(path)!r} does not exist")
        if sha256 and sha256_of(path) != sha256:
            raise ValueError(f"{path}: SHA-256 is {sha256_of(path)}, expected {sha256}")
        return path
    name = Path(urllib.parse.urlparse(location).path).name or "download"
    cache = Path(cache_dir).expanduser()
    path, recorded = cache / name, cache / f"{name}.sha256"
    if path.is_file() and recorded.is_file():
        actual, expected = sha256_of(path), recorded.read_text().strip()
        for want in filter(None, (expected, sha256)):
            if actual != want:
                raise ValueError(f"cached download {path} of {location} has SHA-256 {actual}, expected {want}; "
                                 "delete it to download again")
        return path
    cache.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=cache, prefix=f".{name}.")
    try:
        with os.fdopen(handle, "wb") as out, urllib.request.urlopen(location, timeout=60) as response:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
        actual = sha256_of(Path(temporary))
        if sha256 and actual != sha256:
            raise ValueError(f"download of {location} has SHA-256 {actual}, expected {sha256}")
        os.replace(temporary, path)
        recorded.write_text(actual + "\n")
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return path
