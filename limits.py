"""Rate limits kept in this process's memory: login failures per user and per address, requests per address.

Each app process keeps its own counts (two processes behind one address each allow the limit); that
bounds password guessing and floods well enough without a shared store.
"""

from __future__ import annotations

import threading
import time
from collections import deque

from errors import LoupeError


class RateLimited(LoupeError):
    """Too many attempts or requests; retry_after_s says when to try again."""

    def __init__(self, message: str, retry_after_s: float):
        super().__init__(message)
        self.retry_after_s = max(1, int(retry_after_s + 0.999))


class LoginThrottle:
    """Refuses logins for a user or from an address after too many recent failures (sliding window)."""

    def __init__(self, per_user: int = 5, per_address: int = 20, window_s: float = 300.0):
        self.per_user, self.per_address, self.window_s = per_user, per_address, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.setdefault(key, deque())
        while times and now - times[0] > self.window_s:
            times.popleft()
        return times

    def check(self, user: str | None, address: str | None) -> None:
        """RateLimited when this user or address failed too often lately; else nothing."""
        now = time.monotonic()
        with self._lock:
            for key, limit, what in (
                (f"user:{user}", self.per_user, "this account"),
                (f"address:{address}", self.per_address, "your address"),
            ):
                if key.endswith(":None") or limit <= 0:
                    continue
                times = self._recent(key, now)
                if len(times) >= limit:
                    wait = self.window_s - (now - times[0])
                    raise RateLimited(f"too many failed logins for {what}; try again in {int(wait) + 1} s", wait)

    def failed(self, user: str | None, address: str | None) -> None:
        """Count one failed login."""
        now = time.monotonic()
        with self._lock:
            for key in (f"user:{user}", f"address:{address}"):
                if not key.endswith(":None"):
                    self._recent(key, now).append(now)

    def succeeded(self, user: str) -> None:
        """A right password clears the user's failures (the address keeps its count)."""
        with self._lock:
            self._failures.pop(f"user:{user}", None)


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
