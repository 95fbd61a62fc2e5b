"""Admin → Users: add an expert or admin, reset a password, disable or enable an account."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from context import Context
from db import users as user_db
from db.decisions import reviewer_activity
from labeling import review
from ui import readable
from ui.auth import require_role_in_handler
from ui.markdown import html_text
from ui.refusals import shows_refusals
from ui.wiring import wire

USER_COLUMNS = ["name", "role", "status", "decisions", "last decision"]


def users_table(context: Context) -> pd.DataFrame:
    """Every account with its activity."""
    activity = {a.user_name: a for a in reviewer_activity(context.database)}
    rows = []
    for user in user_db.list_users(context.database):
        done = activity.get(user.name)
        rows.append(
            [
                user.name,
                user.role,
                "disabled" if user.disabled else "enabled",
                done.decisions if done else 0,
                readable.when(done.last_at) if done and done.last_at else "",
            ]
        )
    return pd.DataFrame(rows, columns=USER_COLUMNS)


def make_handlers(context: Context):
    """The Users section's handlers, bound to this Loupe instance; each returns {output name: value}."""

    def refresh(request: gr.Request) -> dict:
        require_role_in_handler(context, request, review.ADMIN)
        names = [u.name for u in user_db.list_users(context.database)]
        return {"table": users_table(context), "chosen": gr.Dropdown(choices=names, value=None), "new_password": ""}

    def guarded(action, done: str):
        def handler(request: gr.Request, *values) -> dict:  # request first: Gradio injects it only there
            admin = require_role_in_handler(context, request, review.ADMIN)
            name = action(*values)  # UserError says what is wrong with the name, role or password
            gr.Info(html_text(done.format(name=name, admin=admin.name)))
            return refresh(request)

        return handler

    def add(name: str, role: str, password: str) -> str:
        return user_db.add_user(context.database, name or "", role, password or "").name

    def reset(name: str | None, password: str) -> str:
        user_db.set_password(context.database, name or "", password or "")
        return name

    def disable(name: str | None, _password: str) -> str:
        user_db.set_disabled(context.database, name or "", True)
        return name

    def enable(name: str | None, _password: str) -> str:
        user_db.set_disabled(context.database, name or "", False)
        return name

    handlers = (
        refresh,
        guarded(add, "Account {name} added by {admin}."),
        guarded(reset, "Password of {name} reset by {admin}."),
        guarded(disable, "{name} disabled by {admin}."),
        guarded(enable, "{name} enabled by {admin}."),
    )
    return tuple(shows_refusals(handler) for handler in handlers)


def build_users_section(context: Context) -> dict:
    """The Users section's components and wiring; returns the handler that fills it."""
    refresh, add, reset, disable, enable = make_handlers(context)
    table = gr.Dataframe(
        headers=USER_COLUMNS,
        datatype=readable.column_types(USER_COLUMNS, ("last decision",)),
        interactive=False,
        elem_id="users-table",
    )
    gr.Markdown("### Add an account")
    with gr.Row():
        new_name = gr.Textbox(label="Name", max_lines=1, elem_id="new-user-name")
        new_role = gr.Radio(list(user_db.ROLES), value="expert", label="Role")
        new_password = gr.Textbox(label="Password (8+ characters)", type="password", max_lines=1)
    add_button = gr.Button("Add account", elem_id="add-user")
    gr.Markdown("### Change an account")
    with gr.Row():
        chosen = gr.Dropdown([], label="Account", allow_custom_value=True, elem_id="user-choice")
        password = gr.Textbox(label="New password (for a reset)", type="password", max_lines=1)
    with gr.Row():
        reset_button = gr.Button("Reset password")
        disable_button = gr.Button("Disable", variant="stop")
        enable_button = gr.Button("Enable")

    named = {"table": table, "chosen": chosen, "new_password": new_password}
    fill, outputs = wire(refresh, named)
    add_fn, _ = wire(add, named)
    reset_fn, _ = wire(reset, named)
    disable_fn, _ = wire(disable, named)
    enable_fn, _ = wire(enable, named)
    add_button.click(add_fn, inputs=[new_name, new_role, new_password], outputs=outputs, api_name="add_user")
    reset_button.click(reset_fn, inputs=[chosen, password], outputs=outputs, api_name="reset_password")
    disable_button.click(disable_fn, inputs=[chosen, password], outputs=outputs, api_name="disable_user")
    enable_button.click(enable_fn, inputs=[chosen, password], outputs=outputs, api_name="enable_user")
    return {"fn": fill, "outputs": outputs}
