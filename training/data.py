"""Training data straight from the database: active, labeled images with their stored split."""

from __future__ import annotations

import hashlib

import pandas as pd

from context import Context
from db import images as image_db
from errors import LoupeError


class NotEnoughData(LoupeError, ValueError):
    """The dataset cannot train a classifier yet; the message says what is missing."""


def snapshot(context: Context) -> pd.DataFrame:
    """One row per active labeled image: image_id, path, label, is_valid."""
    rows = [
        (row.id, str(context.store.absolute(row.stored_path)), row.label, row.split == "valid")
        for row in image_db.iter_active_labeled(context.database)
    ]
    frame = pd.DataFrame(rows, columns=["image_id", "path", "label", "is_valid"])
    labels = sorted(frame["label"].unique()) if len(frame) else []
    if len(labels) < 2:
        raise NotEnoughData("training needs labeled images of at least two classes")
    if not frame["is_valid"].any() or frame["is_valid"].all():
        raise NotEnoughData("training needs images in both the train and the validation split")
    return frame


def snapshot_digest(frame: pd.DataFrame) -> str:
    """A short hash of which images with which labels a run trained on."""
    text = "\n".join(f"{i}:{label}:{valid}" for i, label, valid in frame[["image_id", "label", "is_valid"]].values)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def class_counts(frame: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Images per class and split, {label: {"train": n, "valid": n}}, classes sorted."""
    counts = {label: {"train": 0, "valid": 0} for label in sorted(frame["label"].unique())}
    for label, is_valid in frame[["label", "is_valid"]].values:
        counts[label]["valid" if is_valid else "train"] += 1
    return counts


def build_dataloaders(frame: pd.DataFrame, size: int, batch_size: int, mean, std, device=None, augment: bool = True):
    """fastai DataLoaders: item Resize (centre crop on validation), aug_transforms, the backbone's stats."""
    from fastai.vision.all import (
        CategoryBlock,
        ColReader,
        ColSplitter,
        DataBlock,
        ImageBlock,
        Normalize,
        Resize,
        aug_transforms,
    )

    batch_tfms = [*aug_transforms(size=size, min_scale=0.75)] if augment else []
    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock),
        get_x=ColReader("path"),
        get_y=ColReader("label"),
        splitter=ColSplitter("is_valid"),
        item_tfms=Resize(size),
        batch_tfms=[*batch_tfms, Normalize.from_stats(mean, std)],
    )
    train_count = int((~frame["is_valid"]).sum())
    if train_count < 2:
        raise NotEnoughData(f"training needs at least two images in the train split (there are {train_count})")
    # fastai drops the last incomplete training batch: a batch larger than the train split would
    # leave no batch at all, so small datasets train with the whole split as one batch.
    batch_size = max(2, min(batch_size, train_count))
    return block.dataloaders(frame, bs=batch_size, num_workers=0, device=device)
