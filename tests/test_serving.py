"""The predictor behind the public page and the JSON API, on a real trained model."""

from __future__ import annotations

import io
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import LiveServer, LoopbackSite, serve_site
from gradio_client import Client, handle_file
from PIL import Image
from training_fixtures import clone_version, copy_data_dir, open_data_dir, shape_image

from db import model_versions as version_db
from models.imagecheck import ImageRejected
from models.predictor import NoModelYet, Predictor


def post_image(server, data: bytes, name: str = "x.png") -> httpx.Response:
    return httpx.post(f"{server.url}/api/predict", files={"file": (name, data, "image/png")}, timeout=30)


def test_rest_predict_answers_with_the_promoted_version(trained_server):
    response = post_image(trained_server, shape_image("disc", seed=77))
    assert response.status_code == 200
    body = response.json()
    assert body["model_version"] == "v1"
    labels = [label for label, _ in body["predictions"]]
    probabilities = [p for _, p in body["predictions"]]
    assert sorted(labels) == ["bar", "disc"]
    assert probabilities == sorted(probabilities, reverse=True) and abs(sum(probabilities) - 1) < 1e-4
    assert "/api/predict" in httpx.get(f"{trained_server.url}/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    ("payload", "status", "words"),
    [
        (b"<html>hello</html>", 400, "not a recognised image"),
        (b"", 400, "empty"),
        (shape_image("bar", seed=1)[:200], 400, "does not decode"),
        (np.random.default_rng(0).integers(0, 255, 70_000, dtype=np.uint8).tobytes(), 413, "limit"),
    ],
)
def test_rest_predict_refuses_bad_input_clearly(trained_server, payload, status, words):
    response = post_image(trained_server, payload)
    assert response.status_code == status
    assert words in response.json()["detail"]


def test_rest_predict_without_a_file_is_a_4xx(trained_server):
    assert httpx.post(f"{trained_server.url}/api/predict", timeout=10).status_code == 422


class OneImage(LoopbackSite):
    def do_GET(self):  # noqa: N802
        if self.path == "/disc.png":
            body, status = shape_image("disc", seed=3), 200
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/disc.png")
            self.end_headers()
            return
        else:
            body, status = b"nope", 404
        self.send_body(status, "image/png" if status == 200 else "text/plain", body)


@pytest.fixture
def image_site():
    with serve_site(OneImage) as url:
        yield url


def test_classify_url_fetches_follows_redirects_and_refuses_bad_urls(trained_server, image_site):
    def classify(url):
        return httpx.get(f"{trained_server.url}/api/classify-url", params={"url": url}, timeout=30)

    for url in (f"{image_site}/disc.png", f"{image_site}/redirect"):
        ok = classify(url)
        assert ok.status_code == 200 and ok.json()["model_version"] == "v1"
    assert classify(f"{image_site}/missing.png").status_code == 400
    refused = classify("ftp://example.com/cat.jpg")
    assert refused.status_code == 400 and "http and https" in refused.json()["detail"]
    assert classify("http://no-such-host.invalid/x.png").status_code == 400


def test_classify_url_refuses_private_addresses_by_default(trained_dir, tmp_path, image_site):
    from labeling.imports.safe_fetch import fetch_image_url

    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))  # a model, and the default settings
    with LiveServer(context) as server:
        response = httpx.get(f"{server.url}/api/classify-url", params={"url": f"{image_site}/disc.png"}, timeout=30)
    assert response.status_code == 400 and "does not fetch from" in response.json()["detail"]
    context.database.dispose()
    with pytest.raises(ImageRejected, match="does not fetch from"):
        fetch_image_url("http://169.254.169.254/latest/meta-data", timeout_s=2, max_bytes=10**6, allow_private=False)


class DrippingImage(LoopbackSite):
    """Sends a byte every 0.3 s: never silent long enough for a read timeout, never done in time."""

    def do_GET(self):  # noqa: N802
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", "100")
        self.end_headers()
        try:
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.3)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up, as it should


def test_classify_url_gives_up_on_a_dripping_server_at_the_time_cap():
    from labeling.imports.safe_fetch import fetch_image_url

    with serve_site(DrippingImage) as url:
        with pytest.raises(ImageRejected, match="took longer than 1 s"):  # the drip alone takes 30 s
            fetch_image_url(f"{url}/slow.png", timeout_s=1, max_bytes=10**6, allow_private=True)


def test_no_model_yet_is_said_plainly(live_server):
    response = post_image(live_server, shape_image("disc", seed=1))
    assert response.status_code == 409 and "No model" in response.json()["detail"]
    client = Client(f"{live_server.url}/", verbose=False)
    with pytest.raises(Exception, match="No model has been trained yet"):  # noqa: B017 (gradio_client wraps it)
        client.predict(handle_file(_write_temp_png()), api_name="/predict")


def _write_temp_png() -> str:
    import tempfile

    handle = tempfile.NamedTemporaryFile(suffix=".png", delete=False)
    handle.write(shape_image("bar", seed=2))
    handle.close()
    return handle.name


def test_gradio_predict_answers_with_labels_and_version(trained_server):
    client = Client(f"{trained_server.url}/", verbose=False)
    labels, version_text = client.predict(handle_file(_write_temp_png()), api_name="/predict")
    assert {c["label"] for c in labels["confidences"]} == {"bar", "disc"}
    assert "v1" in version_text


def test_promotion_reaches_a_running_server(trained_server):
    context = trained_server.context
    clone_version(context, "v1", "v2")
    version_db.promote(context.database, "v2")
    deadline = time.monotonic() + 15
    while httpx.get(f"{trained_server.url}/api/health").json()["model_version"] != "v2":
        assert time.monotonic() < deadline, "the server did not switch to v2"
        time.sleep(0.2)
    assert post_image(trained_server, shape_image("disc", seed=8)).json()["model_version"] == "v2"


def test_swaps_under_load_drop_nothing_and_versions_only_move_forward(trained_dir, tmp_path):
    context = open_data_dir(copy_data_dir(trained_dir, tmp_path / "data"))
    for name in ("v2", "v3", "v4"):
        clone_version(context, "v1", name)
    predictor = Predictor(threads=1)
    with pytest.raises(NoModelYet):
        predictor.predict(Image.new("RGB", (10, 10)))
    predictor.swap(context.settings.data_dir / "models" / "v1")
    seen_by_thread: list[list[str]] = [[] for _ in range(3)]
    errors: list[Exception] = []
    stop = threading.Event()

    def hammer(seen: list[str]):
        image = Image.open(io.BytesIO(shape_image("disc", seed=4)))  # PIL images are not shared across threads
        image.load()
        while not stop.is_set():
            try:
                seen.append(predictor.predict(image).model_version)
            except Exception as error:  # collected, asserted below
                errors.append(error)

    threads = [threading.Thread(target=hammer, args=(seen,)) for seen in seen_by_thread]
    for thread in threads:
        thread.start()
    for name in ("v2", "v3", "v4"):
        time.sleep(0.3)
        predictor.swap(context.settings.data_dir / "models" / name)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()
    context.database.dispose()
    assert errors == []
    assert set().union(*seen_by_thread) == {"v1", "v2", "v3", "v4"}
    for seen in seen_by_thread:
        numbers = [int(version[1:]) for version in seen]
        assert numbers == sorted(numbers), "a thread saw an older version after a newer one"
