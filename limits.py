"""Rate limits kept in this process's memory: login failures per user and per address, requests per address.

Each app process keeps its own counts (two processes behind one address each allow the limit); that
bounds password guessing and floods well enough without a shared store.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from contextvars import ContextVar

from errors import TooManyRequests

# The address of the client whose request is being handled, set by api/guard.py's middleware for code
# that frameworks call without the request (Gradio's login check).
client_address: ContextVar[str | None] = ContextVar("client_address", default=None)


class RateLimited(TooManyRequests):
    """Too many attempts or requests; retry_after_s says when to try again (whole seconds, at least 1)."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message, max(1, int(retry_after_s + 0.999)))


class LoginThrottle:
    """Refuses logins after too many recent failures (sliding window): per account *from one address*,
    and per address over all accounts.

    Counting an account's failures per address, not over all addresses, means a stranger who types
    wrong passwords for alice locks out only themselves, never alice at her own desk.
    """

    def __init__(self, per_user: int = 5, per_address: int = 20, window_s: float = 300.0):
        self.per_user, self.per_address, self.window_s = per_user, per_address, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    @staticmethod
    def _keys(user: str | None, address: str | None) -> list[tuple[str, str]]:
        keys = []
        if user is not None:
            keys.append((f"user:{user}\0{address}", "this account"))
        if address is not None:
            keys.append((f"address:{address}", "your address"))
        return keys

    def check(self, user: str | None, address: str | None) -> None:
        """RateLimited when this user (from this address) or this address failed too often lately."""
        now = time.monotonic()
        with self._lock:
            for key, what in self._keys(user, address):
                limit = self.per_user if key.startswith("user:") else self.per_address
                if limit <= 0:
                    continue
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = self.window_s - (now - times[0])
                    raise RateLimited(f"too many failed logins for {what}; try again in {int(wait) + 1} s", wait)
            if len(self._failures) > 100_000:  # forget quiet keys so memory stays bounded
                self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}

    def failed(self, user: str | None, address: str | None) -> None:
        """Count one failed login."""
        now = time.monotonic()
        with self._lock:
            for key, _ in self._keys(user, address):
                self._recent(key, now).append(now)

    def succeeded(self, user: str, address: str | None) -> None:
        """A right password clears the account's failures from that address (the address keeps its count)."""
        with self._lock:
            self._failures.pop(f"user:{user}\0{address}", None)


class RequestRate:
    """A token bucket per client address: rate_per_s on average, bursts up to burst. rate 0 turns it off."""

    def __init__(self, rate_per_s: float, burst: int):
        self.rate_per_s, self.burst = rate_per_s, burst
        self._buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, address: str | None) -> None:
        """Spend one request for address; RateLimited when its bucket is empty."""
        if self.rate_per_s <= 0:
            return
        now = time.monotonic()
        key = address or "unknown"
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - last) * self.rate_per_s)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = (1 - tokens) / self.rate_per_s
                raise RateLimited(
                    f"too many requests from your address; slow down to {self.rate_per_s:g} per second", wait
                )
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 100_000:  # forget idle addresses so memory stays bounded
                self._buckets = {k: v for k, v in self._buckets.items() if now - v[1] < 60}
