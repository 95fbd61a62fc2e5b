"""Browser sessions end when they should: password reset, disabled account, logout, idle expiry; and
the login limits hold on every path to the login handler, without telling which names exist."""

from __future__ import annotations

import statistics
import time

import httpx
import pytest
from conftest import ADMIN, EXPERT, LiveServer, open_context
from web_doors import login

from db.users import add_user, set_disabled, set_password
from limits import LoginThrottle, RateLimited


def can_read_review(client: httpx.Client) -> bool:
    """Whether the session still opens the review page's config."""
    return client.get("/review/config").status_code == 200


def test_password_reset_ends_the_old_session(live_server):
    expert = login(live_server.url, *EXPERT)
    assert can_read_review(expert)
    set_password(live_server.context.database, EXPERT[0], "a-new-password")
    assert not can_read_review(expert)
    assert can_read_review(login(live_server.url, EXPERT[0], "a-new-password"))


def test_disabling_an_account_ends_its_sessions_and_logout_ends_one(live_server):
    expert, admin = login(live_server.url, *EXPERT), login(live_server.url, *ADMIN)
    set_disabled(live_server.context.database, EXPERT[0], True)
    assert not can_read_review(expert)
    assert expert.post("/review/login", data={"username": EXPERT[0], "password": EXPERT[1]}).status_code == 400
    assert can_read_review(admin)
    admin.get("/review/logout")
    assert not can_read_review(admin)


def test_a_stolen_cookie_dies_with_logout(live_server):
    admin = login(live_server.url, *ADMIN)
    copied = httpx.Client(base_url=live_server.url, cookies=admin.cookies)
    assert can_read_review(copied)
    admin.get("/review/logout")
    assert not can_read_review(copied)


def test_sessions_expire_when_idle(tmp_path, database_url):
    context = open_context(tmp_path / "data", database_url, session_idle_s=1.0)
    add_user(context.database, *EXPERT[:1], "expert", EXPERT[1])
    with LiveServer(context) as server:
        expert = login(server.url, *EXPERT)
        assert can_read_review(expert)
        time.sleep(1.5)
        assert not can_read_review(expert)
    context.database.dispose()


@pytest.fixture
def strict_server(tmp_path):
    """A live server allowing 3 failed logins per account and address."""
    context = open_context(tmp_path / "data", f"sqlite:///{tmp_path / 'loupe.db'}", login_failures_per_user=3)
    add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    with LiveServer(context) as server:
        yield server
    context.database.dispose()


def test_every_path_to_the_login_handler_counts_failures(strict_server):
    for path in ("/review/login", "/review/login/", "/review/login"):
        answer = httpx.post(f"{strict_server.url}{path}", data={"username": EXPERT[0], "password": "guess"})
        assert answer.status_code == 400
    refused = httpx.post(f"{strict_server.url}/review/login/", data={"username": EXPERT[0], "password": EXPERT[1]})
    assert refused.status_code == 429


def test_failures_from_one_address_do_not_lock_the_account_elsewhere(strict_server):
    stranger = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    for _ in range(4):
        stranger.post(f"{strict_server.url}/review/login", data={"username": EXPERT[0], "password": "guess"})
    assert (
        stranger.post(f"{strict_server.url}/review/login", data={"username": EXPERT[0], "password": EXPERT[1]})
    ).status_code == 429
    assert can_read_review(login(strict_server.url, *EXPERT))  # bob at his own desk (127.0.0.1)


def test_throttle_counts_an_account_per_address():
    throttle = LoginThrottle(per_user=2, per_address=100, window_s=60)
    for _ in range(2):
        throttle.failed("bob", "10.0.0.9")
    with pytest.raises(RateLimited):
        throttle.check("bob", "10.0.0.9")
    throttle.check("bob", "10.0.0.1")  # another address is not locked out


def test_unknown_names_cost_as_much_as_known_ones(live_server):
    def median_seconds(name: str) -> float:
        times = []
        for _ in range(4):  # under the per-account limit: every answer is a real password check
            start = time.perf_counter()
            httpx.post(f"{live_server.url}/review/login", data={"username": name, "password": "wrong-password"})
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    known, unknown = median_seconds(EXPERT[0]), median_seconds("nobody-here")
    assert max(known, unknown) / min(known, unknown) < 2, (known, unknown)


def test_a_login_with_a_nul_in_the_name_is_refused_plainly(live_server):
    answer = httpx.post(f"{live_server.url}/review/login", data={"username": "bob\x00", "password": "bob-password"})
    assert answer.status_code == 400  # wrong credentials, not a database error (PostgreSQL refuses NUL)
