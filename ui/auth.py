"""Who is asking: the login check for /review and the role checks every handler makes."""

from __future__ import annotations

import gradio as gr
from fastapi import HTTPException

from context import Context
from db.users import UserRow, authenticate, get_user
from limits import LoginThrottle, RateLimited


class PermissionDenied(Exception):
    """The user may not do this; the message says what role is needed."""


def make_login_check(context: Context, logins: LoginThrottle):
    """The (username, password) -> bool function Gradio's login form calls; too many failures answer 429.

    Gradio gives this function no address; the app's middleware counts failures per address.
    """

    def check_login(username: str, password: str) -> bool:
        try:
            logins.check(username, None)
        except RateLimited as limited:
            raise HTTPException(429, str(limited), headers={"Retry-After": str(limited.retry_after_s)}) from None
        if authenticate(context.database, username, password) is None:
            logins.failed(username, None)
            return False
        logins.succeeded(username)
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
