"""The model registry: one folder per version, written atomically, the last few kept."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from context import Context
from db import model_versions as version_db

REGISTRY_DIR = "models"
KEEP_VERSIONS = 5
CLASSES_FILE = "classes.json"
META_FILE = "meta.json"
ONNX_FILE = "model.onnx"
FASTAI_FILE = "export.pkl"


def registry_root(context: Context) -> Path:
    """The folder that holds every version folder."""
    return context.settings.data_dir / REGISTRY_DIR


def version_dir(context: Context, version: str) -> Path:
    """The folder of one version."""
    return registry_root(context) / version


def write_version(context: Context, version: str, fill: Callable[[Path], dict]) -> Path:
    """Let fill(temp_dir) write the files and return the metadata; then rename the folder into place.

    A reader never sees a half-written version: until the rename, the files sit in a hidden temp folder.
    """
    root = registry_root(context)
    root.mkdir(parents=True, exist_ok=True)
    final = root / version
    if final.exists():
        raise FileExistsError(f"model version {version} exists already")
    temp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=root))
    try:
        meta = fill(temp)
        meta["version"] = version
        (temp / META_FILE).write_text(json.dumps(meta, indent=2))
        for path in temp.iterdir():  # the files reach the disk before the folder appears
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        os.rename(temp, final)
    except BaseException:
        shutil.rmtree(temp, ignore_errors=True)
        raise
    return final


def read_meta(path: Path) -> dict:
    """A version folder's metadata."""
    return json.loads((Path(path) / META_FILE).read_text())


def model_inputs(meta: dict) -> list[dict]:
    """A version's graph inputs, [{"name", "size", "mean", "std"}]: a head's one per encoder (meta "inputs"),
    else a fine-tuned network's one image, "x"."""
    return meta.get("inputs") or [
        {"name": "x", "size": meta.get("size"), "mean": meta.get("mean"), "std": meta.get("std")}
    ]


def prune_versions(context: Context, keep: int = KEEP_VERSIONS) -> list[str]:
    """Remove the folders of all but the newest `keep` versions, never the promoted one."""
    removed = []
    versions = [v for v in version_db.list_versions(context.database) if v.status != "pruned"]
    for row in versions[keep:]:
        if row.status == "promoted":
            continue
        shutil.rmtree(context.settings.data_dir / row.path, ignore_errors=True)
        version_db.mark_pruned(context.database, row.version)
        removed.append(row.version)
    for leftover in registry_root(context).glob(".tmp-*"):  # from a process killed mid-write
        shutil.rmtree(leftover, ignore_errors=True)
    return removed
