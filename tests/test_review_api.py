"""The review API over HTTP on a live server: experts only, same rules as the UI."""

from __future__ import annotations

import httpx
import pytest
from conftest import ADMIN, EXPERT
from test_db import new_image

from db import images as image_db
from db.scores import NewScore, replace_scores
from labeling.ranking.scoring import scorer_name

ROWS = [("cat", "dog", 0.9), ("dog", "dog", 0.1), ("cat", "cat", 0.4)]  # label, predicted, score


@pytest.fixture
def scored_server(live_server):
    database = live_server.context.database
    ids = [
        image_db.add_image(database, new_image(f"{n + 7:064d}", label=label))[0].id
        for n, (label, *_) in enumerate(ROWS)
    ]
    scores = [NewScore(i, s, label, p, 1 - s, [[p, s]]) for i, (label, p, s) in zip(ids, ROWS, strict=True)]
    replace_scores(database, scorer_name(), scores)
    return live_server, ids


def api(server, method, path, auth=EXPERT, **kwargs):
    return httpx.request(method, f"{server.url}{path}", auth=auth, timeout=30, **kwargs)


def test_queue_needs_an_expert_login(scored_server):
    server, _ = scored_server
    assert httpx.get(f"{server.url}/api/queue").status_code == 401
    assert api(server, "GET", "/api/queue", auth=("bob", "wrong")).status_code == 401
    assert api(server, "GET", "/api/queue", auth=ADMIN).status_code == 200
    assert httpx.post(f"{server.url}/api/decisions", json={"image_id": 1, "action": "keep"}).status_code == 401


def test_queue_lists_items_most_likely_wrong_first(scored_server):
    server, ids = scored_server
    body = api(server, "GET", "/api/queue", params={"limit": 2}).json()
    assert (body["total"], body["unreviewed"]) == (3, 3)
    assert [item["image_id"] for item in body["items"]] == [ids[0], ids[2]]
    assert body["items"][0]["label"] == "cat" and body["items"][0]["predicted_label"] == "dog"
    assert [i["image_id"] for i in api(server, "GET", "/api/queue", params={"label": "dog"}).json()["items"]] == [
        ids[1]
    ]


def test_decisions_apply_refuse_stale_views_and_undo(scored_server):
    server, ids = scored_server
    database = server.context.database
    leased = api(server, "POST", "/api/queue/next").json()["item"]
    assert leased["image_id"] == ids[0]
    relabel = api(
        server,
        "POST",
        "/api/decisions",
        json={"image_id": ids[0], "action": "relabel", "new_label": "dog", "expected_last_decision_id": None},
    )
    assert relabel.status_code == 200, relabel.text
    assert relabel.json()["decision"]["user_name"] == "bob" and relabel.json()["decision"]["score"] == 0.9
    assert image_db.get_image(database, ids[0]).label == "dog"

    stale = api(server, "POST", "/api/decisions", auth=ADMIN, json={"image_id": ids[0], "action": "delete"})
    assert stale.status_code == 409 and "decided by bob meanwhile" in stale.json()["detail"]
    assert image_db.get_image(database, ids[0]).status == "active"

    undo = api(server, "POST", "/api/decisions", json={"action": "undo"})
    assert undo.status_code == 200 and undo.json()["decision"]["new_label"] == "cat"
    assert image_db.get_image(database, ids[0]).label == "cat"


@pytest.mark.parametrize(
    ("payload", "status"),
    [
        ({"image_id": 1, "action": "burn"}, 422),
        ({"image_id": 1, "action": "relabel"}, 400),
        ({"image_id": 1, "action": "relabel", "new_label": "a/b"}, 400),
        ({"image_id": 99999, "action": "keep"}, 409),
        ({"action": "undo"}, 400),
    ],
)
def test_bad_decisions_are_refused_and_change_nothing(scored_server, payload, status):
    server, _ = scored_server
    response = api(server, "POST", "/api/decisions", json=payload)
    assert response.status_code == status
    assert "detail" in response.json()
    assert api(server, "GET", "/api/queue").json()["unreviewed"] == 3


def test_only_an_admin_restores_a_deleted_image(scored_server):
    server, ids = scored_server
    database = server.context.database
    deleted = api(server, "POST", "/api/decisions", json={"image_id": ids[0], "action": "delete"})
    assert deleted.status_code == 200
    seen = deleted.json()["decision"]["id"]
    restore = {"image_id": ids[0], "action": "restore", "expected_last_decision_id": seen}
    refused = api(server, "POST", "/api/decisions", json=restore)
    assert refused.status_code == 403 and "admin role" in refused.json()["detail"]
    assert image_db.get_image(database, ids[0]).status == "deleted"
    restored = api(server, "POST", "/api/decisions", auth=ADMIN, json=restore)
    assert restored.status_code == 200, restored.text
    assert image_db.get_image(database, ids[0]).status == "active"
