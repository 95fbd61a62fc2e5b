"""The built-in demo: scikit-learn's handwritten digits with 10% of labels flipped on purpose."""

from __future__ import annotations

import csv
import io
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from context import Context
from db.store import content_hash
from labeling.imports.ingest import ImportSummary, ProgressFn, import_paths

DEMO_SIZE_PX = 64
FLIP_FRACTION = 0.10
FLIP_SEED = 1234
FLIPPED_FILE = "demo_flipped.csv"


def digit_png(pixels: np.ndarray) -> bytes:
    """An 8×8 digit (values 0–16) as a white-on-black PNG scaled up to DEMO_SIZE_PX."""
    gray = (pixels.reshape(8, 8) * (255 / 16)).clip(0, 255).astype(np.uint8)
    image = Image.fromarray(gray, mode="L").resize((DEMO_SIZE_PX, DEMO_SIZE_PX), Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def flipped_labels(
    true_labels: np.ndarray, fraction: float = FLIP_FRACTION, seed: int = FLIP_SEED, classes: int = 10
) -> np.ndarray:
    """A copy of the labels (0 .. classes - 1) where `fraction` of them are changed to another class at random."""
    rng = np.random.default_rng(seed)
    given = true_labels.copy()
    chosen = rng.choice(len(given), size=round(len(given) * fraction), replace=False)
    for index in chosen:
        given[index] = (true_labels[index] + rng.integers(1, classes)) % classes
    return given


def import_demo(context: Context, progress: ProgressFn | None = None) -> ImportSummary:
    """Import the digits and write demo_flipped.csv beside the data for the benchmarks."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    true_labels = digits.target
    given_labels = flipped_labels(true_labels)
    flipped_rows = []
    with tempfile.TemporaryDirectory(prefix="loupe-demo-") as temp:
        root = Path(temp)
        for index, (pixels, given) in enumerate(zip(digits.data, given_labels, strict=True)):
            data = digit_png(pixels)
            folder = root / str(given)
            folder.mkdir(exist_ok=True)
            name = f"digit_{index:04d}.png"
            (folder / name).write_bytes(data)
            if given != true_labels[index]:
                flipped_rows.append([index, name, content_hash(data), int(true_labels[index]), int(given)])
        summary = import_paths(context, [root], kind="demo", progress=progress)
    with open(context.settings.data_dir / FLIPPED_FILE, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["index", "file", "content_hash", "true_label", "given_label"])
        writer.writerows(flipped_rows)
    return summary


def read_flipped(data_dir: Path) -> dict[str, tuple[str, str]]:
    """content hash → (true label, given label) for the demo's flipped images."""
    with open(Path(data_dir) / FLIPPED_FILE, newline="") as handle:
        return {row["content_hash"]: (row["true_label"], row["given_label"]) for row in csv.DictReader(handle)}
