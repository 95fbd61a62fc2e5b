"""Rate limits on a live server: login failures per user and per address, public predictions per address."""

from __future__ import annotations

import time

import httpx
import pytest
from conftest import ADMIN, EXPERT, LiveServer, distinct_images, open_context

from db.users import add_user
from limits import RateLimited, RequestRate


@pytest.fixture
def strict_server(tmp_path):
    """A live server allowing 3 failures per user, 5 per address, and 1 prediction per second (burst 2)."""
    context = open_context(
        tmp_path / "data",
        f"sqlite:///{tmp_path / 'loupe.db'}",
        login_failures_per_user=3,
        login_failures_per_address=5,
        predict_rate_per_s=1.0,
        predict_burst=2,
    )
    add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    with LiveServer(context) as server:
        yield server
    context.database.dispose()


def gradio_login(server, user: str, password: str) -> httpx.Response:
    return httpx.post(f"{server.url}/review/login", data={"username": user, "password": password}, timeout=30)


def test_api_login_locks_the_user_after_repeated_failures(strict_server):
    queue = f"{strict_server.url}/api/queue"
    for _ in range(3):
        assert httpx.get(queue, auth=(EXPERT[0], "guess")).status_code == 401
    locked = httpx.get(queue, auth=EXPERT)  # even the right password waits now
    assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
    assert "too many failed logins for this account" in locked.json()["detail"]
    assert httpx.get(queue, auth=ADMIN).status_code == 200  # another account from the same address still works


def test_gradio_login_is_limited_per_user_and_per_address(strict_server):
    for _ in range(3):
        assert gradio_login(strict_server, EXPERT[0], "guess").status_code == 400
    refused = gradio_login(strict_server, EXPERT[0], EXPERT[1])
    assert refused.status_code == 429 and "this account" in refused.json()["detail"]
    assert gradio_login(strict_server, ADMIN[0], ADMIN[1]).status_code == 200
    for name in ("x1", "x2"):  # five failures from this address in all
        assert gradio_login(strict_server, name, "guess").status_code == 400
    blocked = gradio_login(strict_server, ADMIN[0], ADMIN[1])
    assert blocked.status_code == 429 and "your address" in blocked.json()["detail"]


def test_public_predict_answers_429_beyond_the_rate(strict_server):
    files = {"file": ("x.png", distinct_images(1)[0])}
    statuses = [httpx.post(f"{strict_server.url}/api/predict", files=files).status_code for _ in range(3)]
    assert statuses[:2] == [409, 409]  # no model yet, but within the rate
    assert statuses[2] == 429
    limited = httpx.post(f"{strict_server.url}/api/predict", files=files)
    assert "too many requests" in limited.json()["detail"] and limited.headers["Retry-After"] == "1"
    time.sleep(1.1)
    assert httpx.post(f"{strict_server.url}/api/predict", files=files).status_code == 409


def test_request_rate_refills_and_zero_means_off():
    rate = RequestRate(rate_per_s=20.0, burst=1)
    rate.take("a")
    with pytest.raises(RateLimited):
        rate.take("a")
    rate.take("b")  # addresses have their own buckets
    time.sleep(0.06)
    rate.take("a")
    unlimited = RequestRate(rate_per_s=0, burst=0)
    for _ in range(100):
        unlimited.take("a")


def test_oversize_requests_are_refused_before_they_are_read(tmp_path):
    context = open_context(tmp_path / "data", f"sqlite:///{tmp_path / 'loupe.db'}", max_image_bytes=50_000)
    add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    big = b"\0" * 2_000_000  # over the public cap (50 kB + 1 MiB envelope), under the review cap
    with LiveServer(context) as server:
        for path in ("/api/predict", "/gradio_api/upload"):
            response = httpx.post(f"{server.url}{path}", files={"file": ("big.png", big)}, timeout=30)
            assert response.status_code == 413 and "the limit here is" in response.json()["detail"]
        review = httpx.post(f"{server.url}/review/gradio_api/upload", files={"files": ("big.zip", big)}, timeout=30)
        assert review.status_code != 413  # admin uploads (zips) have the larger cap
    context.database.dispose()
