"""Helpers the benchmarks share: temporary Loupe instances, untrained-head versions, tables, percentiles."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from context import Context  # noqa: E402
from settings import Settings  # noqa: E402


def open_instance(data_dir: Path, **overrides) -> Context:
    """A Loupe instance with its SQLite database inside data_dir."""
    return Context.open(Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'loupe.db'}", **overrides))


def percentile_ms(seconds: list[float], q: float) -> float:
    """The q-th percentile of durations, in milliseconds."""
    return float(np.percentile(np.asarray(seconds) * 1000, q))


def write_head_only_version(context: Context, version: str, classes: list[str], size: int, seed: int = 0) -> None:
    """A version whose body is the pretrained Lite0 and whose head is freshly initialised.

    Same network and files as a trained version, so speed and swapping behave the same; used where a
    benchmark measures serving, not accuracy.
    """
    import torch
    from fastai.vision.learner import create_head
    from torch import nn

    from db import model_versions as version_db
    from models.backbones import HALF_STATS, build_body
    from models.onnx_export import export_onnx
    from models.registry import CLASSES_FILE, ONNX_FILE, write_version

    torch.manual_seed(seed)
    network = nn.Sequential(build_body(), create_head(1280, len(classes))).eval()

    def fill(folder: Path) -> dict:
        (folder / CLASSES_FILE).write_text(json.dumps(classes))
        assert export_onnx(network, size, folder / ONNX_FILE)
        return {
            "arch": "efficientnet_lite0",
            "size": size,
            "mean": HALF_STATS[0],
            "std": HALF_STATS[1],
            "classes": classes,
            "onnx": True,
        }

    path = write_version(context, version, fill)
    version_db.add_version(context.database, version, None, str(path.relative_to(context.settings.data_dir)), {})


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    """A plain aligned table on stdout."""
    cells = [headers] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(title)
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def sample_jpeg(width: int = 500, height: int = 375, seed: int = 0) -> bytes:
    """A photo-sized JPEG with smooth structure (decode cost like a real photo's)."""
    import io

    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8))
    image = noise.resize((width, height), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()
