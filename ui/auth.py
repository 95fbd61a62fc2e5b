"""Who is asking: the login check for /review and the role checks every handler makes."""

from __future__ import annotations

import gradio as gr
from fastapi import HTTPException
from fastapi.concurrency import run_in_threadpool

from context import Context
from db.users import UserRow, authenticate, get_user
from limits import LoginThrottle, RateLimited, client_address


class PermissionDenied(Exception):
    """The user may not do this; the message says what role is needed."""


def make_login_check(context: Context, logins: LoginThrottle):
    """The async (username, password) -> bool function Gradio's login route calls; too many failures answer 429.

    Every path that reaches Gradio's login handler (`/review/login`, `/review/login/`, …) comes through
    here, so the limits live here rather than on a path: per account from one address, and per address.
    The address comes from api/guard.py's middleware (Gradio passes no request). scrypt runs in a thread.
    """

    async def check_login(username: str, password: str) -> bool:
        address = client_address.get()
        try:
            logins.check(username, address)
        except RateLimited as limited:
            raise HTTPException(429, str(limited), headers={"Retry-After": str(limited.retry_after_s)}) from None
        user = await run_in_threadpool(authenticate, context.database, username, password)
        if user is None:
            logins.failed(username, address)
            return False
        logins.succeeded(username, address)
        return True

    return check_login


def require_role(context: Context, username: str | None, role: str) -> UserRow:
    """The enabled user, if they hold role (admins hold every role); else PermissionDenied."""
    user = get_user(context.database, username) if username else None
    if user is None or user.disabled:
        raise PermissionDenied("please log in first")
    if role == "admin" and user.role != "admin":
        raise PermissionDenied("this needs the admin role")
    return user


def require_role_in_handler(context: Context, request: gr.Request, role: str) -> UserRow:
    """require_role for a Gradio handler: a refusal becomes a gr.Error the user sees."""
    try:
        return require_role(context, getattr(request, "username", None), role)
    except PermissionDenied as denied:
        raise gr.Error(str(denied)) from None
