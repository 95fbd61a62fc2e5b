"""Backing up and restoring a Loupe instance: the database (SQLite's online backup) and the data files.

A backup folder holds `loupe.db` (SQLite only; PostgreSQL has pg_dump) and copies of `images/`,
`thumbs/`, `models/` and the demo files. Restore puts them back; the server must be stopped first.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from context import Context
from db.schema import utcnow
from db.sqlite_copy import BackupError, copy_sqlite, sqlite_path

DATA_FOLDERS = ("images", "thumbs", "models")
MANIFEST = "loupe-backup.json"


@dataclass(frozen=True)
class BackupSummary:
    """What a backup or restore copied."""

    destination: Path
    database: str  # "sqlite" or advice for PostgreSQL
    files: int


def _copy_files(source_dir: Path, destination_dir: Path) -> int:
    copied = 0
    for folder in DATA_FOLDERS:
        if (source_dir / folder).is_dir():
            shutil.copytree(source_dir / folder, destination_dir / folder, symlinks=False, dirs_exist_ok=True)
            copied += sum(1 for path in (destination_dir / folder).rglob("*") if path.is_file())
    for loose in source_dir.glob("*.csv"):
        shutil.copy2(loose, destination_dir / loose.name)
        copied += 1
    return copied


def backup(context: Context, destination: Path) -> BackupSummary:
    """Back the instance up into a new or empty folder; the server may keep running."""
    destination = Path(destination)
    if destination.exists() and any(destination.iterdir()):
        raise BackupError(f"{destination} is not empty; back up into a new folder")
    destination.mkdir(parents=True, exist_ok=True)
    if context.database.is_sqlite:
        copy_sqlite(sqlite_path(context.database), destination / "loupe.db")
        database = "sqlite"
    else:
        database = "postgresql: run pg_dump (see `server.py backup --help`)"
    files = _copy_files(context.settings.data_dir, destination)
    manifest = {"created_at": utcnow().isoformat(), "database": database, "files": files}
    (destination / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return BackupSummary(destination, database, files)


def restore(context: Context, source: Path) -> BackupSummary:
    """Put a backup back in place of this instance's database and files (stop the server first)."""
    source = Path(source)
    if not (source / MANIFEST).is_file():
        raise BackupError(f"{source} is not a Loupe backup (no {MANIFEST})")
    if context.database.is_sqlite:
        if not (source / "loupe.db").is_file():
            raise BackupError(f"{source} holds no loupe.db")
        target = sqlite_path(context.database)
        context.database.dispose()
        copy_sqlite(source / "loupe.db", target)
        database = "sqlite"
    else:
        database = "postgresql: run pg_restore (see `server.py restore --help`)"
    for folder in DATA_FOLDERS:  # files of images added after the backup would be orphans: drop them
        shutil.rmtree(context.settings.data_dir / folder, ignore_errors=True)
    files = _copy_files(source, context.settings.data_dir)
    return BackupSummary(Path(context.settings.data_dir), database, files)
