"""Per-frame features of a frozen backbone kept on disk, so each frame runs through the CNN once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn


class FeatureCache:
    """Per-frame features of a frozen backbone on disk, one file per video and frame size (frame index -> vector),
    filled as frames are first seen: once every frame has been through the CNN, an epoch only runs the recurrence.
    The folder is named by a fingerprint of the backbone's weights, so another backbone never reads these."""

    def __init__(self, folder: str | Path, backbone: nn.Module) -> None:
        digest = hashlib.sha1()
        for tensor in backbone.state_dict().values():
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
        self.folder = Path(folder).expanduser() / f"features-{digest.hexdigest()[:16]}"
        self.memory: dict[str, dict[int, torch.Tensor]] = {}
        self.changed: set[str] = set()

    def _key(self, name: str, size: tuple[int, int]) -> str:
        return hashlib.sha1(f"{name}|{size[0]}x{size[1]}".encode()).hexdigest()

    def _frames_of(self, key: str) -> dict[int, torch.Tensor]:
        if key not in self.memory:
            path = self.folder / f"{key}.pt"
            self.memory[key] = torch.load(path, weights_only=True) if path.exists() else {}
        return self.memory[key]

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
        """Writes the files of videos that gained frames."""
        self.folder.mkdir(parents=True, exist_ok=True)
        for key in self.changed:
            torch.save(self.memory[key], self.folder / f"{key}.pt")
        self.changed.clear()
