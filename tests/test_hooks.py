"""Event hooks: a real receiver on a loopback port gets signed POSTs for promotions and failed runs, retried with
backoff (driven by an explicit clock, never by sleeping), behind classify-url's address guard."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from datetime import timedelta

import gradio as gr
import httpx
import pytest
from conftest import ADMIN, EXPERT, LoopbackSite, free_port, serve_site

from db import hooks as hook_db
from db import model_versions as version_db
from db.schema import as_utc, utcnow
from db.users import add_user
from training import hooks, promotion
from training.launcher import fail_dead_runs, queue_run, spawn_worker, wait_for_worker
from ui import admin_hooks, admin_models

INSIDE_SENTENCE = "resolves to 127.0.0.1, an address Loupe does not fetch from"


def receiver(answers: list[int] | None = None, hold: threading.Event | None = None):
    """A LoopbackSite class that records each POST (headers, body) and answers the next status in answers
    (200 once they run out); with hold, it waits for that event before answering."""

    class Receiver(LoopbackSite):
        received: list[tuple[dict, bytes]] = []
        arrived = threading.Event()

        def do_POST(self):  # noqa: N802 (the stdlib's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            Receiver.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            Receiver.arrived.set()
            if hold is not None:
                hold.wait(30)
            status = answers.pop(0) if answers else 200
            try:
                self.send_body(status, "text/plain", b"thanks" if status < 300 else b"no")
            except (BrokenPipeError, ConnectionResetError):
                pass  # the sender gave up waiting, as it should

    return Receiver


def verified(secret: str, headers: dict, body: bytes) -> dict:
    """The payload, after checking the signature as the README tells a receiver to."""
    expected = hmac.new(secret.encode(), headers["x-loupe-timestamp"].encode() + b"." + body, hashlib.sha256)
    assert hmac.compare_digest(headers["x-loupe-signature"], "sha256=" + expected.hexdigest())
    return json.loads(body)


@pytest.fixture
def admin(context):
    return add_user(context.database, ADMIN[0], "admin", ADMIN[1])


def versions(context, *names: str) -> None:
    """Candidate versions in the database (promotion touches only rows; the predictor is not involved here)."""
    for name in names:
        version_db.add_version(
            context.database, name, None, f"models/{name}", {"error_rate": 0.125, "valid_count": 40, "gate": {}}
        )


def only_delivery(context) -> hook_db.DeliveryRow:
    found = hook_db.recent_deliveries(context.database)
    assert len(found) == 1
    return found[0]


def test_a_promotion_reaches_the_receiver_signed_with_the_right_payload(context, admin):
    versions(context, "v1", "v2")
    site = receiver()
    with serve_site(site) as url:
        added = hooks.add_hook(context, admin, f"{url}/loupe", [hooks.VERSION_PROMOTED], allow_private=True)
        assert added.hook.events == [hooks.VERSION_PROMOTED] and added.hook.created_by == ADMIN[0]
        assert len(added.secret) >= 40

        promotion.promote(context, "v1", hooks.by_admin(admin))
        promotion.promote(context, "v2", hooks.COMMAND_LINE)
        sent = hooks.deliver_due(context)
        assert [d.status for d in sent] == ["delivered", "delivered"]

    assert len(site.received) == 2
    first, second = (verified(added.secret, headers, body) for headers, body in site.received)
    assert first["event"] == "version.promoted" and as_utc_text(first["at"])
    assert first["data"] == {
        "version": "v1",
        "previous_version": None,
        "run_id": None,
        "metrics": {"error_rate": 0.125, "valid_count": 40, "gate": None},
        "promoted_by": {"kind": "admin", "name": ADMIN[0]},
        "rollback": False,
    }
    assert second["data"]["version"] == "v2" and second["data"]["previous_version"] == "v1"
    assert second["data"]["promoted_by"] == {"kind": "cli", "name": None}
    headers = site.received[0][0]
    assert headers["x-loupe-event"] == "version.promoted" and headers["content-type"] == "application/json"
    assert headers["x-loupe-delivery"] == str(sent[0].id)
    assert sent[0].attempts == 1 and sent[0].last_status_code == 200 and sent[0].delivered_at is not None


def as_utc_text(text: str) -> bool:
    """Whether text is an ISO time in UTC."""
    from datetime import datetime

    return datetime.fromisoformat(text).utcoffset() == timedelta(0)


def test_a_rollback_and_a_run_failure_reach_only_the_hooks_that_asked(context, admin):
    versions(context, "v1", "v2")
    promotions, failures = receiver(), receiver()
    with serve_site(promotions) as promotions_url, serve_site(failures) as failures_url:
        hooks.add_hook(context, admin, promotions_url, ["version.promoted"], allow_private=True)
        hooks.add_hook(context, admin, failures_url, ["run.failed"], allow_private=True)
        promotion.promote(context, "v1", hooks.COMMAND_LINE)
        promotion.promote(context, "v2", hooks.COMMAND_LINE)
        promotion.promote(context, "v2", hooks.COMMAND_LINE)  # serves already: nothing happened, nothing sent
        promotion.rollback(context, hooks.by_admin(admin))
        hooks.deliver_due(context)
    assert [json.loads(body)["data"]["version"] for _, body in promotions.received] == ["v1", "v2", "v1"]
    assert json.loads(promotions.received[-1][1])["data"]["rollback"] is True
    assert failures.received == []


def test_server_errors_are_retried_with_backoff_then_delivered(context, admin):
    versions(context, "v1")
    site = receiver([500, 503])
    with serve_site(site) as url:
        hooks.add_hook(context, admin, url, allow_private=True)
        promotion.promote(context, "v1", hooks.by_admin(admin))
        start = utcnow()

        (first,) = hooks.deliver_due(context, start)
        assert (first.status, first.attempts, first.last_status_code) == ("pending", 1, 500)
        assert first.last_error == "the receiver answered HTTP 500"
        assert as_utc(first.next_attempt_at) == start + timedelta(seconds=hooks.BACKOFF_S[0])

        assert hooks.deliver_due(context, start + timedelta(seconds=29)) == []  # not due yet: nothing sent
        assert len(site.received) == 1

        later = start + timedelta(seconds=30)
        (second,) = hooks.deliver_due(context, later)
        assert (second.status, second.attempts, second.last_status_code) == ("pending", 2, 503)
        assert as_utc(second.next_attempt_at) == later + timedelta(seconds=hooks.BACKOFF_S[1])

        (third,) = hooks.deliver_due(context, later + timedelta(seconds=hooks.BACKOFF_S[1]))
        assert (third.status, third.attempts, third.last_status_code, third.last_error) == ("delivered", 3, 200, None)
    bodies = {body for _, body in site.received}
    deliveries = {headers["x-loupe-delivery"] for headers, _ in site.received}
    assert len(site.received) == 3 and len(bodies) == 1 and deliveries == {str(third.id)}  # the same event thrice


def test_a_receiver_that_refuses_connections_fails_after_every_attempt_and_admin_shows_it(context, admin):
    versions(context, "v1")
    hooks.add_hook(context, admin, f"http://127.0.0.1:{free_port()}/gone", allow_private=True)  # nothing listens
    promotion.promote(context, "v1", hooks.by_admin(admin))
    now = utcnow()
    for attempt in range(1, hooks.MAX_ATTEMPTS + 1):
        (delivery,) = hooks.deliver_due(context, now)
        assert delivery.attempts == attempt and "the connection failed" in delivery.last_error
        if attempt < hooks.MAX_ATTEMPTS:
            assert delivery.status == "pending"
            now = as_utc(delivery.next_attempt_at)
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert delivery.last_error.endswith(f"gave up after {hooks.MAX_ATTEMPTS} attempts")
    assert hooks.deliver_due(context, now + timedelta(days=1)) == []  # failed for good: never sent again
    assert now - as_utc(delivery.created_at) >= timedelta(seconds=sum(hooks.BACKOFF_S))

    shown = admin_hooks.make_handlers(context)["refresh"](gr.Request(username=ADMIN[0]))
    table = shown["deliveries"]
    assert table.data.loc[0, "status"] == "failed" and "gave up after" in table.data.loc[0, "last error"]
    assert admin_hooks.FAILED_STYLE.split(";")[0] in table.to_html()  # the failed row is highlighted
    assert "failed: **1**" in shown["deliveries_note"]
    status = admin_models.make_handlers(context, None)[0](gr.Request(username=ADMIN[0]))["status"]
    assert "1 hook delivery failed in the last 7 days; see Admin → Hooks." in status


def test_a_refusal_other_than_408_or_429_fails_at_once_and_says_why(context, admin):
    versions(context, "v1")
    site = receiver([404])
    with serve_site(site) as url:
        hooks.add_hook(context, admin, url, allow_private=True)
        promotion.promote(context, "v1", hooks.COMMAND_LINE)
        (delivery,) = hooks.deliver_due(context)
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == ("failed", 1, 404)
    assert "retrying will not change" in delivery.last_error


def test_without_allow_private_a_loopback_url_is_refused_at_registration_and_nothing_is_stored(context, admin):
    with serve_site(receiver()) as url:
        with pytest.raises(hooks.BadHook, match=INSIDE_SENTENCE):
            hooks.add_hook(context, admin, url)
    with pytest.raises(hooks.BadHook, match="only http and https"):
        hooks.add_hook(context, admin, "ftp://example.org/x", allow_private=True)
    with pytest.raises(hooks.BadHook, match="there is no event 'run.started'"):
        hooks.add_hook(context, admin, "http://127.0.0.1/x", ["run.started"], allow_private=True)
    with pytest.raises(hooks.BadHook, match="not text"):
        hooks.add_hook(context, admin, "http://127.0.0.1/\ud800", allow_private=True)
    assert hooks.list_hooks(context, admin) == [] and hook_db.recent_deliveries(context.database) == []


def test_a_name_that_moves_to_loopback_after_registration_is_refused_at_delivery(context, admin, monkeypatch):
    versions(context, "v1")
    real_getaddrinfo = socket.getaddrinfo
    answer = {"hooks.example.org": "93.184.215.14"}  # a public address while the admin registers it

    def fake_dns(host, port, *args, **kwargs):  # the internet's DNS, mocked; literals resolve as before
        if host in answer:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answer[host], port))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake_dns)
    site = receiver()
    with serve_site(site) as url:
        port = url.rsplit(":", 1)[1]
        hooks.add_hook(context, admin, f"http://hooks.example.org:{port}/in")  # no allow_private
        answer["hooks.example.org"] = "127.0.0.1"  # then its DNS answer changes to where the receiver listens
        promotion.promote(context, "v1", hooks.COMMAND_LINE)
        (delivery,) = hooks.deliver_due(context)
    assert delivery.status == "failed" and delivery.last_error == f"not sent: hooks.example.org {INSIDE_SENTENCE}"
    assert site.received == []  # refused before any connection


def test_a_run_that_fails_for_real_emits_run_failed(context, admin):
    site = receiver()
    with serve_site(site) as url:
        added = hooks.add_hook(context, admin, url, ["run.failed"], allow_private=True)
        run_id = queue_run(context, size=64, epochs=1, freeze_epochs=0)  # no labeled images: training cannot start
        run = wait_for_worker(context, run_id, spawn_worker(context, run_id))
        assert run.status == "failed"
        (delivery,) = hooks.deliver_due(context)
        assert delivery.status == "delivered"
    payload = verified(added.secret, *site.received[0])
    assert payload["event"] == "run.failed"
    assert payload["data"]["run_id"] == run_id and payload["data"]["trigger"] == "manual"
    assert payload["data"]["error"] == run.error.splitlines()[0] and "Traceback" not in payload["data"]["error"]
    assert payload["data"]["params"]["size"] == 64


def test_a_run_whose_worker_vanished_emits_run_failed(context, admin):
    hooks.add_hook(context, admin, "http://127.0.0.1:9/x", allow_private=True)
    run_id = queue_run(context, size=64)
    assert fail_dead_runs(context, stale_after_s=0) == [run_id]
    delivery = only_delivery(context)
    assert delivery.event == "run.failed" and delivery.status == "pending" and delivery.attempts == 0
    assert delivery.payload["data"]["run_id"] == run_id
    assert "marked failed" in delivery.payload["data"]["error"]


def test_a_hanging_receiver_never_delays_a_promotion(context, admin, monkeypatch):
    versions(context, "v1")
    release = threading.Event()
    site = receiver(hold=release)
    monkeypatch.setattr(hooks, "SEND_TIMEOUT_S", 0.5)
    try:
        with serve_site(site) as url:
            hooks.add_hook(context, admin, url, allow_private=True)
            promotion.promote(context, "v1", hooks.COMMAND_LINE)  # emits: rows only, no connection
            assert site.received == [] and not site.arrived.is_set()
            delivery = only_delivery(context)
            assert (delivery.status, delivery.attempts) == ("pending", 0)
            assert version_db.promoted_version(context.database).version == "v1"

            (sent,) = hooks.deliver_due(context)  # the pump waits for it, not the promotion
            assert site.arrived.is_set()
            assert (sent.status, sent.attempts, sent.last_error) == ("pending", 1, "no answer within 0.5 s")
            release.set()
    finally:
        release.set()


def test_removing_a_hook_stops_its_deliveries(context, admin):
    versions(context, "v1")
    added = hooks.add_hook(context, admin, "http://127.0.0.1:9/x", allow_private=True)
    promotion.promote(context, "v1", hooks.COMMAND_LINE)
    removed = hooks.remove_hook(context, admin, added.hook.id)
    assert removed.disabled_at is not None and hooks.list_hooks(context, admin) == []
    delivery = only_delivery(context)
    assert delivery.status == "failed" and delivery.last_error == "the hook was removed before this was delivered"
    assert hooks.deliver_due(context, utcnow() + timedelta(days=1)) == []
    assert hooks.failure_note(context) is None  # a removed hook's failures are not news
    with pytest.raises(hooks.NotFound, match=f"no hook {added.hook.id}"):
        hooks.remove_hook(context, admin, added.hook.id)


def test_admin_handlers_add_show_the_secret_once_and_refuse_experts(context, admin):
    add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    handlers = admin_hooks.make_handlers(context)
    as_admin = gr.Request(username=ADMIN[0])
    with serve_site(receiver()) as url:
        with pytest.raises(gr.Error, match=INSIDE_SENTENCE):
            handlers["add"](url, ["run.failed"], False, as_admin)
        assert hooks.list_hooks(context, admin) == []
        with pytest.raises(gr.Error, match="choose at least one event"):
            handlers["add"](url, [], True, as_admin)
        shown = handlers["add"](url, ["run.failed"], True, as_admin)
    (hook,) = hooks.list_hooks(context, admin)
    assert shown["secret"] and shown["url"] == "" and "only this once" in shown["secret_note"]
    assert shown["hooks"].loc[0, "url"] == url and shown["hooks"].loc[0, "private addresses"] == "allowed"
    assert "secret" not in handlers["refresh"](as_admin)  # never shown again
    for name, args in (("refresh", ()), ("add", (url, ["run.failed"], True)), ("remove", (hook.id,))):
        with pytest.raises(gr.Error, match="admin role"):
            handlers[name](*args, gr.Request(username=EXPERT[0]))
    assert [h.id for h in hooks.list_hooks(context, admin)] == [hook.id]  # the expert changed nothing
    with pytest.raises(gr.Error, match="Choose a hook"):
        handlers["remove"](None, as_admin)
    assert handlers["remove"](str(hook.id), as_admin)["secret"] == ""
    assert hooks.list_hooks(context, admin) == []


def test_rest_routes_register_list_and_remove_hooks(live_server):
    base = f"{live_server.url}/api/hooks"
    with serve_site(receiver()) as url:
        refused = httpx.post(base, json={"url": url}, auth=ADMIN)
        assert refused.status_code == 400 and INSIDE_SENTENCE in refused.json()["detail"]
        assert httpx.get(base, auth=ADMIN).json() == {"hooks": []}
        added = httpx.post(base, json={"url": url, "events": ["version.promoted"], "allow_private": True}, auth=ADMIN)
    assert added.status_code == 200, added.text
    hook, secret = added.json()["hook"], added.json()["secret"]
    assert hook["url"] == url and hook["events"] == ["version.promoted"] and secret
    listed = httpx.get(base, auth=ADMIN).json()["hooks"]
    assert [h["id"] for h in listed] == [hook["id"]] and "secret" not in listed[0]
    assert httpx.get(f"{base}/deliveries", auth=ADMIN).json() == {"deliveries": []}
    bad_event = httpx.post(base, json={"url": url, "events": ["run.started"], "allow_private": True}, auth=ADMIN)
    assert bad_event.status_code == 422
    assert httpx.delete(f"{base}/{hook['id']}", auth=EXPERT).status_code == 403
    assert httpx.delete(f"{base}/{hook['id']}", auth=ADMIN).json()["hook"]["disabled_at"]
    assert httpx.delete(f"{base}/{hook['id']}", auth=ADMIN).status_code == 404
    assert httpx.get(base, auth=ADMIN).json() == {"hooks": []}


def test_cli_adds_lists_and_removes_hooks(context, monkeypatch, capsys, tmp_path):
    from cli import main

    monkeypatch.setenv("LOUPE_DATA_DIR", str(context.settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", context.settings.resolved_database_url)
    assert main(["hooks", "add", "http://127.0.0.1:9/in"]) == 2
    assert INSIDE_SENTENCE in capsys.readouterr().err
    assert main(["hooks", "add", "http://127.0.0.1:9/in", "--event", "run.failed", "--allow-private"]) == 0
    printed = capsys.readouterr().out
    (hook,) = hooks.list_hooks(context, None)
    assert f"hook {hook.id} sends run.failed to http://127.0.0.1:9/in" in printed and "secret" in printed
    assert main(["hooks", "list"]) == 0 and "private addresses allowed" in capsys.readouterr().out
    assert main(["hooks", "remove", str(hook.id)]) == 0
    assert hooks.list_hooks(context, None) == []
