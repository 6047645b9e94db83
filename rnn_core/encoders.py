"""Encoders that turn token sequences, images and frame sequences into a memory (vectors to attend over) and a
summary (a vector to start a decoder or feed a classifier)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rnn_core.cells import RecurrentCell
from rnn_core.conv import ConvRecurrent
from rnn_core.recurrent import Recurrent


def top_layer_summary(rnn: Recurrent, state) -> Tensor:
    """The top layer's final h of each direction, concatenated: (B, num_directions * hidden_size)."""
    h = state[0] if isinstance(state, tuple) else state
    directions = 2 if rnn.bidirectional else 1
    return torch.cat(tuple(h[-directions:]), dim=-1)


class SequenceEncoder(nn.Module):
    """Token embeddings, then Recurrent over the sequence (any cell, layers, both directions).

    Args:
        vocab_size: input vocabulary size.
        embedding_size: width of the token embeddings.
        hidden_size: width of the recurrent state per direction.
        cell: "rnn", "lstm", "gru", "peephole_lstm", "coupled_lstm", or a RecurrentCell.
        num_layers: stacked layers.
        bidirectional: read the sequence both ways; memory vectors are then 2 * hidden_size wide.
        dropout: on the embeddings and between layers.
        padding_idx: the padding token.
        backend: the Recurrent backend.
    """

    def __init__(
        self,
        vocab_size: int,
        embedding_size: int,
        hidden_size: int,
        cell: str | RecurrentCell = "lstm",
        num_layers: int = 1,
        bidirectional: bool = True,
        dropout: float = 0.0,
        padding_idx: int = 0,
        backend: str = "auto",
    ) -> None:
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_size, padding_idx=padding_idx)
        self.dropout = nn.Dropout(dropout)
        self.rnn = Recurrent(
            cell, embedding_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
            dropout=dropout, backend=backend,
        )
        self.output_size = hidden_size * (2 if bidirectional else 1)

    def forward(self, tokens: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """tokens (B, S) and lengths (B,) -> memory (B, S, output_size), mask (B, S) True on real tokens, and
        summary (B, output_size): the top layer's final h of each direction, concatenated."""
        out, state = self.rnn(self.dropout(self.embedding(tokens)), lengths)
        summary = top_layer_summary(self.rnn, state)
        mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths.to(tokens.device).unsqueeze(1)
        return out, mask, summary


class ImageEncoder(nn.Module):
    """A torchvision backbone as a grid of feature vectors: images (B, 3, H, W) -> (B, h * w, C).

    Args:
        backbone: a torchvision classification model name: resnet18/34/50/101/152, mobilenet_v3_small/large, ...
        weights: a torchvision weights name ("DEFAULT", "IMAGENET1K_V1", ...; loaded from the torch cache, downloaded
            when missing) or None for random initialisation.
        trainable: whether the backbone's weights train (False freezes them and keeps its batch norms in eval mode).
        stages: keep only the first ``stages`` stages (ResNet: layer1..layer4; others: blocks of ``.features``) for a
            finer, narrower grid (resnet18 with 2 stages: stride 8, 128 channels); None keeps all.
    """

    def __init__(self, backbone: str = "resnet18", weights: str | None = None, trainable: bool = False,
                 stages: int | None = None) -> None:
        super().__init__()
        import torchvision  # imported here: only the image and video encoders need it

        try:
            model = torchvision.models.get_model(backbone, weights=weights)
        except ValueError as err:
            known = ", ".join(n for n in torchvision.models.list_models(torchvision.models)
                              if n.startswith(("resnet", "mobilenet", "efficientnet")))
            raise ValueError(f"backbone {backbone!r} or weights {weights!r}: {err}; backbones: {known}") from None
        if isinstance(model, torchvision.models.ResNet):  # the stem (4 modules), then layer1..layer4
            stem, blocks = list(model.children())[:4], list(model.children())[4:-2]
        elif hasattr(model, "features"):  # MobileNet, EfficientNet, VGG, ...
            stem, blocks = [], list(model.features)
        else:
            raise ValueError(f"backbone {backbone!r} is neither a ResNet nor has .features; use a ResNet, MobileNet "
                             f"or EfficientNet")
        if stages is not None and not 1 <= stages <= len(blocks):
            raise ValueError(f"stages={stages}: backbone {backbone!r} has stages 1..{len(blocks)}")
        self.features = nn.Sequential(*stem, *blocks[:stages])
        with torch.no_grad():
            self.output_size = int(self.features(torch.zeros(1, 3, 64, 64)).shape[1])
        self.trainable = trainable
        self.set_trainable(trainable)

    def set_trainable(self, trainable: bool) -> None:
        """Unfreezes (or freezes) the backbone, e.g. to fine-tune from some epoch on."""
        self.trainable = trainable
        for p in self.features.parameters():
            p.requires_grad_(trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> ImageEncoder:
        super().train(mode)
        if not self.trainable:
            self.features.eval()  # frozen batch norms keep their running statistics
        return self

    def forward(self, images: Tensor) -> Tensor:
        grid = self.features(images)  # (B, C, h, w)
        return grid.flatten(2).transpose(1, 2)


RECURRENCES = ("flat", "conv")


class FrameSequenceEncoder(nn.Module):
    """Frames (B, T, 3, H, W) -> a per-frame CNN feature -> a recurrence over the frames (LRCN, Donahue et al. 2015).

    Each frame's CNN grid is averaged to ``spatial_grid`` x ``spatial_grid`` cells. ``recurrence`` "flat" flattens
    it into one vector per frame for ``Recurrent``: grid 1 is global average pooling (LRCN's); more keeps where things
    are in the frame. "conv" runs ``ConvRecurrent`` over the grid itself (ConvLSTM, Shi et al. 2015): a state per
    cell, kernels shared over the grid; its summary is the spatial mean and max of the final state (the max keeps a
    small object's response that the mean dilutes). It suits motion told only by comparing a shape across frames at
    the same place, such as the direction of a rotation.

    ``feature_norm`` batch-normalises the features before the recurrence (each feature for "flat", each channel for
    "conv"): pooled ReLU features are a large mean with small variations, and a recurrence fed them raw learns little
    from the variations.

    Frame features travel flattened, (B, T, feature_size) (so a cache can keep them); ``recur`` reads them.
    Returns the recurrent outputs (B, T, output_size) and the summary (B, output_size): the top layer's final state
    (flat: its h, both directions; conv: the mean and max of its h over the grid, which ``outputs`` hold per step).
    """

    def __init__(
        self,
        image_encoder: ImageEncoder,
        hidden_size: int,
        cell: str | RecurrentCell = "lstm",
        num_layers: int = 1,
        bidirectional: bool = False,
        dropout: float = 0.0,
        backend: str = "auto",
        spatial_grid: int = 1,
        feature_norm: bool = False,
        recurrence: str = "flat",
        kernel_size: int = 3,
    ) -> None:
        super().__init__()
        if recurrence not in RECURRENCES:
            raise ValueError(f"unknown recurrence {recurrence!r}; expected one of {RECURRENCES}")
        self.image_encoder = image_encoder
        self.recurrence, self.spatial_grid = recurrence, spatial_grid
        self.pool = nn.AdaptiveAvgPool2d(spatial_grid)
        channels = image_encoder.output_size
        self.feature_size = channels * spatial_grid**2
        if recurrence == "flat":
            self.feature_norm = nn.BatchNorm1d(self.feature_size) if feature_norm else nn.Identity()
            self.rnn = Recurrent(cell, self.feature_size, hidden_size, num_layers=num_layers,
                                 bidirectional=bidirectional, dropout=dropout, backend=backend)
            self.output_size = hidden_size * (2 if bidirectional else 1)
        else:
            if bidirectional or not isinstance(cell, str):
                raise ValueError("recurrence='conv' takes a cell name and runs one direction (bidirectional=False)")
            self.feature_norm = nn.BatchNorm1d(channels) if feature_norm else nn.Identity()
            self.rnn = ConvRecurrent(cell, channels, hidden_size, kernel_size=kernel_size, num_layers=num_layers,
                                     dropout=dropout)
            self.output_size = 2 * hidden_size

    def frame_features(self, frames: Tensor) -> Tensor:
        """(B, T, 3, H, W) -> (B, T, feature_size): every frame through the CNN in one batch, its grid pooled."""
        B, T = frames.shape[:2]
        grid = self.image_encoder.features(frames.flatten(0, 1))
        return self.pool(grid).flatten(1).view(B, T, -1)

    def forward(self, frames: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.recur(self.frame_features(frames), lengths)

    def normalise(self, features: Tensor) -> Tensor:
        """``feature_norm`` over frame features (B, T, feature_size): statistics over every frame of the batch (and,
        for "conv", every cell of the grid)."""
        if self.recurrence == "flat":
            return self.feature_norm(features.flatten(0, 1)).view_as(features)
        return self.feature_norm(features.flatten(0, 1).unflatten(1, (-1, self.spatial_grid**2))).view_as(features)

    def recur(self, features: Tensor, lengths: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """The recurrence alone, over frame features (B, T, feature_size) computed before (or cached)."""
        features = self.normalise(features)
        if self.recurrence == "flat":
            out, state = self.rnn(features, lengths)
            return out, top_layer_summary(self.rnn, state)
        g = self.spatial_grid
        out, state = self.rnn(features.unflatten(2, (-1, g, g)), lengths)
        return grid_summary(out), grid_summary(state[0][-1])


def grid_summary(h: Tensor) -> Tensor:
    """States (..., C, H, W) -> (..., 2C): their mean and their max over the grid."""
    return torch.cat((h.mean((-2, -1)), h.amax((-2, -1))), dim=-1)


class Bridge(nn.Module):
    """Maps a summary vector (an encoder's final states, a mean image feature) to a decoder's initial state:
    tanh(W s + b) for each state tensor of each layer."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, state_names: Sequence[str]) -> None:
        super().__init__()
        self.hidden_size, self.num_layers = hidden_size, num_layers
        self.proj = nn.ModuleList(nn.Linear(input_size, num_layers * hidden_size) for _ in state_names)

    def forward(self, summary: Tensor) -> Tensor | tuple[Tensor, ...]:
        B = summary.shape[0]
        states = tuple(
            torch.tanh(p(summary)).view(B, self.num_layers, self.hidden_size).transpose(0, 1).contiguous()
            for p in self.proj
        )
        return states if len(states) > 1 else states[0]
