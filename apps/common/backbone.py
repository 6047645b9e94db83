"""A pretrained (or random) image backbone inside a model: Adam with the backbone's own learning rate, and the
backbone unfrozen from a given epoch. The model's hparams carry lr, backbone_lr, finetune_from_epoch,
weight_decay and plateau_patience."""

from __future__ import annotations

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from rnn_core.encoders import ImageEncoder


def backbone_optimizer(model: pl.LightningModule, backbone: ImageEncoder, monitor: str):
    """Adam over the model's parameters at ``lr``, the backbone's at ``backbone_lr`` (when it ever trains), halving
    both after ``plateau_patience`` epochs without a higher ``monitor`` (0: never)."""
    hp = model.hparams
    in_backbone = {id(p) for p in backbone.parameters()}
    groups = [{"params": [p for p in model.parameters() if id(p) not in in_backbone], "lr": hp.lr}]
    if hp.finetune_from_epoch is not None:  # frozen parameters have no gradients until then: Adam skips them
        groups.append({"params": list(backbone.parameters()), "lr": hp.backbone_lr})
    optimizer = torch.optim.Adam(groups, weight_decay=hp.weight_decay)
    if hp.plateau_patience < 1:
        return optimizer
    scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                           patience=hp.plateau_patience)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "monitor": monitor}}


def unfreeze_when_due(model: pl.LightningModule, backbone: ImageEncoder) -> None:
    """Call at every training epoch's start: from epoch ``finetune_from_epoch`` on the backbone trains (also after
    a resume, which starts frozen)."""
    start = model.hparams.finetune_from_epoch
    if start is not None and model.current_epoch >= start and not backbone.trainable:
        backbone.set_trainable(True)
        rank_zero_info(f"epoch {model.current_epoch}: the backbone trains from now on (lr {model.hparams.backbone_lr})")
