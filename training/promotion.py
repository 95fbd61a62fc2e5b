"""Promotion and rollback as every path does them (the gate after a run, Admin, the CLI): the database's one
transaction, then the version.promoted event for the hooks (training/hooks.py), which never waits on them."""

from __future__ import annotations

from context import Context
from db import model_versions as version_db
from db.model_versions import VersionRow
from training.hooks import Promoter, version_promoted


def promote(context: Context, version: str, by: Promoter) -> VersionRow:
    """Serve version from now on (VersionError when there is none); tells the hooks who or what promoted it."""
    previous = version_db.promoted_version(context.database)
    row = version_db.promote(context.database, version)
    if previous is None or previous.version != row.version:  # promoting what serves already changes nothing
        version_promoted(context, row, previous, by)
    return row


def rollback(context: Context, by: Promoter) -> VersionRow:
    """Serve again the version promoted before the current one (VersionError when there is none); tells the hooks."""
    previous = version_db.promoted_version(context.database)
    row = version_db.rollback(context.database)
    version_promoted(context, row, previous, by, rollback=True)
    return row
