"""The Label Studio backend's rules without a Label Studio: tokens, configs, refusals, the trusted origin.

tests/test_label_studio.py runs the whole protocol against a real Label Studio; these check each refusal
on SQLite and PostgreSQL, and that nothing else changes when one is refused.
"""

from __future__ import annotations

import httpx
import pytest
from conftest import ADMIN, EXPERT, LoopbackSite, image_bytes, serve_site
from sqlalchemy import func, select

from db import label_studio as ls_db
from db import users as user_db
from db.schema import ApiToken, Decision, Image, LabelStudioProject
from errors import NotFound, PermissionDenied
from labeling import label_studio
from labeling.imports.safe_fetch import TrustedOrigin, fetch_image_url
from models.imagecheck import ImageRejected

CONFIG = (
    '<View><Image name="image" value="$image"/>'
    '<Choices name="label" toName="image"><Choice value="a"/></Choices></View>'
)


def _counts(context) -> tuple[int, ...]:
    with context.database.read() as session:
        return tuple(
            session.scalar(select(func.count()).select_from(table))
            for table in (ApiToken, LabelStudioProject, Image, Decision)
        )


def _token(context, name: str = "studio", url: str = "http://127.0.0.1:9") -> str:
    admin = user_db.get_user(context.database, ADMIN[0])
    return label_studio.make_token(context, admin, name, url).token


def test_only_admins_make_tokens_for_a_real_address_and_only_the_hash_is_kept(live_server):
    context = live_server.context
    expert = user_db.get_user(context.database, EXPERT[0])
    admin = user_db.get_user(context.database, ADMIN[0])
    with pytest.raises(PermissionDenied):
        label_studio.make_token(context, expert, "mine", "http://127.0.0.1:8080")
    for url in ("", "localhost:8080", "ftp://studio", "http://", "http://studio/?next=x"):
        with pytest.raises(label_studio.LabelStudioError, match="not a Label Studio address"):
            label_studio.make_token(context, admin, "bad", url)
    made = label_studio.make_token(context, admin, "studio", "http://LS.example:8080/")
    assert made.row.origin == "http://LS.example:8080" and made.token.startswith(label_studio.TOKEN_PREFIX)
    with pytest.raises(label_studio.LabelStudioError, match="exists already"):
        label_studio.make_token(context, admin, "studio", "http://127.0.0.1:8080")
    with context.database.read() as session:
        stored = session.scalars(select(ApiToken)).all()
    assert len(stored) == 1 and made.token not in {stored[0].token_hash, stored[0].prefix}
    with pytest.raises(NotFound):
        label_studio.revoke_token(context, admin, "nobody")


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ("<View><Image", "not valid XML"),
        ('<View><Image name="image" value="$image"/></View>', "needs a <Choices> tag"),
        ('<View><Text name="t" value="$text"/><Choices name="c" toName="t"/></View>', "needs a <Choices> tag"),
        ('<View><Image name="i" value="https://x/1.png"/><Choices name="c" toName="i"/></View>', "needs"),
    ],
)
def test_setup_refuses_configs_loupe_cannot_answer_and_stores_nothing(live_server, config, problem):
    token = _token(live_server.context)
    before = _counts(live_server.context)
    answer = httpx.post(
        f"{live_server.url}/api/label-studio/setup", json={"project": "3.1700000000", "schema": config},
        auth=("loupe", token),
    )  # fmt: skip
    assert answer.status_code == 400 and problem in answer.json()["detail"], answer.text
    assert _counts(live_server.context) == before


def test_setup_records_the_project_and_predict_says_why_it_cannot_answer(live_server):
    token = _token(live_server.context)
    url = f"{live_server.url}/api/label-studio"
    setup = {"project": "3.1700000000", "schema": CONFIG, "hostname": "http://127.0.0.1:9", "access_token": "x"}
    answer = httpx.post(f"{url}/setup", json=setup, auth=("loupe", token))
    assert answer.json() == {"model_version": "none"}  # no model trained yet
    project = ls_db.get_project(live_server.context.database, "3.1700000000")
    assert (project.from_name, project.to_name, project.image_key) == ("label", "image", "image")

    before = _counts(live_server.context)
    task = {"id": 1, "data": {"image": "/data/upload/3/a.png"}}
    unknown = httpx.post(f"{url}/predict", json={"project": "4.1", "tasks": [task]}, auth=("loupe", token))
    assert unknown.status_code == 409 and "has not been set up" in unknown.json()["detail"]
    no_model = httpx.post(f"{url}/predict", json={"project": "3.1700000000", "tasks": [task]}, auth=("loupe", token))
    assert no_model.status_code == 409 and "No model" in no_model.json()["detail"]
    too_many = {"project": "3.1700000000", "tasks": [task] * (label_studio.MAX_TASKS + 1)}
    answer = httpx.post(f"{url}/predict", json=too_many, auth=("loupe", token))
    assert answer.status_code == 400 and "at most" in answer.json()["detail"]
    assert _counts(live_server.context) == before


def test_webhooks_for_other_events_or_projects_change_nothing(live_server):
    url = f"{live_server.url}/api/label-studio/webhook"
    before = _counts(live_server.context)
    ignored = httpx.post(url, json={"action": "PROJECT_UPDATED", "project": {"id": 1}})
    assert ignored.status_code == 200 and ignored.json()["outcome"].startswith("ignored")
    unknown = httpx.post(url, json={"action": "ANNOTATION_CREATED", "annotation": {"id": 5, "project": 77}})
    assert unknown.status_code == 404 and "not connected" in unknown.json()["detail"]
    for body in ({"action": "ANNOTATION_CREATED"}, {"action": "ANNOTATION_CREATED", "annotation": {"id": "1"}}):
        answer = httpx.post(url, json=body)
        assert answer.status_code == 400 and "names no annotation" in answer.json()["detail"]
    assert httpx.post(url, content=b"not json", headers={"Content-Type": "application/json"}).status_code == 422
    assert _counts(live_server.context) == before


def test_task_images_come_from_the_token_s_label_studio_or_a_public_url():
    token = ls_db.TokenRow(1, "t", "p", "label-studio", "http://studio:8080", None, None, None, None)
    assert label_studio.task_image_url(token, "/data/upload/1/a.png") == "http://studio:8080/data/upload/1/a.png"
    assert label_studio.task_image_url(token, "https://cdn.example/a.png") == "https://cdn.example/a.png"
    for ref in ("s3://bucket/a.png", "//evil.example/a.png", "file:///etc/passwd", "a.png"):
        with pytest.raises(ImageRejected):
            label_studio.task_image_url(token, ref)


class TokenEcho(LoopbackSite):
    """An image for a request carrying the Label Studio token, 401 otherwise; /away redirects elsewhere."""

    elsewhere = ""

    def do_GET(self):
        if self.path == "/away":
            self.send_response(302)
            self.send_header("Location", self.elsewhere + "/img")
            self.end_headers()
        elif self.headers.get("Authorization") == "Token studio-secret":
            self.send_body(200, "image/png", image_bytes())
        else:
            self.send_body(401, "text/plain", b"who are you")


def test_only_the_trusted_origin_may_be_private_and_gets_the_token():
    with serve_site(TokenEcho) as studio, serve_site(TokenEcho) as other:
        TokenEcho.elsewhere = other
        trusted = TrustedOrigin(studio, {"Authorization": "Token studio-secret"})
        caps = {"timeout_s": 5, "max_bytes": 1_000_000, "allow_private": False, "trusted": trusted}
        assert fetch_image_url(studio + "/img", **caps).startswith(b"\x89PNG")
        with pytest.raises(ImageRejected, match="does not fetch from"):
            fetch_image_url(other + "/img", **caps)  # another loopback site: refused like classify-url
        with pytest.raises(ImageRejected, match="does not fetch from"):
            fetch_image_url(studio + "/away", **caps)  # a redirect off the trusted origin: checked again
        with pytest.raises(ImageRejected, match="HTTP 401"):  # allowed there, but without the token
            fetch_image_url(studio + "/away", **{**caps, "allow_private": True})
