"""Per-frame features of a frozen backbone kept on disk, so each frame runs through the CNN once."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn


class FeatureCache:
    """Per-frame features of a frozen backbone on disk, one file per video and frame size (frame index -> vector),
    filled as frames are first seen: once every frame has been through the CNN, an epoch only runs the recurrence.
    The folder is named by a fingerprint of the backbone's weights and of ``layout`` (how the features are pooled,
    e.g. the spatial grid), so features of another backbone or size are never read. A file that cannot be read
    (cut off by a killed run, of another format) is computed again, with a warning, and rewritten."""

    def __init__(self, folder: str | Path, backbone: nn.Module, layout: str = "") -> None:
        digest = hashlib.sha1(layout.encode())
        for tensor in backbone.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.folder = Path(folder).expanduser() / f"features-{digest.hexdigest()[:16]}"
        self.memory: dict[str, dict[int, torch.Tensor]] = {}
        self.changed: set[str] = set()
        self.warned = False

    def _key(self, name: str, size: tuple[int, int]) -> str:
        return hashlib.sha1(f"{name}|{size[0]}x{size[1]}".encode()).hexdigest()

    def _frames_of(self, key: str) -> dict[int, torch.Tensor]:
        if key not in self.memory:
            path = self.folder / f"{key}.pt"
            self.memory[key] = self._read(path) if path.exists() else {}
        return self.memory[key]

    def _read(self, path: Path) -> dict[int, torch.Tensor]:
        try:
            frames = torch.load(path, weights_only=True)
            if isinstance(frames, dict) and all(isinstance(k, int) and torch.is_tensor(v) for k, v in frames.items()):
                return frames
            problem = "not a table of frame features"
        except Exception as err:  # torch.load raises many kinds (zip, pickle, EOF) for a damaged file
            first_line = str(err).partition("\n")[0]
            problem = f"{type(err).__name__}: {first_line}"
        if not self.warned:  # a damaged folder would otherwise warn once per file
            rank_zero_warn(f"feature cache file {path} is unreadable ({problem}); computing its features again, and "
                           f"those of any other unreadable file in {self.folder}")
            self.warned = True
        return {}

    def features(self, names: list[str], indices: torch.Tensor, frames: torch.Tensor, compute) -> torch.Tensor:
        """Features (N, T, F) of clips ``frames`` (N, T, 3, H, W) of the videos ``names`` at frame ``indices``
        (N, T): cached ones read, the others computed with ``compute(frames (M, 1, 3, H, W))`` and kept."""
        size = tuple(frames.shape[-2:])
        stored = [self._frames_of(self._key(n, size)) for n in names]
        missing = [(i, t) for i, frames_of in enumerate(stored) for t, j in enumerate(indices[i].tolist())
                   if j not in frames_of]
        if missing:
            rows, steps = zip(*missing, strict=True)
            fresh = compute(frames[list(rows), list(steps)].unsqueeze(1))[:, 0].detach().cpu()
            for (i, t), vector in zip(missing, fresh, strict=True):
                stored[i][int(indices[i, t])] = vector.clone()
                self.changed.add(self._key(names[i], size))
        return torch.stack([torch.stack([stored[i][j] for j in indices[i].tolist()]) for i in range(len(names))])

    def flush(self) -> None:
        """Writes the files of videos that gained frames, each atomically (a temporary file renamed), so a run killed
        meanwhile leaves no file half written."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for key in self.changed:
            handle, temporary = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.")
            with os.fdopen(handle, "wb") as f:
                torch.save(self.memory[key], f)
            os.replace(temporary, self.folder / f"{key}.pt")
        self.changed.clear()
