"""The real app on a loopback port: routes, the login wall and role checks in handlers."""

from __future__ import annotations

import httpx
import pytest
from conftest import ADMIN, EXPERT, distinct_images
from gradio_client import Client, handle_file

from db import images as image_db


def test_health_reports_status_and_counts(live_server):
    response = httpx.get(f"{live_server.url}/api/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["model_version"] is None
    assert body["counts"]["total"] == 0
    assert "/api/health" in httpx.get(f"{live_server.url}/openapi.json").json()["paths"]


def test_review_needs_a_login(live_server):
    assert httpx.get(f"{live_server.url}/review/config").status_code == 401
    assert httpx.get(f"{live_server.url}/review/gradio_api/info").status_code == 401
    with pytest.raises(ValueError, match="credentials were not provided"):
        Client(f"{live_server.url}/review/", verbose=False)
    with pytest.raises(ValueError, match="Could not login"):
        Client(f"{live_server.url}/review/", auth=(ADMIN[0], "wrong password"), verbose=False)


def test_admin_uploads_through_the_gradio_api(live_server, tmp_path):
    paths = []
    for i, data in enumerate(distinct_images(2)):
        paths.append(tmp_path / f"up{i}.png")
        paths[-1].write_bytes(data)
    (tmp_path / "bad.jpg").write_bytes(b"<html>not an image</html>")
    client = Client(f"{live_server.url}/review/", auth=ADMIN, verbose=False)
    result = client.predict(
        [handle_file(str(p)) for p in [*paths, tmp_path / "bad.jpg"]], "cat", api_name="/admin_upload"
    )
    assert "added **2**" in result[0] and "rejected **1**" in result[0]
    assert image_db.count_images(live_server.context.database) == 2
    assert {r.label for r in image_db.iter_active_labeled(live_server.context.database)} == {"cat"}


def test_expert_cannot_call_admin_handlers(live_server, tmp_path):
    (tmp_path / "x.png").write_bytes(distinct_images(1)[0])
    client = Client(f"{live_server.url}/review/", auth=EXPERT, verbose=False)
    # The upload door itself refuses an expert (only the Admin tab uploads), before any file is kept.
    with pytest.raises(Exception, match="403"):
        client.predict([handle_file(str(tmp_path / "x.png"))], "cat", api_name="/admin_upload")
    with httpx.Client(base_url=live_server.url) as browser:
        browser.post("/review/login", data={"username": EXPERT[0], "password": EXPERT[1]}).raise_for_status()
        refused = browser.post("/review/gradio_api/upload", files={"files": ("x.png", b"png")})
    assert refused.status_code == 403 and "admin role" in refused.json()["detail"]
    with pytest.raises(Exception, match="admin role"):
        client.predict([], "cat", api_name="/admin_upload")
    with pytest.raises(Exception, match="admin role"):
        client.predict(api_name="/admin_stats")
    assert image_db.count_images(live_server.context.database) == 0


def test_admin_restores_and_purges_deleted_images(live_server, tmp_path):
    from db import decisions as decision_db
    from labeling import review
    from labeling.imports.ingest import import_paths

    context = live_server.context
    for i, data in enumerate(distinct_images(2)):
        (tmp_path / "in" / "cat").mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / "cat" / f"{i}.png").write_bytes(data)
    import_paths(context, [tmp_path / "in"])
    first, second = list(image_db.iter_active_labeled(context.database))
    bob = __import__("db.users", fromlist=["get_user"]).get_user(context.database, EXPERT[0])
    for image in (first, second):
        review.decide(context, bob, image.id, "delete", expected_last_id=None)

    expert = Client(f"{live_server.url}/review/", auth=EXPERT, verbose=False)
    with pytest.raises(Exception, match="admin role"):  # noqa: B017 (gradio_client wraps it)
        expert.predict([second.id], api_name="/admin_purge")
    assert context.store.absolute(second.stored_path).exists()

    admin = Client(f"{live_server.url}/review/", auth=ADMIN, verbose=False)
    admin.predict([first.id], api_name="/admin_restore")
    admin.predict([second.id], api_name="/admin_purge")
    assert image_db.get_image(context.database, first.id).status == "active"
    assert image_db.get_image(context.database, second.id).status == "purged"
    assert not context.store.absolute(second.stored_path).exists()
    assert not context.store.absolute(second.thumb_path).exists()
    actions = [(d.user_name, d.action) for d in decision_db.list_decisions(context.database)]
    assert actions[-2:] == [("alice", "restore"), ("alice", "purge")]
    reimported = import_paths(context, [tmp_path / "in"])  # a purged image stays out
    assert (reimported.added, reimported.duplicates) == (0, 2)
