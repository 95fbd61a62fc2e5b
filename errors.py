"""Every refusal Loupe explains to a person: a named LoupeError with its HTTP status and a sentence.

Code below the edges raises these and catches none of them; the edges translate them in one place
each: api/refusals.py for HTTP (REST routes and Gradio's own routes), ui/refusals.py for Gradio
events, cli.py for the command line.
"""

from __future__ import annotations


class LoupeError(Exception):
    """A request Loupe refuses, with a sentence saying why (never a stack trace for the user)."""

    status = 400  # the HTTP status the web edge answers with

    @property
    def message(self) -> str:
        """The sentence a person reads."""
        return str(self)

    def headers(self) -> dict[str, str]:
        """HTTP headers that go with the answer (Retry-After for a rate limit)."""
        return {}


class NotAuthenticated(LoupeError):
    """Nobody is logged in (or the login is wrong)."""

    status = 401


class PermissionDenied(LoupeError):
    """The user may not do this; the message says what role is needed."""

    status = 403


class NotFound(LoupeError):
    """The thing asked for does not exist."""

    status = 404


class Conflict(LoupeError):
    """The request no longer fits the state it was made on (someone else changed it first)."""

    status = 409


class TooManyRequests(LoupeError):
    """Too many requests from one client; retry_after_s says when to come back."""

    status = 429

    def __init__(self, message: str, retry_after_s: int):
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        """Retry-After, in whole seconds."""
        return {"Retry-After": str(self.retry_after_s)}


class Unavailable(LoupeError):
    """Loupe cannot answer now but will later (the database is busy, no model is trained yet)."""

    status = 503
