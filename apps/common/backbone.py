"""The base of apps with a torchvision image backbone: the backbone built by name, frozen or trained from a given
epoch at its own learning rate."""

from __future__ import annotations

from lightning.pytorch.utilities import rank_zero_info

from apps.common.module import AppModule
from rnn_core.encoders import ImageEncoder


class BackboneModule(AppModule):
    """AppModule with ``self.image_encoder``, a torchvision CNN as a grid of feature vectors."""

    def __init__(self, backbone: str = "resnet18", weights: str | None = "DEFAULT", backbone_stages: int | None = None,
                 finetune_from_epoch: int | None = None, backbone_lr: float = 1e-4, **kwargs) -> None:
        """
        Args:
            backbone: torchvision CNN: resnet18/34/50/101/152, mobilenet_v3_small/large, efficientnet_b0, ...
            weights: torchvision weights name (DEFAULT, IMAGENET1K_V1, ...; from the torch cache, else downloaded),
                or None for random initialisation.
            backbone_stages: keep the backbone's first N stages (a finer grid); None keeps all.
            finetune_from_epoch: train the backbone from this epoch on (0: from the start); None keeps it frozen.
            backbone_lr: Adam's learning rate of the backbone once it trains.
        """
        super().__init__(**kwargs)
        self.image_encoder = ImageEncoder(backbone, weights=weights, trainable=finetune_from_epoch == 0,
                                          stages=backbone_stages)

    def parameter_groups(self) -> list[dict]:
        """The backbone at ``backbone_lr`` (when it ever trains), everything else at ``lr``."""
        in_backbone = {id(p) for p in self.image_encoder.parameters()}
        groups = [{"params": [p for p in self.parameters() if id(p) not in in_backbone], "lr": self.hparams.lr}]
        if self.hparams.finetune_from_epoch is not None:  # frozen parameters have no gradients until then
            groups.append({"params": list(self.image_encoder.parameters()), "lr": self.hparams.backbone_lr})
        return groups

    def on_train_epoch_start(self) -> None:
        start = self.hparams.finetune_from_epoch
        if start is not None and self.current_epoch >= start and not self.image_encoder.trainable:
            self.image_encoder.set_trainable(True)  # also after a resume, which starts frozen
            rank_zero_info(f"epoch {self.current_epoch}: the backbone trains from now on "
                           f"(lr {self.hparams.backbone_lr})")
