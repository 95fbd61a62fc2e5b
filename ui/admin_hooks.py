"""Admin → Hooks: register URLs that receive signed event POSTs, see each secret once, remove hooks, and follow
the deliveries (failures highlighted). Every rule is training/hooks.py's; this page shows and asks."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from context import Context
from db.hooks import FAILED, PENDING, DeliveryRow, HookRow
from labeling import review
from training import hooks
from ui import readable
from ui.admin_audit import WHOLE_NUMBER
from ui.auth import require_role_in_handler
from ui.markdown import html_text, md_text
from ui.refusals import shows_refusals
from ui.wiring import wire

HOOK_COLUMNS = ["id", "url", "events", "private addresses", "added by", "added"]
DELIVERY_COLUMNS = ["id", "hook", "event", "status", "attempts", "last answer", "last error", "next try", "created"]
DELIVERIES_SHOWN = 100
FAILED_STYLE = "background-color: #fde2e1; color: #8a1c12; font-weight: 600"
PRIVATE_WARNING = (
    "**Allow private addresses** lets this hook POST to loopback and private-network addresses (127.0.0.1, "
    "10.x, 192.168.x …) that Loupe otherwise refuses. Tick it only for a receiver you run inside this network: "
    "the server then POSTs to whatever internal service that address reaches."
)
INTRO = (
    "Each registered URL receives a JSON POST when a chosen event happens: **version.promoted** (by the gate, "
    "an admin or the command line, rollbacks included) or **run.failed**. Every POST is signed with the hook's "
    "secret (header `X-Loupe-Signature`, see the README's *Event hooks*); a failed POST is retried with backoff, "
    f"{hooks.MAX_ATTEMPTS} attempts in all. Sending happens in the background: the loop never waits for a receiver."
)


def hooks_table(found: list[HookRow]) -> pd.DataFrame:
    """The registered hooks, oldest first."""
    rows = [
        [
            hook.id,
            hook.url,
            ", ".join(hook.events),
            "allowed" if hook.allow_private else "refused",
            hook.created_by or "command line",
            readable.when(hook.created_at),
        ]
        for hook in found
    ]
    return pd.DataFrame(rows, columns=HOOK_COLUMNS)


def delivery_status(delivery: DeliveryRow) -> str:
    """The status as a reader needs it: a pending delivery that already failed once says it is retrying."""
    if delivery.status == PENDING and delivery.attempts:
        return "retrying"
    return delivery.status


def deliveries_table(found: list[DeliveryRow]):
    """The newest deliveries with failed ones highlighted (a pandas Styler the Dataframe shows)."""
    rows = [
        [
            delivery.id,
            f"{delivery.hook_id}: {delivery.url}",
            delivery.event,
            delivery_status(delivery),
            delivery.attempts,
            f"HTTP {delivery.last_status_code}" if delivery.last_status_code else "",
            delivery.last_error or "",
            readable.when(delivery.next_attempt_at) if delivery.next_attempt_at else "",
            readable.when(delivery.created_at),
        ]
        for delivery in found
    ]
    table = pd.DataFrame(rows, columns=DELIVERY_COLUMNS)
    return table.style.apply(lambda row: [FAILED_STYLE if row["status"] == FAILED else "" for _ in row], axis=1)


def deliveries_note(found: list[DeliveryRow]) -> str:
    """How many of the deliveries shown failed, or that none did."""
    if not found:
        return "No deliveries yet: events are sent once a hook is registered and a version is promoted or a run fails."
    failed = sum(delivery.status == FAILED for delivery in found)
    shown = f"Deliveries shown: {readable.count(len(found))}, newest first; failed: "
    if not failed:
        return shown + "none."
    return shown + f"**{readable.count(failed)}** (highlighted: the last error says why)."


def chosen_hook(value) -> int:
    """The hook chosen in the Dropdown (its id), or a gr.Error asking for one."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise gr.Error("Choose a hook to remove first.")
    if not WHOLE_NUMBER.fullmatch(text):
        raise gr.Error(html_text(f"{text!r} is not a hook's id."))
    return int(text)


def make_handlers(context: Context) -> dict:
    """The Hooks section's handlers by name, bound to this Loupe instance; each returns {output name: value}."""

    def listing(user) -> dict:
        found = hooks.list_hooks(context, user)
        deliveries = hooks.recent_deliveries(context, user, DELIVERIES_SHOWN)
        return {
            "hooks": hooks_table(found),
            "chosen": gr.Dropdown(choices=[(f"{hook.id}: {hook.url}", hook.id) for hook in found], value=None),
            "deliveries": deliveries_table(deliveries),
            "deliveries_note": deliveries_note(deliveries),
        }

    def refresh(request: gr.Request) -> dict:
        return listing(require_role_in_handler(context, request, review.ADMIN))

    def add(url, events, allow_private, request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        # BadHook says what is wrong with the URL or the events; nothing is stored then.
        added = hooks.add_hook(context, user, url or "", list(events or []), allow_private=bool(allow_private))
        gr.Info(html_text(f"Hook {added.hook.id} added by {user.name}. Copy its secret now: it is shown only once."))
        return {
            **listing(user),
            "secret": added.secret,
            "secret_note": f"The secret of hook {added.hook.id} ({md_text(added.hook.url)}), shown **only this once**: "
            "the receiver checks each POST's signature with it.",
            "url": "",
        }

    def remove(chosen, request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        removed = hooks.remove_hook(context, user, chosen_hook(chosen))  # NotFound when it is gone already
        gr.Info(html_text(f"Hook {removed.id} ({removed.url}) removed by {user.name}."))
        return {**listing(user), "secret": "", "secret_note": ""}

    handlers = {"refresh": refresh, "add": add, "remove": remove}
    return {name: shows_refusals(handler) for name, handler in handlers.items()}


def build_hooks_section(context: Context) -> dict:
    """The Hooks section's components and wiring; returns the handler that fills it."""
    handlers = make_handlers(context)
    gr.Markdown(f"### Event hooks\n{INTRO}")
    with gr.Row():
        url = gr.Textbox(
            label="Receiver URL", placeholder="https://example.org/loupe-events", max_lines=1,
            max_length=hooks.MAX_URL_CHARS, elem_id="admin-hook-url", scale=3,
        )  # fmt: skip
        events = gr.CheckboxGroup(
            list(hooks.EVENTS), value=list(hooks.EVENTS), label="Events", elem_id="admin-hook-events", scale=2
        )
    with gr.Row():
        allow_private = gr.Checkbox(label="Allow private addresses", elem_id="admin-hook-private", scale=1)
        gr.Markdown(PRIVATE_WARNING)
    add_button = gr.Button("Add the hook", variant="primary", elem_id="admin-add-hook")
    secret_note = gr.Markdown(elem_id="admin-hook-secret-note")
    secret = gr.Textbox(
        label="Secret (shown once)", interactive=False, buttons=["copy"], max_lines=1, elem_id="admin-hook-secret"
    )

    gr.Markdown("### Registered hooks")
    hooks_list = gr.Dataframe(
        headers=HOOK_COLUMNS,
        datatype=readable.column_types(HOOK_COLUMNS, ("added",)),
        interactive=False,
        elem_id="admin-hooks-table",
    )
    with gr.Row():
        # Custom values let scripts pass a hook id through the Gradio API without loading the page first.
        chosen = gr.Dropdown([], label="Hook", allow_custom_value=True, elem_id="admin-hook-choice", scale=3)
        remove_button = gr.Button("Remove the hook", variant="stop", elem_id="admin-remove-hook", scale=1)

    gr.Markdown("### Recent deliveries")
    deliveries_note_ = gr.Markdown(elem_id="admin-hook-deliveries-note")
    deliveries = gr.Dataframe(
        headers=DELIVERY_COLUMNS,
        datatype=readable.column_types(DELIVERY_COLUMNS, ("next try", "created")),
        interactive=False,
        wrap=True,
        column_widths=["5%", "17%", "12%", "8%", "7%", "8%", "25%", "9%", "9%"],
        elem_id="admin-hook-deliveries",
    )
    refresh_button = gr.Button("Refresh", size="sm", elem_id="admin-hooks-refresh")

    named = {
        "url": url,
        "secret": secret,
        "secret_note": secret_note,
        "hooks": hooks_list,
        "chosen": chosen,
        "deliveries": deliveries,
        "deliveries_note": deliveries_note_,
    }
    listed = ("hooks", "chosen", "deliveries", "deliveries_note")

    def event(name, *names):
        return wire(handlers[name], {output: named[output] for output in names})

    fill, outputs = event("refresh", *listed)
    refresh_button.click(fill, outputs=outputs, api_name="admin_hooks")
    add_fn, add_outputs = event("add", *listed, "secret", "secret_note", "url")
    add_button.click(add_fn, inputs=[url, events, allow_private], outputs=add_outputs, api_name="admin_add_hook")
    remove_fn, remove_outputs = event("remove", *listed, "secret", "secret_note")
    remove_button.click(remove_fn, inputs=chosen, outputs=remove_outputs, api_name="admin_remove_hook")
    return {"fn": fill, "outputs": outputs}
