"""The Review tab: one image at a time from the queue, most likely wrong first, with keyboard shortcuts.

Handlers call labeling/review.py, the same service as the review API and the CLI, so every edge follows
the same rules; refusals are shown by ui/refusals.py.
"""

from __future__ import annotations

import gradio as gr

from context import Context
from db.labels import list_label_names
from db.queue import QueueFilters, QueueItem
from labeling import review
from ui.auth import request_user
from ui.markdown import md_text, short_text
from ui.refusals import shows_refusals
from ui.wiring import wire

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
    """The Review tab's handlers, bound to this Loupe instance; each returns {output name: value}."""

    def progress_line(user, session: dict, filters: QueueFilters) -> str:
        page = review.queue_page(context, user, filters, limit=1)
        return (
            f"Reviewed this session: **{session['reviewed']}** · wrong labels found: **{session['errors']}** · "
            f"left in this filter: **{page.unreviewed}** of {page.total}"
        )

    def show_next(session: dict, label, predicted, split, unlabeled, request: gr.Request) -> dict:
        user = request_user(context, request)
        filters = _filters(label, predicted, split, unlabeled)
        item = review.next_item(context, user, filters, skip=tuple(session["skipped"]))
        labels = list_label_names(context.database)
        choices = [ANY, *labels]
        shown = {
            "session": session,
            "progress": progress_line(user, session, filters),
            "label_filter": gr.Dropdown(choices=choices),
            "predicted_filter": gr.Dropdown(choices=choices),
            "hotkeys": [
                gr.Button(value=f"{i + 1}: {short_text(labels[i])}", visible=True)
                if i < len(labels)
                else gr.Button(visible=False)
                for i in range(HOTKEY_LABELS)
            ],
        }
        if item is None:
            message = (
                "**Nothing left to review here.** Change the filter, or score new images (`loupe score`)."
                if review.any_scores(context)
                else "**No scores yet.** An admin runs `loupe score` to rank the images."
            )
            return {**shown, "image": None, "facts": message, "current": None, "new_label": gr.Dropdown(choices=labels)}
        current = {"image_id": item.image_id, "last_decision_id": item.last_decision_id, "labels": labels}
        return {
            **shown,
            "image": str(context.store.absolute(item.stored_path)),
            "facts": describe(item),
            "current": current,
            "new_label": gr.Dropdown(choices=labels, value=None),
        }

    def decide(action: str, current: dict | None, new_label: str | None, session: dict, request: gr.Request) -> dict:
        if not current:
            raise gr.Error("There is no image to decide; press Next.")
        review.decide(
            context,
            request_user(context, request),
            current["image_id"],
            action,
            expected_last_id=current["last_decision_id"],
            new_label=new_label,
        )
        found = review.ACTIONS[action].finds_error
        return {"session": {**session, "reviewed": session["reviewed"] + 1, "errors": session["errors"] + found}}

    def relabel_nth(number: int, current: dict | None, session: dict, request: gr.Request) -> dict:
        labels = (current or {}).get("labels", [])
        if number > len(labels):
            raise gr.Error(f"There is no class number {number}.")
        return decide("relabel", current, labels[number - 1], session, request)

    def skip(current: dict | None, session: dict, request: gr.Request) -> dict:
        review.skip(context, request_user(context, request))
        skipped = session["skipped"] + ([current["image_id"]] if current else [])
        return {"session": {**session, "skipped": skipped}}

    def undo(session: dict, request: gr.Request) -> dict:
        review.undo(context, request_user(context, request))
        gr.Info("Undone: the image is back in the queue.")
        return {"session": {**session, "reviewed": max(0, session["reviewed"] - 1), "skipped": []}}

    return tuple(shows_refusals(handler) for handler in (show_next, decide, relabel_nth, skip, undo))


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
    shown = {
        "image": image,
        "facts": facts,
        "current": current,
        "session": session,
        "progress": progress,
        "new_label": new_label,
        "label_filter": label_filter,
        "predicted_filter": predicted_filter,
        **{f"hotkey_{i}": button for i, button in enumerate(hotkeys)},
    }
    show_fn, show_outputs = wire(spread_hotkeys(show_next), shown)
    show = {"fn": show_fn, "inputs": [session, *filters], "outputs": show_outputs, "api_visibility": "private"}

    tab.select(**show)
    next_button.click(**show)
    for control in filters:
        control.change(**show)

    def on_click(button, handler, inputs):
        event, outputs = wire(handler, {"session": session})
        button.click(event, inputs=inputs, outputs=outputs, api_visibility="private").then(**show)

    on_click(keep, decide_action(decide, "keep"), [current, session])
    on_click(delete, decide_action(decide, "delete"), [current, session])
    on_click(relabel, relabel_action(decide), [current, new_label, session])
    for number, button in enumerate(hotkeys, start=1):
        on_click(button, nth_action(relabel_nth, number), [current, session])
    on_click(skip_button, skip, [current, session])
    on_click(undo_button, undo, [session])
    return show


def spread_hotkeys(show_next):
    """show_next with its list of hotkey buttons given one output name each (hotkey_0 … hotkey_8)."""

    def handler(session: dict, label, predicted, split, unlabeled, request: gr.Request) -> dict:
        shown = show_next(session, label, predicted, split, unlabeled, request)
        buttons = shown.pop("hotkeys")
        return {**shown, **{f"hotkey_{i}": button for i, button in enumerate(buttons)}}

    return handler


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
