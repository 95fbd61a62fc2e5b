"""The command line, run as a user runs it: in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import distinct_images

from cli import build_parser

ROOT = Path(__file__).resolve().parent.parent


def command_names() -> list[str]:
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    return list(subparsers.choices)


def run_cli(*args: str, env_extra: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "server.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
        cwd=ROOT,
    )


def test_every_command_is_documented_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    names = command_names()
    assert set(names) >= {"serve", "demo", "import", "import-urls", "user", "export", "stats"}
    for name in names:
        assert f"`loupe {name}" in readme, f"README does not document `loupe {name}`"
    assert "make run" in readme and "make test" in readme


@pytest.mark.parametrize("name", ["serve", "demo", "import", "import-urls", "user", "export", "stats"])
def test_every_command_has_help(name):
    result = run_cli(name, "--help")
    assert result.returncode == 0
    assert "usage:" in result.stdout and name in result.stdout


@pytest.fixture
def cli_env(tmp_path, database_url):
    return {"LOUPE_DATA_DIR": str(tmp_path / "data"), "DATABASE_URL": database_url}


def test_import_stats_export_round_trip(tmp_path, cli_env):
    for i, data in enumerate(distinct_images(3)):
        folder = tmp_path / "in" / ("cat" if i else "dog")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i}.png").write_bytes(data)
    (tmp_path / "in" / "cat" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    imported = run_cli("import", str(tmp_path / "in"), env_extra=cli_env)
    assert imported.returncode == 0, imported.stderr
    assert "added 3, duplicates 0, rejected 1" in imported.stdout
    assert "broken.jpg" in imported.stdout

    stats = run_cli("stats", "--json", env_extra=cli_env)
    counts = json.loads(stats.stdout)
    assert counts["active"] == 3 and counts["rejected"] == 1
    assert {k: sum(v.values()) for k, v in counts["by_label"].items()} == {"cat": 2, "dog": 1}

    exported = run_cli("export", str(tmp_path / "out"), "--format", "csv", env_extra=cli_env)
    assert exported.returncode == 0 and "exported 3 images" in exported.stdout
    again = run_cli("export", str(tmp_path / "out"), "--format", "csv", env_extra=cli_env)
    assert again.returncode == 2 and "not an empty folder" in again.stderr


def test_user_add_takes_the_password_from_the_environment(cli_env):
    added = run_cli("user", "add", "zoe", "--role", "expert", env_extra={**cli_env, "LOUPE_PASSWORD": "s3cret-enough"})
    assert added.returncode == 0 and "zoe added with role expert" in added.stdout
    duplicate = run_cli("user", "add", "zoe", "--role", "admin", env_extra={**cli_env, "LOUPE_PASSWORD": "whatever1"})
    assert duplicate.returncode == 2 and "exists already" in duplicate.stderr
    no_password = run_cli("user", "add", "yan", "--role", "admin", env_extra=cli_env, stdin="")
    assert no_password.returncode == 2 and "LOUPE_PASSWORD" in no_password.stderr


def test_demo_if_empty_skips_a_filled_database(tmp_path, cli_env):
    (tmp_path / "one.png").write_bytes(distinct_images(1)[0])
    run_cli("import", str(tmp_path / "one.png"), "--label", "x", env_extra=cli_env)
    skipped = run_cli("demo", "--if-empty", env_extra=cli_env)
    assert skipped.returncode == 0 and "skipped" in skipped.stdout


def test_allowed_roots_refuse_paths_that_lead_outside(tmp_path, cli_env):
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "cat").mkdir(parents=True)
    (outside / "cat").mkdir(parents=True)
    (allowed / "cat" / "a.png").write_bytes(distinct_images(1)[0])
    (outside / "cat" / "b.png").write_bytes(distinct_images(2)[1])
    (allowed / "link").symlink_to(outside, target_is_directory=True)
    env = {**cli_env, "LOUPE_ALLOWED_ROOTS": str(allowed)}
    for path in (outside, allowed / ".." / "outside", allowed / "link"):
        refused = run_cli("import", str(path), env_extra=env)
        assert refused.returncode == 2 and "outside the allowed roots" in refused.stderr, refused.stderr
    refused = run_cli("export", str(tmp_path / "elsewhere"), "--format", "csv", env_extra=env)
    assert refused.returncode == 2 and "outside the allowed roots" in refused.stderr
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "data").exists()  # nothing was written
    accepted = run_cli("import", str(allowed), env_extra=env)
    assert accepted.returncode == 0 and "added 1" in accepted.stdout
