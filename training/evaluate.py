"""Validation metrics computed from one pass of predictions: confusion matrix, per-class accuracy."""

from __future__ import annotations

import numpy as np


def confusion_matrix(targets: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[actual, predicted]."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (targets, predicted), 1)
    return counts


def summarize(probabilities: np.ndarray, targets: np.ndarray, classes: list[str]) -> dict:
    """Error rate, the confusion matrix, per-class accuracy and the most-confused pairs."""
    predicted = probabilities.argmax(axis=1)
    counts = confusion_matrix(targets, predicted, len(classes))
    per_class = {
        name: (float(counts[i, i] / counts[i].sum()) if counts[i].sum() else None) for i, name in enumerate(classes)
    }
    pairs = [
        (classes[a], classes[p], int(counts[a, p]))
        for a in range(len(classes))
        for p in range(len(classes))
        if a != p and counts[a, p] > 0
    ]
    pairs.sort(key=lambda pair: -pair[2])
    return {
        "valid_count": int(len(targets)),
        "error_rate": float((predicted != targets).mean()) if len(targets) else None,
        "confusion_matrix": counts.tolist(),
        "per_class_accuracy": per_class,
        "most_confused": pairs[:10],
    }


def per_class_metrics(counts: list[list[int]], classes: list[str]) -> list[dict]:
    """Per class, from a confusion matrix (rows actual, columns predicted): precision, recall and support.

    precision is None for a class never predicted, recall None for a class without validation images.
    """
    matrix = np.asarray(counts, dtype=np.int64)
    found = []
    for i, name in enumerate(classes):
        predicted, actual, right = int(matrix[:, i].sum()), int(matrix[i].sum()), int(matrix[i, i])
        found.append(
            {
                "class": name,
                "precision": right / predicted if predicted else None,
                "recall": right / actual if actual else None,
                "support": actual,
            }
        )
    return found
