"""Admin → Label Studio: make a token for a Label Studio, see connected projects and annotation events.

The rules are labeling/label_studio.py's; this page shows the ML backend URL and the token to paste into
Label Studio's Settings → Model, once.
"""

from __future__ import annotations

import gradio as gr
import pandas as pd

from context import Context
from labeling import label_studio, review
from ui import readable
from ui.auth import require_role_in_handler
from ui.markdown import html_text
from ui.refusals import shows_refusals
from ui.wiring import wire

TOKEN_COLUMNS = ["name", "Label Studio", "starts with", "made by", "made", "last used", "status"]
PROJECT_COLUMNS = ["project", "image field", "choices tag", "tasks", "annotations", "last setup"]
EVENT_COLUMNS = ["received", "project", "annotation", "task", "annotator", "label", "what Loupe did"]


def tokens_table(connections: label_studio.Connections) -> pd.DataFrame:
    """Every token, live or revoked."""
    rows = [
        [
            t.name,
            t.origin,
            t.prefix + "…",
            t.created_by or "",
            readable.when(t.created_at),
            readable.when(t.last_used_at) if t.last_used_at else "never",
            f"revoked {readable.when(t.revoked_at)}" if t.revoked_at else "live",
        ]
        for t in connections.tokens
    ]
    return pd.DataFrame(rows, columns=TOKEN_COLUMNS)


def projects_table(connections: label_studio.Connections) -> pd.DataFrame:
    """Every connected project with its linked tasks and annotation events."""
    rows = [
        [p.project_uid, p.image_key, p.from_name, tasks, events, readable.when(p.setup_at)]
        for p, tasks, events in connections.projects
    ]
    return pd.DataFrame(rows, columns=PROJECT_COLUMNS)


def events_table(connections: label_studio.Connections) -> pd.DataFrame:
    """The newest annotation events and what each became."""
    rows = [
        [readable.when(e.received_at), e.project_uid, e.annotation_id, e.task_id, e.annotator, e.label or "", e.outcome]
        for e in connections.events
    ]
    return pd.DataFrame(rows, columns=EVENT_COLUMNS)


def connect_instructions(backend_url: str, token: str) -> str:
    """What to paste into Label Studio, in Markdown."""
    return (
        "**Copy the token now; Loupe keeps only its hash.** In Label Studio, open the project's "
        "Settings → Model → Connect Model and enter:\n\n"
        f"- Backend URL: `{backend_url}`\n"
        "- Authentication: Basic Authentication, user `loupe`, password:\n\n"
        f"```\n{token}\n```\n\n"
        "Label Studio's Data Manager then sorts tasks by the prediction score: how likely each task's "
        "label is wrong. Annotations come back to Loupe as decisions by their annotator."
    )


def backend_url(request: gr.Request) -> str:
    """The ML backend URL of this Loupe as the admin's browser reaches it."""
    headers = request.headers or {}
    scheme = headers.get("x-forwarded-proto") or "http"
    return f"{scheme}://{headers.get('host', 'localhost:7860')}/api/label-studio"


def make_handlers(context: Context):
    """The Label Studio section's handlers; each returns {output name: value}."""

    def refresh(request: gr.Request) -> dict:
        admin = require_role_in_handler(context, request, review.ADMIN)
        connections = label_studio.connections(context, admin)
        live = [t.name for t in connections.tokens if t.revoked_at is None]
        return {
            "tokens": tokens_table(connections),
            "projects": projects_table(connections),
            "events": events_table(connections),
            "chosen": gr.Dropdown(choices=live, value=None),
        }

    def make(request: gr.Request, name: str, url: str) -> dict:
        admin = require_role_in_handler(context, request, review.ADMIN)
        made = label_studio.make_token(context, admin, name, url)
        backend = backend_url(request)
        gr.Info(html_text(f"Token {made.row.name} made for {made.row.origin}."))
        return {**refresh(request), "shown": connect_instructions(backend, made.token), "name": ""}

    def revoke(request: gr.Request, name: str | None) -> dict:
        admin = require_role_in_handler(context, request, review.ADMIN)
        label_studio.revoke_token(context, admin, name or "")
        gr.Info(html_text(f"Token {name} revoked; Label Studio's next call with it is refused."))
        return {**refresh(request), "shown": ""}

    return tuple(shows_refusals(handler) for handler in (refresh, make, revoke))


def build_label_studio_section(context: Context) -> dict:
    """The Label Studio section's components and wiring; returns the handler that fills it."""
    refresh, make, revoke = make_handlers(context)
    gr.Markdown(
        "Loupe answers Label Studio's ML backend protocol at `/api/label-studio`. Make a token for your "
        "Label Studio: Loupe fetches task images and annotations from that address only (even a private "
        "one), with the access token Label Studio gives its backends."
    )
    with gr.Row():
        name = gr.Textbox(label="Token name", max_lines=1, elem_id="ls-token-name")
        url = gr.Textbox(label="Label Studio URL", placeholder="http://localhost:8080", max_lines=1)
    make_button = gr.Button("Make token", elem_id="ls-make-token")
    shown = gr.Markdown(elem_id="ls-token-shown")
    tokens = gr.Dataframe(headers=TOKEN_COLUMNS, interactive=False, elem_id="ls-tokens")
    with gr.Row():
        chosen = gr.Dropdown([], label="Token", allow_custom_value=True)
        revoke_button = gr.Button("Revoke", variant="stop")
    gr.Markdown("### Connected projects")
    projects = gr.Dataframe(headers=PROJECT_COLUMNS, interactive=False, elem_id="ls-projects")
    gr.Markdown("### Annotations received")
    events = gr.Dataframe(headers=EVENT_COLUMNS, interactive=False, elem_id="ls-events")

    named = {"tokens": tokens, "projects": projects, "events": events, "chosen": chosen}
    fill, outputs = wire(refresh, named)
    make_fn, make_outputs = wire(make, {**named, "shown": shown, "name": name})
    revoke_fn, revoke_outputs = wire(revoke, {**named, "shown": shown})
    make_button.click(make_fn, inputs=[name, url], outputs=make_outputs, api_name="admin_make_ls_token")
    revoke_button.click(revoke_fn, inputs=[chosen], outputs=revoke_outputs, api_name="admin_revoke_ls_token")
    return {"fn": fill, "outputs": outputs}
