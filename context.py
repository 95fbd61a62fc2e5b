"""The opened pieces of one Loupe instance, handed to every handler and job."""

from __future__ import annotations

from dataclasses import dataclass

from db import Database
from db.store import ImageStore
from settings import Settings


@dataclass
class Context:
    """Settings, the database and the image store, opened once per process."""

    settings: Settings
    database: Database
    store: ImageStore

    @classmethod
    def open(cls, settings: Settings, *, upgrade: bool = True) -> Context:
        """Create the data directory, open (and, unless told not to, upgrade) the database, attach the store."""
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        database = Database(settings.resolved_database_url, upgrade=upgrade)
        return cls(settings, database, ImageStore(settings.data_dir, settings.thumbnail_px))
