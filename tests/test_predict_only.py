"""The predict-only server: the public surface alone, ONNX Runtime only, following promotions.

`server.py serve --predict-only` must never load torch, fastai, scikit-learn, Gradio or the review pages:
one test builds it in a fresh interpreter and lists what that interpreter imported after predicting and
swapping; the others run the real command, one process and several, and watch them follow a promotion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, image_bytes, wait_until
from training_fixtures import ROOT, cli_env, clone_version, copy_data_dir, open_data_dir

from db import model_versions as version_db

NEVER_IMPORTED = ("torch", "fastai", "sklearn", "cleanlab", "gradio", "pandas", "ui.review_page", "labeling.review")

# Runs in a fresh interpreter: build the predict-only app, predict, let the test promote v2, predict again,
# then print which of NEVER_IMPORTED it holds.
PROBE = """
import json, sys, time
from fastapi.testclient import TestClient
import server
app = server.predict_app_from_env()
with TestClient(app) as client:
    first = client.post("/api/predict", files={"file": ("a.png", open(sys.argv[1], "rb"), "image/png")}).json()
    page = client.get("/")
    print(json.dumps({"first": first["model_version"], "page": page.status_code}), flush=True)
    sys.stdin.readline()  # the test promotes v2
    deadline = time.monotonic() + 60
    while client.get("/api/health").json()["model_version"] != "v2" and time.monotonic() < deadline:
        time.sleep(0.2)
    second = client.post("/api/predict", files={"file": ("a.png", open(sys.argv[1], "rb"), "image/png")}).json()
    loaded = sorted(name for name in NAMES if name in sys.modules)
    print(json.dumps({"second": second["model_version"], "loaded": loaded}), flush=True)
"""


@pytest.fixture
def data_dir(trained_dir, tmp_path) -> Path:
    """A private copy of the trained data directory (v1 promoted) with v2 registered, not promoted."""
    copied = copy_data_dir(trained_dir, tmp_path / "data")
    context = open_data_dir(copied)
    clone_version(context, "v1", "v2")
    context.database.dispose()
    return copied


def _promote(data_dir: Path, version: str) -> None:
    context = open_data_dir(data_dir)
    version_db.promote(context.database, version)
    context.database.dispose()


def _predicted_version(url: str, image: bytes) -> str:
    answer = httpx.post(f"{url}/api/predict", files={"file": ("a.png", image, "image/png")}, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()["model_version"]


def test_the_predict_only_app_predicts_and_swaps_without_torch_gradio_or_the_review_app(data_dir, tmp_path):
    image = tmp_path / "a.png"
    image.write_bytes(image_bytes())
    probe = subprocess.Popen(
        [sys.executable, "-c", f"NAMES = {NEVER_IMPORTED!r}\n{PROBE}", str(image)],
        cwd=ROOT,
        env=cli_env(data_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = json.loads(probe.stdout.readline() or "{}")
        assert first == {"first": "v1", "page": 200}, probe.stderr.read() if not first else first
        _promote(data_dir, "v2")
        probe.stdin.write("promoted\n")
        probe.stdin.flush()
        second = json.loads(probe.stdout.readline() or "{}")
        assert second == {"second": "v2", "loaded": []}, second or probe.stderr.read()
    finally:
        probe.kill()
        probe.wait()


def _serve(data_dir: Path, port: int, workers: int, database_url: str | None = None) -> subprocess.Popen:
    env = cli_env(data_dir) | ({"DATABASE_URL": database_url} if database_url else {})
    # These tests send tens of predictions a second from one address to watch promotions spread; the per-address
    # limit (tested in test_limits.py) would answer some of them 429, depending on how fast each answer comes.
    env["LOUPE_PREDICT_RATE_PER_S"] = "0"
    command = [sys.executable, str(ROOT / "server.py"), "serve", "--predict-only", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--workers", str(workers)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, 15)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)
        process.wait()


def _mapped(pid: int) -> str:
    """The shared libraries a process has mapped (its loaded compiled modules)."""
    return Path(f"/proc/{pid}/maps").read_text()


def _children(pid: int) -> list[int]:
    """The worker processes uvicorn started (not multiprocessing's resource tracker)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return [child for child in found if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes()]


def test_the_command_serves_the_public_surface_only_and_follows_a_promotion(data_dir, page, tmp_path):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = _serve(data_dir, port, workers=1)
    try:
        wait_until(lambda: _answers(url), 60, what="the predict-only server to answer")
        image = image_bytes()
        assert _predicted_version(url, image) == "v1"

        # The page, in a real browser: a refusal in words, then an answer with the classes.
        page.goto(url)
        page.get_by_text("Model version v1 answers.").wait_for()
        page.click("#send-file")
        page.get_by_text("Choose an image first.").wait_for()
        upload = tmp_path / "upload.png"
        upload.write_bytes(image)
        page.set_input_files("#file", str(upload))
        page.click("#send-file")
        page.get_by_text("Model version v1 answered.").wait_for()
        assert {cell.inner_text() for cell in page.locator("#answer tr td:first-child").all()} == {"disc", "bar"}
        page.fill("#url", "http://127.0.0.1:1/inside.png")
        page.click("#send-url")
        page.locator("#refusal").filter(has_text="does not fetch from").wait_for()
        for closed in ("/review/", "/api/queue", "/gradio_api/info", "/api/label-studio/health", "/api/hooks"):
            assert httpx.get(url + closed).status_code == 404, closed
        _promote(data_dir, "v2")
        wait_until(lambda: _predicted_version(url, image) == "v2", 30, what="the swap to v2")
        maps = _mapped(server.pid)
        assert "libtorch" not in maps and "sklearn" not in maps and "onnxruntime" in maps
    finally:
        _stop(server)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/api/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_predict_processes_on_one_port_and_on_another_box_all_follow_a_promotion(data_dir):
    """Two processes sharing one port (--workers 2), and a third on its own port standing for another box
    behind a load balancer: each reads the promoted version from the database it shares."""
    ports = free_port(), free_port()
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    shared, other_box = _serve(data_dir, ports[0], workers=2), _serve(data_dir, ports[1], workers=1)
    try:
        wait_until(lambda: len(_children(shared.pid)) == 2 and _answers(urls[0]), 90, what="two worker processes")
        wait_until(lambda: _answers(urls[1]), 60, what="the other box")
        image = image_bytes()
        # A new connection each time, so the kernel spreads them over both processes on the shared port.
        assert {_predicted_version(url, image) for url in urls for _ in range(20)} == {"v1"}
        _promote(data_dir, "v2")
        wait_until(lambda: _predicted_version(urls[0], image) == "v2", 30, what="a process serving v2")
        time.sleep(3)  # every process polls the promoted version every 2 s
        assert {_predicted_version(url, image) for url in urls for _ in range(40)} == {"v2"}
        for pid in (*_children(shared.pid), other_box.pid):
            assert "libtorch" not in _mapped(pid)
    finally:
        _stop(shared)
        _stop(other_box)


FULL_APP_PROBE = """
import sys
from pathlib import Path
import server
from context import Context
from models.embedder import Embedder
from settings import Settings
context = Context.open(Settings(data_dir=Path(sys.argv[1]), database_url="sqlite:///" + sys.argv[1] + "/l.db"))
server.build_app(context)
Embedder(context.settings.data_dir, size=64, stages=True)  # the quick loop's first embedding exports the encoder
print("torch" in sys.modules, (Path(sys.argv[1]) / "embedder" / "lite0-stages-64.onnx").exists())
"""


def test_the_full_app_s_web_process_never_loads_torch(tmp_path):
    """Building the full app and exporting the embedding model (in a child process) leave torch out."""
    done = subprocess.run(
        [sys.executable, "-c", FULL_APP_PROBE, str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.stdout.split() == ["False", "True"], done.stdout + done.stderr


def test_a_version_without_onnx_is_skipped_by_a_predict_only_process(data_dir):
    """The full app would serve it from the fastai export (loading torch); a predict-only process keeps
    the version it serves and says why in its log."""
    from models.registry import ONNX_FILE, read_meta
    from models.serving import Serving

    v2 = data_dir / "models" / "v2"
    (v2 / ONNX_FILE).unlink()
    (v2 / "meta.json").write_text(json.dumps({**read_meta(v2), "onnx": False}))
    context = open_data_dir(data_dir)
    serving = Serving(context, onnx_only=True)
    try:
        assert serving.sync() == "v1"
        version_db.promote(context.database, "v2")
        assert serving.sync() == "v1"
    finally:
        context.database.dispose()
