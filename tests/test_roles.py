"""The role matrix: anonymous / expert / admin against every REST route and every named Gradio endpoint.

The server checks roles in each handler; hiding a tab is not protection. The lists here must cover
everything the app exposes (the last tests fail when a new route or endpoint is not in them).
"""

from __future__ import annotations

import httpx
import pytest
from conftest import ADMIN, EXPERT
from gradio_client import Client

from db import app_state
from db import decisions as decision_db
from db import model_versions as version_db
from db import runs as run_db
from db import users as user_db
from db.stats import dataset_stats
from labeling import label_studio

# Named /review endpoints, each with arguments an admin may send; all are admin-only. Arguments are
# chosen so an admin call does something harmless or is refused for its input, never for its role.
ADMIN_ENDPOINTS = {
    "/admin_stats": (),
    "/admin_upload": (None, ""),
    "/admin_restore": ([],),
    "/admin_purge": ([],),
    "/admin_export": ("csv",),
    "/retrain_now": (1, 1, "not-a-number", False),
    "/admin_runs": (None,),
    "/cancel_run": (None,),
    "/retry_run": (None,),
    "/train_head": (),
    "/promote_version": (None,),
    "/rollback_version": (),
    "/model_archive": (None,),
    "/save_loop_policy": (True, 20, 0, "", 0.01, 1, 2, 128),
    "/add_user": ("carol", "expert", "carol-password"),
    "/reset_password": ("bob", "bob-new-password"),
    "/disable_user": ("bob", ""),
    "/enable_user": ("bob", ""),
    "/admin_audit_refresh": (),
    "/admin_start_audit": (1,),
    "/admin_save_review_policy": (0.1, True, True),
    "/admin_show_disagreement": (None,),
    "/admin_settle_first": (None, None),
    "/admin_settle_second": (None, None),
    "/admin_settle_label": (None, "cat"),
    "/admin_settle_delete": (None, None),
    "/admin_class_guide": (None,),
    "/admin_save_class_guide": (None, "", ""),
    "/admin_hooks": (),
    "/admin_add_hook": ("", [], False),
    "/admin_remove_hook": (None,),
    "/admin_make_ls_token": ("label studio", "http://127.0.0.1:9"),
    "/admin_revoke_ls_token": (None,),
}

# (method, path, who may use it); "public" needs nothing, "expert" means expert or admin, "admin" admins only,
# "token" a Label Studio token an admin made (no account's password opens it).
REST_ROUTES = [
    ("GET", "/api/health", "public"),
    ("POST", "/api/predict", "public"),
    ("GET", "/api/classify-url", "public"),
    ("GET", "/api/queue", "expert"),
    ("POST", "/api/queue/next", "expert"),
    ("POST", "/api/decisions", "expert"),
    ("GET", "/api/images/{image_id}/evidence", "expert"),
    ("GET", "/api/images/{image_id}/history", "expert"),
    ("GET", "/api/estimates", "expert"),
    ("POST", "/api/audits", "admin"),
    ("GET", "/api/disagreements", "admin"),
    ("POST", "/api/disagreements/{task_id}/settle", "admin"),
    ("GET", "/api/guides", "expert"),
    ("PUT", "/api/guides", "admin"),
    ("GET", "/api/review-policy", "expert"),
    ("PUT", "/api/review-policy", "admin"),
    ("GET", "/api/hooks", "admin"),
    ("POST", "/api/hooks", "admin"),
    ("DELETE", "/api/hooks/{hook_id}", "admin"),
    ("GET", "/api/hooks/deliveries", "admin"),
    ("GET", "/api/models/{version}/archive", "admin"),
    ("GET", "/api/label-studio/health", "token"),
    ("POST", "/api/label-studio/setup", "token"),
    ("POST", "/api/label-studio/predict", "token"),
    ("POST", "/api/label-studio/webhook", "public"),
]


def fingerprint(context) -> tuple:
    """Everything an admin action could change, in one comparable value."""
    database = context.database
    return (
        [(u.name, u.role, u.disabled) for u in user_db.list_users(database)],
        [user_db.authenticate(database, name, password) is not None for name, password in (ADMIN, EXPERT)],
        [(r.id, r.status) for r in run_db.list_runs(database)],
        [(v.version, v.status) for v in version_db.list_versions(database)],
        app_state.get_state(database, "loop_policy"),
        len(decision_db.list_decisions(database)),
        dataset_stats(database),
    )


@pytest.mark.parametrize("endpoint", sorted(ADMIN_ENDPOINTS))
def test_expert_is_refused_every_admin_endpoint_and_nothing_changes(live_server, endpoint):
    before = fingerprint(live_server.context)
    expert = Client(f"{live_server.url}/review/", auth=EXPERT, verbose=False)
    with pytest.raises(Exception, match="admin role"):  # noqa: B017 (gradio_client wraps gr.Error)
        expert.predict(*ADMIN_ENDPOINTS[endpoint], api_name=endpoint)
    assert fingerprint(live_server.context) == before


@pytest.mark.parametrize("endpoint", sorted(ADMIN_ENDPOINTS))
def test_admin_passes_the_role_check_of_every_admin_endpoint(live_server, endpoint):
    admin = Client(f"{live_server.url}/review/", auth=ADMIN, verbose=False)
    try:
        admin.predict(*ADMIN_ENDPOINTS[endpoint], api_name=endpoint)
    except Exception as refused:  # noqa: BLE001 — refused for its input is fine, for its role is not
        message = str(refused)
        assert "admin role" not in message and "log in" not in message
        assert "has raised an exception" not in message  # a crash, not a refusal with a reason


def test_anonymous_cannot_reach_the_review_app(live_server):
    assert httpx.get(f"{live_server.url}/review/gradio_api/info").status_code == 401
    with pytest.raises(ValueError, match="credentials were not provided"):
        Client(f"{live_server.url}/review/", verbose=False)


def test_disabled_expert_loses_access_at_once(live_server):
    user_db.set_disabled(live_server.context.database, EXPERT[0], True)
    assert httpx.get(f"{live_server.url}/api/queue", auth=EXPERT).status_code == 401
    with pytest.raises(ValueError, match="Could not login"):
        Client(f"{live_server.url}/review/", auth=EXPERT, verbose=False)


@pytest.mark.parametrize(("method", "path", "allowed"), REST_ROUTES)
def test_rest_route_roles(live_server, method, path, allowed):
    before = fingerprint(live_server.context)
    for who, auth in (("anonymous", None), ("expert", EXPERT), ("admin", ADMIN)):
        response = httpx.request(method, f"{live_server.url}{path}", auth=auth, timeout=30)
        refused_for_role = response.status_code in (401, 403)
        should_refuse = (
            (allowed != "public" and who == "anonymous")
            or (allowed == "admin" and who == "expert")
            or allowed == "token"
        )
        assert refused_for_role == should_refuse, (who, response.status_code)
    if allowed == "token":
        admin = user_db.get_user(live_server.context.database, ADMIN[0])
        token = label_studio.make_token(live_server.context, admin, "roles", "http://127.0.0.1:9").token
        before = fingerprint(live_server.context)
        response = httpx.request(method, f"{live_server.url}{path}", auth=("loupe", token), timeout=30)
        assert response.status_code not in (401, 403), response.text
    assert fingerprint(live_server.context) == before  # none of these calls carried a valid change


def test_the_matrix_covers_every_route_and_endpoint(live_server):
    app = httpx.get(f"{live_server.url}/openapi.json").json()
    exposed = {(method.upper(), path) for path, item in app["paths"].items() for method in item}
    assert exposed == {(method, path) for method, path, _ in REST_ROUTES}
    admin = Client(f"{live_server.url}/review/", auth=ADMIN, verbose=False)
    named = set(admin.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == set(ADMIN_ENDPOINTS)
