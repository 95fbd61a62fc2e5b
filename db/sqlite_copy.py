"""Copying a SQLite database while it is in use, with SQLite's online backup API."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from db.engine import Database
from errors import LoupeError


class BackupError(LoupeError):
    """A backup or restore that cannot be done as asked, with a sentence saying why."""


def sqlite_path(database: Database) -> Path:
    """The file behind a SQLite database; BackupError for other databases."""
    if not database.is_sqlite:
        raise BackupError(
            "this database is not SQLite: back it up with `pg_dump -Fc DBNAME > loupe.dump` and restore it "
            "with `pg_restore --clean -d DBNAME loupe.dump`; `backup` still copies the data directory's files"
        )
    return Path(database.url.split("///", 1)[-1])


def copy_sqlite(source: Path, destination: Path, pages_per_step: int = 1024) -> None:
    """Copy source into destination page by page; writers may go on meanwhile (each step sees a consistent state)."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(source, timeout=30) as reader, sqlite3.connect(destination) as writer:
        reader.backup(writer, pages=pages_per_step)
    with sqlite3.connect(destination) as check:
        verdict = check.execute("PRAGMA integrity_check").fetchone()[0]
    if verdict != "ok":
        raise BackupError(f"the copy in {destination} failed SQLite's integrity check: {verdict}")
