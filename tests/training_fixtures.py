"""A tiny real dataset and one real training run, shared by the training and serving tests."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from context import Context
from db import model_versions as version_db
from models.registry import read_meta, write_version
from settings import Settings

ROOT = Path(__file__).resolve().parent.parent
TRAIN_ARGS = ["--size", "64", "--freeze-epochs", "1", "--epochs", "1", "--batch-size", "8"]


def shape_image(kind: str, seed: int) -> bytes:
    """A 64×64 PNG: a bright disc ('disc') or a bright bar ('bar') on noise, at a random place."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 60, size=(64, 64, 3), dtype=np.uint8)
    y, x = np.mgrid[:64, :64]
    cy, cx = rng.integers(20, 44, size=2)
    mask = (y - cy) ** 2 + (x - cx) ** 2 < 150 if kind == "disc" else (abs(x - cx) < 4) & (abs(y - cy) < 22)
    pixels[mask] = (230, 220, 40) if kind == "disc" else (40, 200, 230)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def write_shapes(folder: Path, per_class: int = 20) -> Path:
    """Class folders disc/ and bar/ with per_class images each."""
    for kind in ("disc", "bar"):
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            (folder / kind / f"{kind}{i}.png").write_bytes(shape_image(kind, seed=i + (1000 if kind == "bar" else 0)))
    return folder


def cli_env(data_dir: Path) -> dict:
    import os

    return {
        **os.environ,
        "LOUPE_DATA_DIR": str(data_dir),
        "DATABASE_URL": f"sqlite:///{data_dir / 'loupe.db'}",
        "LOUPE_SCHEDULER": "0",
    }


def run_cli(data_dir: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """server.py with its data in data_dir (SQLite), as a user would run it."""
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), *args],
        capture_output=True,
        text=True,
        env=cli_env(data_dir),
        timeout=timeout,
        cwd=ROOT,
    )


def open_data_dir(data_dir: Path, **overrides) -> Context:
    """A Context on a data directory that holds its own SQLite database (no scheduler unless asked)."""
    overrides.setdefault("scheduler", False)
    return Context.open(Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'loupe.db'}", **overrides))


def copy_data_dir(source: Path, destination: Path) -> Path:
    """A private copy of a trained data directory for a test that changes it."""
    shutil.copytree(source, destination)
    return destination


def register_copy(context: Context, source: Path, version: str, metrics: dict) -> Path:
    """Register a copy of a version folder's files under a new name, outside any training run (as a restore
    or a script would); returns the new folder."""

    def fill(folder: Path) -> dict:
        for item in source.iterdir():
            if item.name != "meta.json":
                shutil.copy(item, folder / item.name)
        return {k: v for k, v in read_meta(source).items() if k != "version"}

    path = write_version(context, version, fill)
    version_db.add_version(context.database, version, None, str(path.relative_to(context.settings.data_dir)), metrics)
    return path


def clone_version(context: Context, source_version: str, new_version: str) -> None:
    """Register a copy of a real trained version under a new name (a cheap second model for swap tests)."""
    source = context.settings.data_dir / version_db.get_version(context.database, source_version).path
    register_copy(context, source, new_version, {"clone": True})


def classes_of(data_dir: Path, version: str) -> list[str]:
    return json.loads((data_dir / "models" / version / "classes.json").read_text())
