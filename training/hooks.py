"""Event hooks: URLs an admin registers to receive a signed JSON POST when a version is promoted or a run fails.

An event only writes rows (emit: one short transaction, no network), so promotion and training never wait
on a receiver. A pump (deliver_due) sends what is due, from the scheduler's job in every server and from
`loupe worker`, one process at a time (a lease): through classify-url's address guard, without following
redirects, retried with backoff. Delivery is at least once: a receiver tells repeats apart by
X-Loupe-Delivery. The README's "Event hooks" says how a receiver checks the signature.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from context import Context
from db import app_state
from db import hooks as hook_db
from db.hooks import DELIVERED, FAILED, PENDING, DeliveryRow, DueDelivery, HookRow
from db.model_versions import VersionRow
from db.runs import RunRow
from db.schema import utcnow
from db.users import UserRow
from errors import LoupeError, NotFound
from labeling.imports.safe_fetch import InsideAddress, SendFailed, UnsafeUrl, check_url, post_checked

log = logging.getLogger(__name__)

VERSION_PROMOTED = "version.promoted"
RUN_FAILED = "run.failed"
EVENTS = (VERSION_PROMOTED, RUN_FAILED)
# Seconds to wait after failed attempt 1, 2, …; after the last wait one more attempt, then "failed" (about 2 h 40
# min in all): long enough to outlast a receiver's restart or deploy, short enough that Admin shows it the same day.
BACKOFF_S = (30, 120, 480, 1800, 7200)
MAX_ATTEMPTS = len(BACKOFF_S) + 1
RETRIED_STATUSES = (408, 429)  # and every 5xx: the receiver may answer differently later
SEND_TIMEOUT_S = 5.0
MAX_URL_CHARS = 2000
PUMP_LEASE = "hook_deliveries"
PUMP_BATCH = 20  # deliveries per pump pass: at SEND_TIMEOUT_S each, well inside the lease
PUMP_LEASE_S = 4 * PUMP_BATCH * SEND_TIMEOUT_S
FAILURES_SHOWN_DAYS = 7  # Admin → Models & loop mentions failed deliveries of events this recent


class BadHook(LoupeError, ValueError):
    """A hook that cannot be registered, with a sentence saying why."""


@dataclass(frozen=True)
class NewHook:
    """A hook just registered, with its secret: shown this once, never listed again."""

    hook: HookRow
    secret: str


@dataclass(frozen=True)
class Promoter:
    """Who or what promoted a version: the gate after a run, an admin (by name), or the command line."""

    kind: str  # "gate" | "admin" | "cli"
    name: str | None = None


GATE = Promoter("gate")
COMMAND_LINE = Promoter("cli")


def by_admin(user: UserRow) -> Promoter:
    """The admin who promoted, as the event names them."""
    return Promoter("admin", user.name)


def _admin(user: UserRow | None) -> None:
    """PermissionDenied unless user is an admin; None is the command line (whoever runs it holds the machine)."""
    if user is not None:
        from labeling.review import ADMIN, require_role  # the review service is heavy; emit must stay light

        require_role(user, ADMIN)


# --- registering hooks -----------------------------------------------------------------------------


def checked_events(events) -> list[str]:
    """The events asked for, known and in EVENTS' order; all of them when none is named."""
    if events is None:
        return list(EVENTS)
    wanted = [str(event) for event in events]
    unknown = [event for event in wanted if event not in EVENTS]
    if unknown:
        raise BadHook(f"there is no event {unknown[0]!r}; the events are {', '.join(EVENTS)}")
    if not wanted:
        raise BadHook(f"choose at least one event ({', '.join(EVENTS)})")
    return [event for event in EVENTS if event in wanted]


def add_hook(context: Context, admin: UserRow | None, url: str, events=None, allow_private: bool = False) -> NewHook:
    """Register url for events after checking it now (http(s), the host resolves, and unless allow_private,
    to no address inside this network); returns the hook with its secret, which is shown only this once."""
    _admin(admin)
    url = str(url or "").strip()
    if not url:
        raise BadHook("type the URL that should receive the events")
    if len(url) > MAX_URL_CHARS or any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise BadHook(f"a hook's URL is one line of at most {MAX_URL_CHARS:,} characters without spaces")
    if not url.isascii() and not _encodable(url):
        raise BadHook("the URL holds characters that are not text (an unpaired surrogate)")
    chosen = checked_events(events)
    if not isinstance(allow_private, bool):
        raise BadHook("allow_private is true or false")
    try:
        check_url(url, allow_private)
    except UnsafeUrl as refused:
        raise BadHook(f"Loupe will not send events to {url}: {refused.detail}") from None
    same = next((hook for hook in hook_db.list_hooks(context.database) if hook.url == url), None)
    if same is not None:
        raise BadHook(f"hook {same.id} already sends events to {url}; remove it first to register it again")
    secret = secrets.token_urlsafe(32)
    hook = hook_db.add_hook(context.database, url, secret, chosen, allow_private, admin.id if admin else None)
    log.info("hook %d registered for %s (%s)", hook.id, url, ", ".join(chosen))
    return NewHook(hook, secret)


def _encodable(text: str) -> bool:
    """Whether text can be stored and answered as UTF-8 (JSON allows lone surrogates; UTF-8 does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def remove_hook(context: Context, admin: UserRow | None, hook_id: int) -> HookRow:
    """Remove a hook: no new deliveries, and its pending ones fail with that reason (its record stays)."""
    _admin(admin)
    removed = hook_db.disable_hook(context.database, hook_id, "the hook was removed before this was delivered")
    if removed is None:
        raise NotFound(f"there is no hook {hook_id} (or it was removed already)")
    return removed


def list_hooks(context: Context, admin: UserRow | None) -> list[HookRow]:
    """The registered hooks (not removed), oldest first; never their secrets."""
    _admin(admin)
    return hook_db.list_hooks(context.database)


def recent_deliveries(context: Context, admin: UserRow | None, limit: int = 50) -> list[DeliveryRow]:
    """The newest deliveries, newest first, with how each went."""
    _admin(admin)
    return hook_db.recent_deliveries(context.database, limit)


def failure_note(context: Context) -> str | None:
    """One sentence for Admin → Models & loop when deliveries failed lately, else None."""
    failed = hook_db.count_failed_since(context.database, utcnow() - timedelta(days=FAILURES_SHOWN_DAYS))
    if not failed:
        return None
    what = "hook delivery" if failed == 1 else "hook deliveries"
    return f"{failed:,} {what} failed in the last {FAILURES_SHOWN_DAYS} days; see Admin → Hooks."


# --- events ----------------------------------------------------------------------------------------


def emit(context: Context, event: str, data: dict) -> list[int]:
    """Owe event to every hook that asked for it: pending deliveries written in one short transaction, sent
    later by the pump. Never touches the network, and never fails its caller (a promotion or a failed run
    is done whether or not its hooks can be told); returns the deliveries' ids."""
    if event not in EVENTS:
        raise ValueError(f"unknown event {event!r}")
    payload = {"event": event, "at": utcnow().isoformat(), "data": data}
    try:
        return hook_db.add_deliveries(context.database, event, payload)
    except Exception:  # noqa: BLE001 — the loop goes on without its hooks rather than stop for them
        log.exception("the %s event could not be queued for its hooks", event)
        return []


def version_promoted(
    context: Context, version: VersionRow, previous: VersionRow | None, by: Promoter, rollback: bool = False
) -> list[int]:
    """Emit version.promoted: the version, the one it replaces, its metrics, and who or what promoted it."""
    gate = version.metrics.get("gate") or {}
    return emit(
        context,
        VERSION_PROMOTED,
        {
            "version": version.version,
            "previous_version": previous.version if previous else None,
            "run_id": version.run_id,
            "metrics": {
                "error_rate": version.metrics.get("error_rate"),
                "valid_count": version.metrics.get("valid_count"),
                "gate": gate.get("reason"),
            },
            "promoted_by": {"kind": by.kind, "name": by.name},
            "rollback": rollback,
        },
    )


def run_failed(context: Context, run: RunRow) -> list[int]:
    """Emit run.failed: the run, the error's sentence (its first line, not the traceback), its parameters."""
    text = (run.error or "").strip()
    return emit(
        context,
        RUN_FAILED,
        {
            "run_id": run.id,
            "error": text.splitlines()[0] if text else "no reason was recorded",
            "trigger": run.trigger,
            "arch": run.arch,
            "params": run.params,
        },
    )


# --- delivering --------------------------------------------------------------------------------------


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Loupe-Signature value: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" keyed with the secret>."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def body_of(payload: dict) -> bytes:
    """The exact bytes POSTed (and signed) for a delivery's payload."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class Outcome:
    """What one attempt came to: the status to store, the answer's code, and the error sentence."""

    status: str
    status_code: int | None = None
    error: str | None = None


def _send(due: DueDelivery) -> Outcome:
    """POST one delivery once and judge the answer (retry: PENDING; for good: DELIVERED or FAILED)."""
    delivery = due.delivery
    body = body_of(delivery.payload)
    # The clock at sending, not the pump's `now`: receivers compare it with theirs to refuse old replays.
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Loupe-Hooks/1",
        "X-Loupe-Event": delivery.event,
        "X-Loupe-Delivery": str(delivery.id),
        "X-Loupe-Timestamp": timestamp,
        "X-Loupe-Signature": signature(due.secret, timestamp, body),
    }
    try:
        code = post_checked(delivery.url, body, headers, timeout_s=SEND_TIMEOUT_S, allow_private=due.allow_private)
    except InsideAddress as refused:  # the name now points inside this network: retrying would only try again
        return Outcome(FAILED, error=f"not sent: {refused.detail}")
    except UnsafeUrl as refused:  # a name that does not resolve now may resolve later
        return Outcome(PENDING, error=f"not sent: {refused.detail}")
    except SendFailed as failed:
        return Outcome(PENDING, error=str(failed))
    if 200 <= code < 300:
        return Outcome(DELIVERED, code)
    if code in RETRIED_STATUSES or code >= 500:
        return Outcome(PENDING, code, f"the receiver answered HTTP {code}")
    if 300 <= code < 400:
        return Outcome(
            FAILED, code, f"the receiver answered HTTP {code}, a redirect; hooks do not follow redirects, so "
            "register the URL it points to"
        )  # fmt: skip
    return Outcome(
        FAILED, code, f"the receiver answered HTTP {code}, a refusal that retrying will not change "
        f"(only {', '.join(map(str, RETRIED_STATUSES))} and 5xx answers are retried)"
    )  # fmt: skip


def default_holder() -> str:
    """This process, as the pump's lease names it."""
    return f"{socket.gethostname()}:{os.getpid()}"


def deliver_due(context: Context, now: datetime | None = None, holder: str | None = None) -> list[DeliveryRow]:
    """Send the deliveries due at now (default: the clock), unless another process's pump is at it; returns
    them as they stand afterwards. A 2xx delivers; 408, 429, 5xx and no answer are retried BACKOFF_S later,
    MAX_ATTEMPTS times in all; any other answer fails at once (the error says why)."""
    now = now or utcnow()
    holder = holder or default_holder()
    database = context.database
    # A read first: every server's scheduler calls this every few seconds, and nearly always nothing is due.
    if not hook_db.due_deliveries(database, now, 1) or not app_state.try_lease(
        database, PUMP_LEASE, holder, PUMP_LEASE_S
    ):
        return []
    try:
        sent = []
        for due in hook_db.due_deliveries(database, now, PUMP_BATCH):
            attempt = due.delivery.attempts + 1
            if attempt > MAX_ATTEMPTS:  # its last sender died before reporting back
                last = due.delivery.last_error or "no answer was recorded"
                hook_db.record_attempt(
                    database,
                    due.delivery.id,
                    FAILED,
                    status_code=due.delivery.last_status_code,
                    error=f"{last}; gave up after {MAX_ATTEMPTS} attempts",
                )
                continue
            # Counted before sending: a sender that dies mid-way leaves it due again after the backoff.
            if not hook_db.claim_attempt(database, due.delivery.id, due.delivery.attempts, now + _backoff(attempt)):
                continue
            outcome = _send(due)
            if outcome.status == PENDING and attempt >= MAX_ATTEMPTS:
                outcome = Outcome(FAILED, outcome.status_code, f"{outcome.error}; gave up after {attempt} attempts")
            hook_db.record_attempt(
                database,
                due.delivery.id,
                outcome.status,
                status_code=outcome.status_code,
                error=outcome.error,
                next_attempt_at=now + _backoff(attempt) if outcome.status == PENDING else None,
                delivered_at=now if outcome.status == DELIVERED else None,
            )
            if outcome.status == FAILED:
                log.warning("hook delivery %d to %s failed: %s", due.delivery.id, due.delivery.url, outcome.error)
            sent.append(hook_db.get_delivery(database, due.delivery.id))
        return sent
    finally:
        app_state.release_lease(database, PUMP_LEASE, holder)


def _backoff(attempt: int) -> timedelta:
    """The wait after failed attempt number `attempt` (1-based)."""
    return timedelta(seconds=BACKOFF_S[min(attempt, len(BACKOFF_S)) - 1])


class DeliveryPump:
    """deliver_due every interval_s in a daemon thread: for `loupe worker`, which runs no scheduler."""

    def __init__(self, context: Context, interval_s: float = 5.0):
        self.context = context
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loupe-hook-pump", daemon=True)

    def start(self) -> DeliveryPump:
        """Start pumping; returns self."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the pass in progress."""
        self._stop.set()
        self._thread.join(timeout=PUMP_BATCH * SEND_TIMEOUT_S)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                deliver_due(self.context)
            except Exception:  # noqa: BLE001 — a busy database must not end the pump; the next pass tries again
                log.exception("hook deliveries could not be sent")
