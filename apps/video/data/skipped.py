"""Videos that fail while they are decoded (the index read them, then the decoder stops short): ``collate`` leaves
them out of their batch and lists them in it; this callback names them, in the index's wording."""

from __future__ import annotations

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn

from apps.video.data.messages import none_readable, skipped_warning


class SkippedVideos(Callback):
    """At the end of every epoch, on rank zero, one warning naming the videos of the split that failed to decode and
    were not named before in this command; a split none of whose videos decodes is a UserError (on every process,
    as every process gathers the same lists)."""

    def __init__(self) -> None:
        super().__init__()
        self.named: set[str] = set()
        #: per split, this epoch: the failed videos (index -> (name, why)) and the indices of those decoded
        self.failed: dict[str, dict[int, tuple[str, str]]] = {}
        self.decoded: dict[str, set[int]] = {}

    def _note(self, split: str, batch) -> None:
        if isinstance(batch, dict) and "skipped" in batch:
            self.failed.setdefault(split, {}).update({i: (name, why) for i, name, why in batch["skipped"]})
            self.decoded.setdefault(split, set()).update(batch["index"].tolist())

    def _report(self, trainer, split: str) -> None:
        failed, decoded = self.failed.pop(split, {}), self.decoded.pop(split, set())
        if trainer.world_size > 1:
            gathered: list = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, (failed, decoded))
            failed = {i: entry for part, _ in gathered for i, entry in part.items()}
            decoded = set().union(*(indices for _, indices in gathered))
        dataset = getattr(trainer.datamodule, "splits", {}).get(split)
        if not failed or dataset is None:
            return
        if not decoded and len(failed) == len(dataset):
            raise none_readable(dataset.what, [failed[i] for i in sorted(failed)])
        new = [failed[i] for i in sorted(failed) if failed[i][0] not in self.named]
        self.named.update(name for name, _ in failed.values())
        if new:
            rank_zero_warn(skipped_warning(dataset.what, new, len(dataset)))

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._note("train", batch)

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._note("val", batch)

    def on_test_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._note("test", batch)

    def on_predict_batch_start(self, trainer, pl_module, batch, batch_idx, dataloader_idx=0) -> None:
        self._note("predict", batch)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, "train")

    def on_validation_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, "val")

    def on_test_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, "test")

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._report(trainer, "predict")
