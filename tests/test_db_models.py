"""Training runs and model versions in the database (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from db import model_versions as version_db
from db import runs as run_db


def add_versions(database, *names):
    for name in names:
        version_db.add_version(database, name, None, f"models/{name}", {"error_rate": 0.1})


def test_one_promoted_version_at_a_time(context):
    database = context.database
    add_versions(database, "v1", "v2", "v3")
    assert version_db.promoted_version(database) is None
    version_db.promote(database, "v1")
    version_db.promote(database, "v2")
    statuses = {v.version: v.status for v in version_db.list_versions(database)}
    assert statuses == {"v1": "retired", "v2": "promoted", "v3": "candidate"}


def test_rollback_returns_to_the_previous_promotion(context):
    database = context.database
    add_versions(database, "v1", "v2", "v3")
    with pytest.raises(version_db.VersionError, match="no earlier"):
        version_db.rollback(database)
    for name in ("v1", "v3"):
        version_db.promote(database, name)
    assert version_db.rollback(database).version == "v1"
    assert version_db.promoted_version(database).version == "v1"
    assert version_db.get_version(database, "v2").status == "candidate"


def test_promoting_an_unknown_or_pruned_version_changes_nothing(context):
    database = context.database
    add_versions(database, "v1", "v2")
    version_db.promote(database, "v1")
    version_db.mark_pruned(database, "v2")
    for name in ("v2", "v9"):
        with pytest.raises(version_db.VersionError, match="no version"):
            version_db.promote(database, name)
    assert version_db.promoted_version(database).version == "v1"


def test_run_lifecycle_and_cancel(context):
    database = context.database
    run_id = run_db.create_run(database, "efficientnet_lite0", {"size": 64})
    assert run_db.get_run(database, run_id).status == "queued"
    run_db.start_run(database, run_id, "cpu", 40)
    assert run_db.update_progress(database, run_id, {"epoch": 1}) == "running"
    assert run_db.request_cancel(database, run_id) is True
    assert run_db.update_progress(database, run_id, {"epoch": 1, "batch": 2}) == "cancelling"
    run_db.finish_run(database, run_id, "cancelled")
    assert run_db.request_cancel(database, run_id) is False
    run = run_db.get_run(database, run_id)
    assert (run.status, run.device, run.image_count, run.progress) == ("cancelled", "cpu", 40, {"epoch": 1, "batch": 2})
    assert run.finished_at is not None
