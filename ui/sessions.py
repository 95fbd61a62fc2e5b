"""Gradio's login sessions for /review, kept in the database and checked on every request.

Gradio's mounted app stores `token -> user name` in a plain dict (`app.tokens`) that every route reads
through `get_current_user`. Replacing that dict with this mapping puts Loupe's session rules under
every Gradio route at once — events, the queue, uploads, file downloads, config, logout — with no
route of its own: a password reset, a disabled account or a logout ends the session on the next
request, and an idle session expires.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from db.engine import Database
from db.sessions import (
    SessionLimits,
    end_session,
    open_session,
    session_keys,
    session_user,
    token_hash,
)

# Gradio's logout walks keys() and deletes the matching ones; keys are token hashes, marked so that
# a key is never hashed again (raw tokens from secrets.token_urlsafe never contain ':').
KEY_PREFIX = "sha256:"


def _key(token_or_key: str) -> str:
    return token_or_key[len(KEY_PREFIX) :] if token_or_key.startswith(KEY_PREFIX) else token_hash(token_or_key)


class SessionTokens(MutableMapping):
    """A MutableMapping[token, user name] over the web_sessions table, in place of Gradio's dict."""

    def __init__(self, database: Database, limits: SessionLimits):
        self.database, self.limits = database, limits

    def __getitem__(self, token: str) -> str:
        user = self.get(token)
        if user is None:
            raise KeyError("no such session")
        return user

    def get(self, token, default=None):
        """The user of a valid session, else default (ended sessions are deleted as they are found)."""
        if not isinstance(token, str) or not token:
            return default
        return session_user(self.database, _key(token), self.limits) or default

    def __contains__(self, token) -> bool:
        return self.get(token) is not None

    def __setitem__(self, token: str, user_name: str) -> None:
        open_session(self.database, token, user_name)

    def __delitem__(self, token: str) -> None:
        end_session(self.database, _key(token))

    def __iter__(self) -> Iterator[str]:
        return iter([KEY_PREFIX + key for key in session_keys(self.database)])

    def __len__(self) -> int:
        return len(session_keys(self.database))
