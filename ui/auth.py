"""Who is asking: the login check for /review, and the user behind a Gradio request.

What each role may do is labeling/review.py's rule (require_role); this module only finds the user.
"""

from __future__ import annotations

import gradio as gr
from fastapi.concurrency import run_in_threadpool

from context import Context
from db.users import UserRow, authenticate, get_user
from labeling.review import require_role
from limits import LoginThrottle, client_address


def make_login_check(context: Context, logins: LoginThrottle):
    """The async (username, password) -> bool function Gradio's login route calls; too many failures answer 429.

    Every path that reaches Gradio's login handler (`/review/login`, `/review/login/`, …) comes through
    here, so the limits live here rather than on a path: per account from one address, and per address.
    The address comes from api/guard.py's middleware (Gradio passes no request). scrypt runs in a thread.
    The RateLimited refusal is answered by api/refusals.py's handler, installed on the Gradio app.
    """

    async def check_login(username: str, password: str) -> bool:
        address = client_address.get()
        logins.check(username, address)
        user = await run_in_threadpool(authenticate, context.database, username, password)
        if user is None:
            logins.failed(username, address)
            return False
        logins.succeeded(username, address)
        return True

    return check_login


def request_user(context: Context, request: gr.Request | None) -> UserRow | None:
    """The account behind a Gradio request (None when nobody is logged in)."""
    username = getattr(request, "username", None)
    return get_user(context.database, username) if username else None


def require_role_in_handler(context: Context, request: gr.Request, role: str) -> UserRow:
    """The logged-in user if they hold role; else PermissionDenied (shown by ui/refusals.py)."""
    return require_role(request_user(context, request), role)
