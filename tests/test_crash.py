"""SIGKILL in the middle of an import or a promotion: the database stays consistent and the work resumes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

from conftest import distinct_images
from training_fixtures import ROOT, cli_env, clone_version, copy_data_dir, open_data_dir

from db import images as image_db
from db import model_versions as version_db
from models.predictor import LoadedModel


def start_cli(data_dir, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), *args],
        env=cli_env(data_dir),
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def count_rows(data_dir) -> int:
    try:
        with sqlite3.connect(data_dir / "loupe.db", timeout=30) as db:
            return db.execute("SELECT count(*) FROM images").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def test_import_killed_midway_leaves_a_consistent_database_and_resumes(tmp_path):
    source = tmp_path / "in" / "cat"
    source.mkdir(parents=True)
    for index, data in enumerate(distinct_images(250, size=(96, 72))):
        (source / f"{index}.png").write_bytes(data)
    data_dir = tmp_path / "data"
    process = start_cli(data_dir, "import", str(source.parent))
    deadline = time.monotonic() + 120
    while count_rows(data_dir) < 20:
        assert process.poll() is None and time.monotonic() < deadline, "the import ended before it could be killed"
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()

    with sqlite3.connect(data_dir / "loupe.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    context = open_data_dir(data_dir)
    stored = list(image_db.iter_active_labeled(context.database))
    assert 20 <= len(stored) < 250
    assert all(context.store.absolute(row.stored_path).exists() for row in stored)  # no row without its file

    resumed = start_cli(data_dir, "import", str(source.parent))
    assert resumed.wait(timeout=300) == 0
    rows = list(image_db.iter_active_labeled(context.database))
    assert len(rows) == 250 and len({row.content_hash for row in rows}) == 250
    context.database.dispose()


def test_promotion_killed_at_any_moment_leaves_one_loadable_promoted_version(trained_dir, tmp_path):
    data_dir = copy_data_dir(trained_dir, tmp_path / "data")
    context = open_data_dir(data_dir)
    clone_version(context, "v1", "v2")
    for attempt in range(8):
        target = "v2" if attempt % 2 == 0 else "v1"
        process = start_cli(data_dir, "promote", target)
        time.sleep(0.15 * attempt)  # from before the database is opened to after the commit
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        promoted = [v for v in version_db.list_versions(context.database) if v.status == "promoted"]
        assert len(promoted) == 1
        assert LoadedModel(data_dir / promoted[0].path).version == promoted[0].version
    context.database.dispose()
