"""Helpers the benchmarks share: temporary Loupe instances on SQLite and PostgreSQL, servers in their own
process, untrained-head versions, tables, percentiles."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

from context import Context  # noqa: E402
from settings import Settings  # noqa: E402


def open_instance(data_dir: Path, **overrides) -> Context:
    """A Loupe instance with its SQLite database inside data_dir."""
    return Context.open(Settings(data_dir=data_dir, database_url=f"sqlite:///{data_dir / 'loupe.db'}", **overrides))


def percentile_ms(seconds: list[float], q: float) -> float:
    """The q-th percentile of durations, in milliseconds."""
    return float(np.percentile(np.asarray(seconds) * 1000, q))


def write_head_only_version(context: Context, version: str, classes: list[str], size: int, seed: int = 0) -> None:
    """A version whose body is the pretrained Lite0 and whose head is freshly initialised.

    Same network and files as a trained version, so speed and swapping behave the same; used where a
    benchmark measures serving, not accuracy.
    """
    import torch
    from fastai.vision.learner import create_head
    from torch import nn

    from db import model_versions as version_db
    from models.backbones import HALF_STATS, build_body
    from models.onnx_export import export_onnx
    from models.registry import CLASSES_FILE, ONNX_FILE, write_version

    torch.manual_seed(seed)
    network = nn.Sequential(build_body(), create_head(1280, len(classes))).eval()

    def fill(folder: Path) -> dict:
        (folder / CLASSES_FILE).write_text(json.dumps(classes))
        assert export_onnx(network, size, folder / ONNX_FILE)
        return {
            "arch": "efficientnet_lite0",
            "size": size,
            "mean": HALF_STATS[0],
            "std": HALF_STATS[1],
            "classes": classes,
            "onnx": True,
        }

    path = write_version(context, version, fill)
    version_db.add_version(context.database, version, None, str(path.relative_to(context.settings.data_dir)), {})


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a wrong label outranks a right one (ties count half)."""
    from scipy.stats import rankdata

    ranks = rankdata(scores)
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def replay(scores: np.ndarray, wrong: np.ndarray) -> dict:
    """An expert reviewing the queue from the highest score down: what they find, and when."""
    order = np.argsort(-scores, kind="stable")
    found = np.cumsum(wrong[order])
    n = int(wrong.sum())
    return {
        "precision_at_n": float(found[n - 1] / n),
        "recall_at_10pct": float(found[int(0.10 * len(order)) - 1] / n),
        "recall_at_20pct": float(found[int(0.20 * len(order)) - 1] / n),
        "auroc": auroc(scores, wrong),
    }


def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    """A plain aligned table on stdout."""
    cells = [headers] + [[f"{c:.2f}" if isinstance(c, float) else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    print(title)
    for index, row in enumerate(cells):
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def sample_jpeg(width: int = 500, height: int = 375, seed: int = 0) -> bytes:
    """A photo-sized JPEG with smooth structure (decode cost like a real photo's)."""
    import io

    from PIL import Image, ImageFilter

    rng = np.random.default_rng(seed)
    noise = Image.fromarray(rng.integers(0, 255, (height // 8, width // 8, 3), dtype=np.uint8))
    image = noise.resize((width, height), Image.BICUBIC).filter(ImageFilter.GaussianBlur(2))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def add_database_arguments(parser) -> None:
    """--postgres-url and --no-postgres, for benchmarks that run on both databases."""
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_URL)
    parser.add_argument("--no-postgres", action="store_true")


def bench_databases(temp: Path, args) -> Iterator[tuple[str, Settings]]:
    """("sqlite", settings) on a file in temp, then ("postgres", settings) on a fresh schema that is
    dropped afterwards, unless --no-postgres or the server does not answer."""
    sqlite_dir = temp / "sqlite-data"
    yield "sqlite", Settings(data_dir=sqlite_dir, database_url=f"sqlite:///{sqlite_dir / 'loupe.db'}")
    if args.no_postgres:
        return
    from sqlalchemy import create_engine, text

    schema = f"loupe_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(args.postgres_url)
    try:
        with engine.begin() as connection:
            connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    except Exception as error:  # noqa: BLE001 — any failure to connect means "skip PostgreSQL"
        print(f"PostgreSQL at {args.postgres_url} skipped: {error.__class__.__name__}")
        engine.dispose()
        return
    separator = "&" if "?" in args.postgres_url else "?"
    try:
        url = f"{args.postgres_url}{separator}options=-csearch_path%3D{schema}"
        yield "postgres", Settings(data_dir=temp / "pg-data", database_url=url)
    finally:
        with engine.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(settings: Settings, port: int, arguments: tuple[str, ...] = (), **env: str) -> subprocess.Popen:
    """`server.py serve` on settings' data directory and database, in its own process, once it answers.

    arguments: more `serve` options (e.g. `--predict-only --workers 2`); env: extra LOUPE_* variables (the
    scheduler is off unless LOUPE_SCHEDULER says otherwise).
    """
    import httpx

    environment = {
        **os.environ,
        "LOUPE_DATA_DIR": str(settings.data_dir),
        "DATABASE_URL": settings.resolved_database_url,
        "LOUPE_SCHEDULER": "0",
        **env,
    }
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "server.py"), "serve", "--port", str(port), *arguments],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            raise RuntimeError("the server did not start")
        time.sleep(0.3)


def stop_server(server: subprocess.Popen) -> None:
    """SIGTERM, and SIGKILL if open client connections keep it from ending within 10 s."""
    server.terminate()
    try:
        server.wait(timeout=10)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()
