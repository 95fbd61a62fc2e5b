"""Shared fixtures: a real database per test (SQLite, and PostgreSQL when configured),
image makers, a live server on a free loopback port, and Debian's Chromium via Playwright."""

from __future__ import annotations

import io
import os
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image
from sqlalchemy import create_engine, text

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from context import Context  # noqa: E402
from settings import Settings  # noqa: E402

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DATABASES = ["sqlite", "postgres"]


def _find_postgres() -> tuple[str | None, str]:
    """The PostgreSQL URL the suite runs on, or None with the reason it cannot.

    LOUPE_TEST_POSTGRES_URL chooses one (empty: none); otherwise the local server at 127.0.0.1:5432 is
    used when it answers, so a newcomer's `make test` covers both databases without configuration.
    """
    chosen = os.environ.get("LOUPE_TEST_POSTGRES_URL")
    if chosen == "":
        return None, "LOUPE_TEST_POSTGRES_URL is set empty (PostgreSQL turned off)"
    url = chosen or DEFAULT_POSTGRES_URL
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as error:  # noqa: BLE001 — any failure to connect means: no PostgreSQL here
        if chosen:
            raise RuntimeError(f"LOUPE_TEST_POSTGRES_URL={chosen} does not answer: {error}") from error
        return None, f"PostgreSQL does not answer at {url.split('@')[-1]} (set LOUPE_TEST_POSTGRES_URL to use another)"
    return url, f"PostgreSQL variants run on {url.split('@')[-1]}"


POSTGRES_URL, POSTGRES_REASON = _find_postgres()


def pytest_report_header(config):
    """Say at the top which databases the run covers."""
    return [f"databases: SQLite; {POSTGRES_REASON}"]


def pytest_terminal_summary(terminalreporter):
    """Say plainly at the end how many PostgreSQL variants were skipped, and why."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if "[postgres" in r.nodeid]
    if skipped:
        terminalreporter.write_line(f"{len(skipped)} PostgreSQL variants skipped: {POSTGRES_REASON}", yellow=True)


@pytest.fixture(params=DATABASES)
def database_url(request, tmp_path):
    """A fresh database: a SQLite file in tmp_path, or a new schema in the test PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'loupe.db'}"
        return
    if not POSTGRES_URL:
        pytest.skip(POSTGRES_REASON)
    schema = f"loupe_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    with admin.begin() as connection:
        connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def open_context(data_dir: Path, database_url: str, **overrides) -> Context:
    """A Context on data_dir and database_url with settings overridden as given."""
    overrides.setdefault("scheduler", False)  # tests that want the loop start it themselves
    return Context.open(Settings(data_dir=data_dir, database_url=database_url, **overrides))


@pytest.fixture
def context(tmp_path, database_url):
    """An opened Loupe instance on a real database and a temporary data directory."""
    opened = open_context(tmp_path / "data", database_url)
    yield opened
    opened.database.dispose()


def image_bytes(fmt: str = "PNG", size=(32, 24), color=(200, 30, 30), mode="RGB") -> bytes:
    """A small real image encoded in fmt."""
    buffer = io.BytesIO()
    Image.new(mode, size, color).save(buffer, fmt)
    return buffer.getvalue()


def distinct_images(count: int, fmt: str = "PNG", size=(32, 24)) -> list[bytes]:
    """count images with different contents (so different hashes)."""
    return [image_bytes(fmt, size, ((i * 37) % 256, (i * 91) % 256, (i * 13 + 7) % 256)) for i in range(count)]


def wait_until(condition, timeout: float, interval: float = 0.2, what: str = "the condition"):
    """Poll condition() until it returns something truthy (and return that); fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def server_answers(base_url: str) -> bool:
    """Whether a server at base_url answers /api/health yet."""
    try:
        return httpx.get(f"{base_url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LoopbackSite(BaseHTTPRequestHandler):
    """Base of the small HTTP sites tests fetch from: a body helper, and no request log."""

    def send_body(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@contextmanager
def serve_site(handler: type[LoopbackSite]):
    """Run handler on a free loopback port; yields the base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()


class LiveServer:
    """The real FastAPI + Gradio app served by uvicorn on a loopback port in a thread."""

    def __init__(self, context: Context):
        import uvicorn

        from server import build_app

        self.context = context
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            build_app(context), host="127.0.0.1", port=self.port, log_level="warning", timeout_graceful_shutdown=1
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the live server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


ADMIN = ("alice", "alice-password")
EXPERT = ("bob", "bob-password")


@pytest.fixture
def live_server(tmp_path, database_url):
    """A running app with an admin (alice) and an expert (bob), on a SQLite file and on PostgreSQL."""
    from db.users import add_user

    opened = open_context(tmp_path / "data", database_url)
    add_user(opened.database, ADMIN[0], "admin", ADMIN[1])
    add_user(opened.database, EXPERT[0], "expert", EXPERT[1])
    with LiveServer(opened) as server:
        yield server
    opened.database.dispose()


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser):
    """A fresh browser tab (own cookies) that closes after the test."""
    browser_context = browser.new_context()
    tab = browser_context.new_page()
    tab.set_default_timeout(30_000)
    yield tab
    browser_context.close()


@pytest.fixture(scope="session")
def trained_dir(tmp_path_factory):
    """A data directory with the shapes dataset and one model trained by `server.py train` (v1, promoted)."""
    from training_fixtures import TRAIN_ARGS, run_cli, write_shapes

    root = tmp_path_factory.mktemp("trained")
    data_dir = root / "data"
    imported = run_cli(data_dir, "import", str(write_shapes(root / "shapes")))
    assert imported.returncode == 0, imported.stderr
    trained = run_cli(data_dir, "train", *TRAIN_ARGS)
    assert trained.returncode == 0, trained.stdout + trained.stderr
    (root / "train-output.txt").write_text(trained.stdout + trained.stderr)
    return data_dir


@pytest.fixture
def trained_server(trained_dir, tmp_path):
    """A running app on a private copy of trained_dir; loopback URLs allowed, 60 kB upload cap."""
    from training_fixtures import copy_data_dir, open_data_dir

    context = open_data_dir(
        copy_data_dir(trained_dir, tmp_path / "data"), allow_private_urls=True, max_image_bytes=60_000
    )
    with LiveServer(context) as server:
        yield server
    context.database.dispose()
