"""Pictures of a training run: loss curves, the learning-rate finder, the confusion matrix (matplotlib)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure  # not pyplot: no global figure registry to leak from a server


def _figure(width: float, height: float):
    figure = Figure(figsize=(width, height))
    return figure, figure.subplots()


def loss_curves(history: list[dict]):
    """Train and validation loss per epoch, with the error rate on a second axis; None without epochs."""
    if not history:
        return None
    epochs = np.arange(1, len(history) + 1)
    figure, losses = _figure(6, 3.2)
    losses.plot(epochs, [h["train_loss"] for h in history], "o-", label="train loss")
    losses.plot(epochs, [h["valid_loss"] for h in history], "o-", label="valid loss")
    losses.set_xlabel("epoch")
    losses.set_ylabel("loss")
    losses.set_xticks(epochs)
    errors = losses.twinx()
    errors.plot(epochs, [h["error_rate"] for h in history], "s--", color="tab:red", label="error rate")
    errors.set_ylabel("error rate")
    errors.set_ylim(0, max(0.05, max(h["error_rate"] for h in history) * 1.2))
    frozen = sum(1 for h in history if h.get("phase") == "frozen")
    if 0 < frozen < len(history):
        losses.axvline(frozen + 0.5, color="grey", linestyle=":", linewidth=1)
        losses.text(frozen + 0.55, losses.get_ylim()[1], "unfrozen", va="top", fontsize=8, color="grey")
    lines = losses.get_legend_handles_labels()[0] + errors.get_legend_handles_labels()[0]
    losses.legend(lines, [line.get_label() for line in lines], loc="upper right", fontsize=8)
    figure.tight_layout()
    return figure


def lr_finder(lr_find: dict | None):
    """The learning-rate finder's loss against the learning rate (log scale) with the suggestion; None if unused."""
    if not lr_find or not lr_find.get("lrs"):
        return None
    figure, axis = _figure(6, 3.2)
    axis.plot(lr_find["lrs"], lr_find["losses"])
    axis.set_xscale("log")
    axis.set_xlabel("learning rate")
    axis.set_ylabel("loss")
    suggested = lr_find.get("suggested_lr")
    if suggested:
        axis.axvline(suggested, color="tab:red", linestyle="--", label=f"suggested {suggested:.1e}")
        axis.legend(fontsize=8)
    figure.tight_layout()
    return figure


def confusion_matrix(counts: list[list[int]] | None, classes: list[str]):
    """Actual (rows) against predicted (columns), with the counts written in; None without one."""
    if not counts:
        return None
    matrix = np.asarray(counts)
    side = max(3.5, 0.45 * len(classes) + 1.5)
    figure, axis = _figure(side, side)
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(classes)), classes, rotation=90)
    axis.set_yticks(range(len(classes)), classes)
    axis.set_xlabel("predicted")
    axis.set_ylabel("actual")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (row, column), value in np.ndenumerate(matrix):
        if value:
            color = "white" if value > threshold else "black"
            axis.text(column, row, str(value), ha="center", va="center", fontsize=8, color=color)
    figure.tight_layout()
    return figure
