"""The Review tab: one image at a time from the queue, most likely wrong first, with keyboard shortcuts.

Handlers call the same db/ functions as the review API, so the UI and scripts follow the same rules.
"""

from __future__ import annotations

import gradio as gr

from context import Context
from db import decisions as decision_db
from db.embeddings import score_of
from db.labels import list_label_names
from db.queue import QueueFilters, QueueItem, lease_next, queue_page, release_leases
from labeling.imagecheck import ImageRejected
from labeling.ingest import clean_label
from labeling.scoring import scorer_name
from ui.auth import require_role_in_handler
from ui.markdown import md_text, short_text

HOTKEY_LABELS = 9
ANY = "(any)"
SHORTCUTS = (
    "Keys: **k** keep · **1–9** relabel to that class · **d** delete · **s** skip · **u** undo · "
    "**r** relabel to the class typed in the box"
)
# Small images (the 64 px demo digits) are blown up sharp rather than shown as a speck.
REVIEW_CSS = "#review-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }"
# Clicks the buttons by id; ignores keys typed into text fields.
SHORTCUT_SCRIPT = """
<script>
document.addEventListener("keydown", (event) => {
  const tag = (event.target.tagName || "").toLowerCase();
  if (tag === "input" || tag === "textarea" || event.ctrlKey || event.metaKey || event.altKey) return;
  const ids = {k: "review-keep", d: "review-delete", s: "review-skip", u: "review-undo", r: "review-relabel"};
  let id = ids[event.key];
  if (!id && /^[1-9]$/.test(event.key)) id = "review-relabel-" + event.key;
  const button = id && document.getElementById(id);
  if (button && button.offsetParent !== null) { event.preventDefault(); button.click(); }
});
</script>
"""


def _filters(label: str, predicted: str, split: str, unlabeled: bool) -> QueueFilters:
    def chosen(value):
        return None if value in (None, "", ANY) else value

    return QueueFilters(label=chosen(label), predicted=chosen(predicted), split=chosen(split), unlabeled=unlabeled)


def describe(item: QueueItem) -> str:
    """Why the image is here, in words: its label, what the model sees instead, and the score."""
    top = ", ".join(f"{md_text(label)} {probability:.0%}" for label, probability in item.top[:3])
    if item.label is None:
        why = f"Unlabeled; the model is unsure (score {item.score:.2f}). Top guesses: {top}."
        return f"### Which class is this?\n{why}"
    p_label = next((p for label, p in item.top if label == item.label), None)
    given = f"{p_label:.0%}" if p_label is not None else "under 5%"
    return (
        f"### Labeled **{md_text(item.label)}** · the model says **{md_text(item.predicted_label)}**\n"
        f"Top 3: {top}. A model that never saw this image gives its label {given} "
        f"(score {item.score:.2f}, higher = more likely wrong). File: {md_text(item.original_name)} · {item.split}."
    )


def make_handlers(context: Context):
    """The Review tab's handlers, bound to this Loupe instance."""
    database = context.database

    def progress_line(session: dict, filters: QueueFilters) -> str:
        page = queue_page(database, scorer_name(), filters, limit=1)
        return (
            f"Reviewed this session: **{session['reviewed']}** · wrong labels found: **{session['errors']}** · "
            f"left in this filter: **{page.unreviewed}** of {page.total}"
        )

    def show_next(session: dict, label, predicted, split, unlabeled, request: gr.Request):
        user = require_role_in_handler(context, request, "expert")
        filters = _filters(label, predicted, split, unlabeled)
        item = lease_next(database, scorer_name(), user.id, filters, skip=tuple(session["skipped"]))
        labels = list_label_names(database)
        buttons = [
            gr.Button(value=f"{i + 1}: {short_text(labels[i])}", visible=True)
            if i < len(labels)
            else gr.Button(visible=False)
            for i in range(HOTKEY_LABELS)
        ]
        choices = [ANY, *labels]
        pickers = [gr.Dropdown(choices=choices), gr.Dropdown(choices=choices)]
        if item is None:
            message = (
                "**Nothing left to review here.** Change the filter, or score new images (`server.py score`)."
                if queue_page(database, scorer_name(), QueueFilters(), limit=1).total
                else "**No scores yet.** An admin runs `server.py score` to rank the images."
            )
            return (
                None,
                message,
                None,
                session,
                progress_line(session, filters),
                gr.Dropdown(choices=labels),
                *pickers,
                *buttons,
            )
        current = {"image_id": item.image_id, "last_decision_id": item.last_decision_id, "labels": labels}
        return (
            str(context.store.absolute(item.stored_path)),
            describe(item),
            current,
            session,
            progress_line(session, filters),
            gr.Dropdown(choices=labels, value=None),
            *pickers,
            *buttons,
        )

    def decide(action: str, current: dict | None, new_label: str | None, session: dict, request: gr.Request):
        user = require_role_in_handler(context, request, "expert")
        if not current:
            raise gr.Error("There is no image to decide; press Next.")
        if action == "relabel":
            if not new_label:
                raise gr.Error("Pick or type the new label first.")
            try:
                new_label = clean_label(new_label)
            except ImageRejected as bad:
                raise gr.Error(bad.detail) from None
        try:
            decision_db.decide(
                database,
                current["image_id"],
                user.id,
                action,
                expected_last_id=current["last_decision_id"],
                new_label=new_label,
                model_version=scorer_name(),
                score=score_of(database, scorer_name(), current["image_id"]),
            )
        except decision_db.StaleDecision as stale:
            gr.Warning(f"Not saved: {stale}")
        else:
            session = {
                **session,
                "reviewed": session["reviewed"] + 1,
                "errors": session["errors"] + (action in ("relabel", "delete")),
            }
        release_leases(database, user.id)
        return session

    def relabel_nth(number: int, current: dict | None, session: dict, request: gr.Request):
        labels = (current or {}).get("labels", [])
        if number > len(labels):
            raise gr.Error(f"There is no class number {number}.")
        return decide("relabel", current, labels[number - 1], session, request)

    def skip(current: dict | None, session: dict, request: gr.Request):
        user = require_role_in_handler(context, request, "expert")
        release_leases(database, user.id)
        skipped = session["skipped"] + ([current["image_id"]] if current else [])
        return {**session, "skipped": skipped}

    def undo(session: dict, request: gr.Request):
        user = require_role_in_handler(context, request, "expert")
        try:
            decision_db.undo_last(database, user.id)
        except (decision_db.DecisionError, decision_db.StaleDecision) as refused:
            raise gr.Error(str(refused)) from None
        gr.Info("Undone: the image is back in the queue.")
        return {**session, "reviewed": max(0, session["reviewed"] - 1), "skipped": []}

    return show_next, decide, relabel_nth, skip, undo


def build_review_tab(context: Context) -> dict:
    """The Review tab's components and wiring; call inside a gr.Blocks. Returns the event that shows
    the next item, for the page to run on load."""
    show_next, decide, relabel_nth, skip, undo = make_handlers(context)
    with gr.Tab("Review", id="review") as tab:
        session = gr.State({"reviewed": 0, "errors": 0, "skipped": []})
        current = gr.State(None)
        with gr.Row():
            label_filter = gr.Dropdown([ANY], value=ANY, label="Current label", scale=1)
            predicted_filter = gr.Dropdown([ANY], value=ANY, label="Predicted label", scale=1)
            split_filter = gr.Dropdown([ANY, "train", "valid"], value=ANY, label="Split", scale=1)
            unlabeled = gr.Checkbox(label="Unlabeled images (active learning)", scale=1)
            next_button = gr.Button("Next", elem_id="review-next", scale=0)
        with gr.Row():
            image = gr.Image(label="Image", type="filepath", interactive=False, height=420, elem_id="review-image")
            with gr.Column():
                facts = gr.Markdown(elem_id="review-facts")
                with gr.Row():
                    keep = gr.Button("Keep (k)", variant="primary", elem_id="review-keep")
                    delete = gr.Button("Delete (d)", variant="stop", elem_id="review-delete")
                    skip_button = gr.Button("Skip (s)", elem_id="review-skip")
                    undo_button = gr.Button("Undo (u)", elem_id="review-undo")
                with gr.Row():
                    new_label = gr.Dropdown(
                        [],
                        label="Relabel to (or type a new class)",
                        allow_custom_value=True,
                        elem_id="review-new-label",
                    )
                    relabel = gr.Button("Relabel (r)", elem_id="review-relabel", scale=0)
                with gr.Row():
                    hotkeys = [
                        gr.Button(f"{i + 1}", size="sm", visible=False, elem_id=f"review-relabel-{i + 1}")
                        for i in range(HOTKEY_LABELS)
                    ]
        progress = gr.Markdown(elem_id="review-progress")
        gr.Markdown(SHORTCUTS)

    filters = [label_filter, predicted_filter, split_filter, unlabeled]
    shown = [image, facts, current, session, progress, new_label, label_filter, predicted_filter, *hotkeys]
    show = {"fn": show_next, "inputs": [session, *filters], "outputs": shown, "api_visibility": "private"}

    tab.select(**show)
    next_button.click(**show)
    for control in filters:
        control.change(**show)
    private = {"outputs": session, "api_visibility": "private"}
    keep.click(decide_action(decide, "keep"), inputs=[current, session], **private).then(**show)
    delete.click(decide_action(decide, "delete"), inputs=[current, session], **private).then(**show)
    relabel.click(relabel_action(decide), inputs=[current, new_label, session], **private).then(**show)
    for number, button in enumerate(hotkeys, start=1):
        button.click(nth_action(relabel_nth, number), inputs=[current, session], **private).then(**show)
    skip_button.click(skip, inputs=[current, session], **private).then(**show)
    undo_button.click(undo, inputs=session, **private).then(**show)
    return show


# Gradio hands a handler the request only when its parameter is annotated gr.Request, so the
# per-button handlers are small named functions rather than lambdas.


def decide_action(decide, action: str):
    """A click handler recording keep or delete on the shown image."""

    def handler(current: dict | None, session: dict, request: gr.Request):
        return decide(action, current, None, session, request)

    return handler


def relabel_action(decide):
    """A click handler relabeling the shown image to the picked or typed class."""

    def handler(current: dict | None, new_label: str | None, session: dict, request: gr.Request):
        return decide("relabel", current, new_label, session, request)

    return handler


def nth_action(relabel_nth, number: int):
    """A click handler relabeling the shown image to the number-th class."""

    def handler(current: dict | None, session: dict, request: gr.Request):
        return relabel_nth(number, current, session, request)

    return handler
