"""The video app's picture: the confusion matrix."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def confusion_figure(confusion: np.ndarray, class_names: list[str], title: str) -> Figure:
    """The confusion matrix, each row (true class) normalised to 1, counts written in when there is room."""
    n = len(class_names)
    side = min(4 + 0.35 * n, 30)
    figure = Figure(figsize=(side, side))
    ax = figure.subplots()
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    image = ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    font = max(4, 9 - n // 15)
    ax.set_xticks(range(n), class_names, rotation=90, fontsize=font)
    ax.set_yticks(range(n), class_names, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if n <= 20:
        for (r, c), count in np.ndenumerate(confusion):
            if count:
                ax.text(c, r, str(count), ha="center", va="center", fontsize=7,
                        color="white" if rates[r, c] > 0.5 else "black")
    ax.set_title(title)
    return figure
