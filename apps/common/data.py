"""Data helpers every app shares: fetching a file from a URL once into a cache, verified by SHA-256, and the
loaders of a data module's splits."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

import lightning.pytorch as pl
from torch.utils.data import DataLoader, default_collate


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


class SplitLoaders(pl.LightningDataModule):
    """A data module whose ``splits`` dict (train, val, test, predict) holds datasets batched by ``collate``:
    plain DataLoaders (Lightning adds the distributed sampler), shuffled in training only, persistent workers."""

    collate = staticmethod(default_collate)

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        return DataLoader(self.splits[split], batch_size=self.hparams.batch_size, shuffle=shuffle,
                          collate_fn=self.collate, num_workers=self.hparams.num_workers,
                          persistent_workers=self.hparams.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False)
