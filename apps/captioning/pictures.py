"""The captioning app's pictures: captions wrapped under an image, and each word's attention laid on the image."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def wrap(text: str, width: int = 34) -> str:
    """``text`` broken into lines of at most ``width`` characters (at spaces)."""
    lines, line = [], ""
    for word in text.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return "\n".join([*lines, line])


def attention_figure(pictures: np.ndarray, captions: list[list[str]], weights: np.ndarray) -> Figure:
    """One row per image: the image, then each generated word with its attention over the grid laid on the image."""
    side = round(weights.shape[-1] ** 0.5)
    columns = 1 + max(len(c) for c in captions)
    figure = Figure(figsize=(1.6 * columns, 1.8 * len(captions)))
    axes = figure.subplots(len(captions), columns, squeeze=False)
    for row, (picture, caption) in enumerate(zip(pictures, captions, strict=True)):
        H, W = picture.shape[:2]
        axes[row, 0].imshow(picture)
        for col in range(columns):
            ax = axes[row, col]
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0 or col > len(caption):
                ax.axis("off") if col else None
                continue
            ax.imshow(picture)
            grid = weights[row, col - 1].reshape(side, -1)
            ax.imshow(grid, cmap="magma", alpha=0.6, extent=(0, W, H, 0), interpolation="bilinear")
            ax.set_title(caption[col - 1], fontsize=8)
    return figure
