"""Restoring and purging deleted images: both are decisions; a purge also removes the files."""

from __future__ import annotations

from context import Context
from db import decisions as decision_db
from db import images as image_db


def restore_image(context: Context, image_id: int, user_id: int) -> None:
    """Bring a deleted image back into the dataset."""
    decision_db.decide_on_current(context.database, image_id, user_id, "restore")


def purge_image(context: Context, image_id: int, user_id: int) -> None:
    """Remove a deleted image's files for good; its row and decisions stay as the record."""
    decision_db.decide_on_current(context.database, image_id, user_id, "purge")
    row = image_db.get_image(context.database, image_id)
    for relpath in (row.stored_path, row.thumb_path):
        context.store.absolute(relpath).unlink(missing_ok=True)
