"""No password reaches a log: a real `server.py serve` process, its output read after logins."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from conftest import free_port, open_context, server_answers, wait_until
from training_fixtures import ROOT

from db.users import add_user

PASSWORD = "Tr0ub4dor-and-3"
GUESS = "guessed-Hunter2"


def test_passwords_never_appear_in_the_server_output(tmp_path):
    context = open_context(tmp_path / "data", f"sqlite:///{tmp_path / 'data' / 'loupe.db'}")
    add_user(context.database, "carol", "admin", PASSWORD)
    context.database.dispose()
    port = free_port()
    env = {**os.environ, "LOUPE_DATA_DIR": str(tmp_path / "data"), "LOUPE_SCHEDULER": "0"}
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "serve", "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: server_answers(base) or server.poll() is not None, 120, what="the server")
        assert server.poll() is None
        assert httpx.get(f"{base}/api/queue", auth=("carol", GUESS)).status_code == 401
        assert httpx.get(f"{base}/api/queue", auth=("carol", PASSWORD)).status_code == 200
        assert httpx.post(f"{base}/review/login", data={"username": "carol", "password": GUESS}).status_code == 400
        assert httpx.post(f"{base}/review/login", data={"username": "carol", "password": PASSWORD}).status_code == 200
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=30)
    assert "Loupe serving on" in output  # the output was captured
    assert PASSWORD not in output and GUESS not in output
