"""What the REST API takes: out-of-range or mistyped integers, missing ids, and text the database cannot
hold are a 422 (or a 401) that writes nothing, never a 500.

Each test starts one live server and tries all its cases on it, in a loop (a server takes seconds to start).
"""

from __future__ import annotations

import httpx
import pytest
from conftest import EXPERT
from test_db import new_image

from db import images as image_db
from db.stats import table_counts


@pytest.fixture
def server_with_image(live_server):
    """The live server with one labeled image, id 1 (the image `"image_id": true` would have decided)."""
    image = image_db.add_image(live_server.context.database, new_image(f"{1:064d}"))[0]
    assert image.id == 1
    return live_server


def api(server, method, path, **kwargs):
    return httpx.request(method, f"{server.url}{path}", auth=EXPERT, timeout=30, **kwargs)


def refused_without_change(server, method, path, **kwargs) -> httpx.Response:
    """The response to a request that must be a 422 and leave every table as it was."""
    before = table_counts(server.context.database)
    response = api(server, method, path, **kwargs)
    assert response.status_code == 422, f"{method} {path} {kwargs}: {response.status_code} {response.text}"
    assert table_counts(server.context.database) == before, f"{method} {path} {kwargs} wrote something"
    return response


def test_image_ids_out_of_range_or_of_another_type_are_refused(server_with_image):
    for image_id in [2**31, 2**63, 2**64, -1, 0, True, False, "1", 1.0, 1.5, None]:
        payload = {"image_id": image_id, "action": "keep"}
        response = refused_without_change(server_with_image, "POST", "/api/decisions", json=payload)
        assert response.json()["detail"][0]["loc"] in (["body", "image_id"], ["body"]), image_id
    assert image_db.get_image(server_with_image.context.database, 1).label == "cat"


def test_a_missing_image_id_is_refused_unless_undoing(server_with_image):
    for action in ["keep", "relabel", "delete", "restore"]:
        payload = {"action": action, "new_label": "dog"} if action == "relabel" else {"action": action}
        response = refused_without_change(server_with_image, "POST", "/api/decisions", json=payload)
        assert response.json()["detail"][0]["msg"] == f"image_id is required for {action}"

    kept = api(server_with_image, "POST", "/api/decisions", json={"image_id": 1, "action": "keep"})
    assert kept.status_code == 200, kept.text
    undone = api(server_with_image, "POST", "/api/decisions", json={"action": "undo"})
    assert undone.status_code == 200, undone.text
    assert undone.json()["decision"]["image_id"] == 1


def test_expected_last_decision_id_is_bounded_and_strict(server_with_image):
    for expected in [2**31, 2**63, 2**64, 0, -5, True, "3", 2.0]:
        payload = {"image_id": 1, "action": "keep", "expected_last_decision_id": expected}
        response = refused_without_change(server_with_image, "POST", "/api/decisions", json=payload)
        assert response.json()["detail"][0]["loc"] == ["body", "expected_last_decision_id"], expected


def test_queue_paging_out_of_range_is_refused_and_the_limits_answer(server_with_image):
    for params in [
        {"offset": 2**31},
        {"offset": 2**63},
        {"offset": 2**64},
        {"offset": 10**9 + 1},
        {"offset": -1},
        {"limit": 0},
        {"limit": 1001},
        {"limit": 2**63},
        {"limit": -1},
    ]:
        response = refused_without_change(server_with_image, "GET", "/api/queue", params=params)
        assert response.json()["detail"][0]["loc"] == ["query", *params]
    response = api(server_with_image, "GET", "/api/queue", params={"offset": 10**9, "limit": 1000})
    assert response.status_code == 200, response.text
    assert response.json()["items"] == []


def test_label_filters_no_label_can_match_are_refused(server_with_image):
    # PostgreSQL refuses NUL in a text parameter: these were 500s there.
    for method, path, params in [
        ("GET", "/api/queue", {"label": "cat\x00"}),
        ("GET", "/api/queue", {"predicted": "\x00"}),
        ("POST", "/api/queue/next", {"label": "\x00"}),
        ("POST", "/api/queue/next", {"predicted": "dog\x1b"}),
        ("GET", "/api/queue", {"label": "x" * 101}),
    ]:
        response = refused_without_change(server_with_image, method, path, params=params)
        assert response.json()["detail"][0]["loc"] == ["query", *params]


def test_text_the_database_cannot_hold_is_refused_not_a_500(server_with_image):
    # Valid JSON, but not encodable as UTF-8: echoing it in the 422 used to fail with a 500.
    body = b'{"image_id": 1, "action": "relabel", "new_label": "\\ud800cat"}'
    headers = {"content-type": "application/json"}
    response = refused_without_change(server_with_image, "POST", "/api/decisions", content=body, headers=headers)
    assert response.json()["detail"][0]["loc"] == ["body", "new_label"]
    assert response.json()["detail"][0]["input"] == "\\ud800cat"

    # PostgreSQL answered the user lookup with an error: a 500.
    response = httpx.get(f"{server_with_image.url}/api/queue", auth=("bo\x00b", "bob-password"), timeout=30)
    assert response.status_code == 401


def test_the_largest_ids_reach_the_database_and_are_simply_unknown(server_with_image):
    # 2**31 - 1 is PostgreSQL's largest INTEGER; one more overflowed there with a 500.
    for image_id in [2**31 - 1, 2]:
        response = api(server_with_image, "POST", "/api/decisions", json={"image_id": image_id, "action": "keep"})
        assert response.status_code == 409 and "no longer exists" in response.json()["detail"], image_id
