"""The Review tab: one image at a time from the queue, most likely wrong first, with keyboard shortcuts
and, beside it, confidently-labeled look-alikes from its given class and from the predicted class, the
admins' guideline for those classes, and the image's history.

Blind checks (audit items, second opinions) come in the same queue. They show no prediction, score, top 3
or look-alikes, and no history (it holds the first expert's answer and the image's score): the expert's
answer must be their own. The same buttons and keys answer them, through review.answer_blind.

Keys cannot mislead: a class named by one character (digits, letters) has that character as its key;
the other classes get 1–9 and 0 (digits no class is named after), each button shows its key, and "/"
opens a box that filters the class buttons by name (Enter picks), so every class is reachable from the
keyboard.
The actions sit on keys no class can have (Enter, Delete, →, Ctrl+Z). A class button sends its class
*name* and the image it was drawn for: a press that arrives after the image changed is refused, never
applied to another image or mapped to another class.

Handlers call labeling/review.py, the same service as the review API and the CLI, so every edge follows
the same rules; refusals are shown by ui/refusals.py.
"""

from __future__ import annotations

import html

import gradio as gr

from context import Context
from db.labels import list_label_names
from db.queue import QueueFilters, QueueItem
from labeling import review
from ui.auth import request_user
from ui.history import build_history_box, empty_history, shown_history
from ui.markdown import md_text, short_text
from ui.readable import count
from ui.refusals import shows_refusals
from ui.wiring import wire

NUMBER_KEYS = "1234567890"  # the tenth class gets 0
ANY = "(any)"
BLIND_EVIDENCE = "No look-alikes on a blind check."
NO_HISTORY = "No image is shown."
CLOSED_HISTORY = "Open this to see every decision on the shown image."
BLIND_HISTORY = "A blind check: its history is not shown, so that earlier answers do not sway yours."
SHORTCUTS = (
    "Keys: **Enter** keep · **Delete** delete · **→** skip · **Ctrl+Z** (⌘Z) undo · "
    "**the key on a class button** relabel to that class (its own class: keep) · "
    "**/** filter the classes by name, **Enter** picks the first match, **Esc** closes"
)
# Small images (the 64 px demo digits) are blown up sharp rather than shown as a speck.
REVIEW_CSS = """
#review-image img { width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated; }
#review-classes .review-class-list { display: flex; flex-wrap: wrap; gap: 6px; margin-top: 6px; }
#review-classes button { border: 1px solid var(--border-color-primary); border-radius: 6px; padding: 4px 10px;
  background: var(--button-secondary-background-fill); cursor: pointer; }
#review-classes button.review-own-class { border-color: var(--color-accent); }
#review-classes kbd { font-weight: 700; border: 1px solid var(--border-color-primary); border-radius: 4px;
  padding: 0 4px; margin-right: 4px; }
#review-classes input.review-class-filter { width: 100%; padding: 4px 8px;
  border: 1px solid var(--border-color-primary); border-radius: 6px; }
#review-evidence .thumbnail-item img, #review-evidence img { image-rendering: pixelated; }
#review-guide-examples img { image-rendering: pixelated; }
"""
# A class button press goes to the server as {label, item}: the class name and the image the buttons
# were drawn for. Delegated on the component's root, which survives re-renders of its value.
CLASS_BUTTONS_JS = """
const box = () => element.querySelector("input.review-class-filter");
const buttons = () => Array.from(element.querySelectorAll("button[data-label]"));
const narrow = () => {
  const text = (box() ? box().value : "").trim().toLowerCase();
  for (const b of buttons()) b.hidden = text !== "" && !b.dataset.label.toLowerCase().includes(text);
};
const best = () => {
  const text = (box() ? box().value : "").trim().toLowerCase();
  const shown = buttons().filter((b) => !b.hidden);
  return shown.find((b) => b.dataset.label.toLowerCase() === text)
    || shown.find((b) => b.dataset.label.toLowerCase().startsWith(text)) || shown[0];
};
element.addEventListener("click", (event) => {
  const button = event.target.closest("button[data-label]");
  if (button && element.contains(button)) trigger("click", {label: button.dataset.label, item: button.dataset.item});
});
element.addEventListener("input", (event) => { if (event.target === box()) narrow(); });
element.addEventListener("keydown", (event) => {
  if (event.target !== box() || event.isComposing) return;
  if (event.key === "Enter") {
    event.preventDefault();
    const button = best();
    if (button) { box().value = ""; narrow(); box().blur(); button.click(); }
  } else if (event.key === "Escape") {
    box().value = ""; narrow(); box().blur();
  }
});
watch("value", () => { if (box() && document.activeElement !== box()) box().value = ""; narrow(); });
"""
# Page-wide keys; ignores keys typed into text fields, and acts only while the Review tab is shown.
SHORTCUT_SCRIPT = """
<script>
window.addEventListener("keydown", (event) => {
  const target = event.target;
  const tag = (target.tagName || "").toLowerCase();
  if (tag === "input" || tag === "textarea" || tag === "select" || target.isContentEditable) return;
  if (event.isComposing) return;
  const byId = (id) => document.getElementById(id);
  const keep = byId("review-keep"), classes = byId("review-classes");
  if (!keep || keep.offsetParent === null || !classes) return;
  let button = null;
  if ((event.ctrlKey || event.metaKey) && !event.altKey && !event.shiftKey && event.key.toLowerCase() === "z") {
    button = byId("review-undo");
  } else if (event.ctrlKey || event.metaKey || event.altKey) {
    return;
  } else if (event.key === "/") {
    const box = classes.querySelector("input.review-class-filter");
    if (box) { event.preventDefault(); box.focus(); }
    return;
  } else {
    const actions = {Enter: "review-keep", Delete: "review-delete", ArrowRight: "review-skip"};
    if (actions[event.key]) button = byId(actions[event.key]);
    else if ([...event.key].length === 1) {
      const key = event.key.toLowerCase();
      const keyed = Array.from(classes.querySelectorAll("button[data-key]"));
      button = keyed.find((b) => b.dataset.key.toLowerCase() === key);
    }
  }
  if (button && button.offsetParent !== null) { event.preventDefault(); event.stopPropagation(); button.click(); }
}, true);
</script>
"""


def class_keys(labels: list[str]) -> list[str | None]:
    """Each class's key, in order. A class named by one character is its own key (digits, letters, "+"),
    unless another class differs from it only in case (Shift or Caps Lock could pick the wrong one); the
    other classes get the digits no class is named after, 1–9 then 0, and None when they run out (the
    filter box reaches those). So a key never stands for a class other than the one it names."""
    folded = [label.lower() for label in labels]
    owns = [len(label) == 1 and len(f) == 1 and folded.count(f) == 1 for label, f in zip(labels, folded, strict=True)]
    taken = {f for f, own in zip(folded, owns, strict=True) if own}
    free = iter([digit for digit in NUMBER_KEYS if digit not in taken])
    return [label if own else next(free, None) for label, own in zip(labels, owns, strict=True)]


def class_buttons(labels: list[str], item: QueueItem | None) -> str:
    """The class buttons for the item shown (each with its key, or none), and the filter box; HTML-escaped."""
    if item is None or not labels:
        return ""
    parts = [
        '<input type="search" class="review-class-filter" aria-label="Filter classes" '
        'placeholder="/ to filter classes by name · Enter picks the first match" autocomplete="off">',
        '<div class="review-class-list">',
    ]
    for label, key in zip(labels, class_keys(labels), strict=True):
        own = label == item.label
        name = html.escape(short_text(label))
        shown = f"<kbd>{html.escape(key)}</kbd>" if key is not None else ""
        if key is None or key != label:
            shown += name
        if own:
            shown += " · keep"
        title = f"press {key}" if key is not None else "press / and type its name"
        parts.append(
            f'<button type="button" data-label="{html.escape(label)}" data-item="{item.image_id}"'
            + (f' data-key="{html.escape(key)}"' if key is not None else "")
            + (' class="review-own-class"' if own else "")
            + f' title="{html.escape(title)}">{shown}</button>'
        )
    parts.append("</div>")
    return "".join(parts)


def _filters(label: str, predicted: str, split: str, unlabeled: bool, selection=None) -> QueueFilters:
    def chosen(value):
        return None if value in (None, "", ANY) else value

    image_ids = tuple(int(i) for i in selection) if selection else None
    return QueueFilters(
        label=chosen(label), predicted=chosen(predicted), split=chosen(split), unlabeled=unlabeled, image_ids=image_ids
    )


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


def describe_blind(item: QueueItem) -> str:
    """A blind check, in words: the question and why nothing else is shown (never the prediction or score)."""
    kind = "an audit item" if item.task_kind == review.AUDIT else "a second opinion"
    question = f"### Is this **{md_text(item.label)}**?" if item.label is not None else "### Which class is this?"
    return (
        f"{question}\nA blind check ({kind}): no prediction is shown, so your answer is your own. "
        "Keep if the label is right, relabel or delete if not."
    )


def guide_text(guides: list[tuple[str, object]]) -> str:
    """The guidelines as Markdown: each class's definition, said literally (an admin's text, not markup)."""
    parts = []
    for heading, guide in guides:
        lines = [md_text(line) for line in guide.definition.splitlines() if line.strip()]
        parts.append(f"**Guideline · {heading}**\n\n" + ("\n\n".join(lines) or "_(no definition, examples only)_"))
    return "\n\n".join(parts)


def neighbour_caption(neighbour) -> str:
    """Why a look-alike is trusted: an expert checked it, or the model gives its label this probability."""
    if neighbour.reviewed:
        return "expert-checked"
    return f"model {neighbour.probability:.0%} sure" if neighbour.probability is not None else ""


def make_handlers(context: Context):
    """The Review tab's handlers, bound to this Loupe instance; each returns {output name: value}."""

    def progress_line(user, session: dict, filters: QueueFilters) -> str:
        page = review.queue_page(context, user, filters, limit=1)
        return (
            f"Reviewed this session: **{session['reviewed']}** · wrong labels found: **{session['errors']}** · "
            f"left in this filter: **{page.unreviewed}** of {page.total}"
        )

    def show_next(
        session: dict, label, predicted, split, unlabeled, request: gr.Request, selection: list | None = None
    ) -> dict:
        user = request_user(context, request)
        filters = _filters(label, predicted, split, unlabeled, selection)
        item = review.next_item(context, user, filters, skip=tuple(session["skipped"]), blind=True)
        labels = list_label_names(context.database)
        choices = [ANY, *labels]
        chosen = len(filters.image_ids) if filters.image_ids else 0
        shown = {
            "session": session,
            "progress": progress_line(user, session, filters),
            "label_filter": gr.Dropdown(choices=choices),
            "predicted_filter": gr.Dropdown(choices=choices),
            "classes": class_buttons(labels, item),
            "selection_note": gr.Markdown(
                f"**Reviewing {count(chosen)} image{'s' if chosen != 1 else ''} chosen on the map**",
                visible=bool(chosen),
            ),
            "clear_selection": gr.Button(visible=bool(chosen)),
        }
        if item is None:
            shown |= {"guide": gr.Markdown(visible=False), "guide_examples": gr.Gallery(value=None, visible=False)}
            message = (
                "**Nothing left to review here.** Change the filter, or score new images (`loupe score`)."
                if review.any_scores(context)
                else "**No scores yet.** An admin runs `loupe score` to rank the images."
            )
            return {**shown, "image": None, "facts": message, "current": None, "new_label": gr.Dropdown(choices=labels)}
        blind = item.task_id is not None
        # The state says whether the item is blind, so later events (look-alikes, history) can hold back.
        current = {
            "image_id": item.image_id,
            "last_decision_id": item.last_decision_id,
            "labels": labels,
            "label": item.label,
            "task_id": item.task_id,
            "task_kind": item.task_kind,
        }
        return {
            **shown,
            **guide_outputs(user, item),
            "image": str(context.store.absolute(item.stored_path)),
            "facts": describe_blind(item) if blind else describe(item),
            "current": current,
            "new_label": gr.Dropdown(choices=labels, value=None),
        }

    def guide_outputs(user, item: QueueItem) -> dict:
        """The guideline of the item's label and, on a ranked item, of the predicted class when it differs."""
        guides = []
        if item.label is not None:
            guides.append((md_text(item.label), review.class_guide(context, user, item.label)))
        if item.predicted_label is not None and item.predicted_label != item.label:
            guide = review.class_guide(context, user, item.predicted_label)
            guides.append((f"{md_text(item.predicted_label)} (predicted)", guide))
        guides = [(heading, guide) for heading, guide in guides if guide is not None]
        if not guides:
            return {
                "guide": gr.Markdown(value="", visible=False),
                "guide_examples": gr.Gallery(value=None, visible=False),
            }
        examples = [
            (str(context.store.absolute(thumb)), guide.label) for _, guide in guides for _, thumb in guide.examples
        ]
        return {
            "guide": gr.Markdown(value=guide_text(guides), visible=True),
            "guide_examples": gr.Gallery(value=examples or None, visible=bool(examples)),
        }

    def decide(action: str, current: dict | None, new_label: str | None, session: dict, request: gr.Request) -> dict:
        if not current:
            raise gr.Error("There is no image to decide; press Next.")
        user = request_user(context, request)
        if current.get("task_id") is not None:
            review.answer_blind(
                context,
                user,
                current["task_id"],
                action,
                expected_last_id=current["last_decision_id"],
                new_label=new_label,
            )
        else:
            review.decide(
                context,
                user,
                current["image_id"],
                action,
                expected_last_id=current["last_decision_id"],
                new_label=new_label,
            )
        return {"session": counted(session, action)}

    def press_class(current: dict | None, session: dict, evt: gr.EventData, request: gr.Request) -> dict:
        """A class button or key: the image is of that class (a keep when it is its label already)."""
        if not current:
            raise gr.Error("There is no image to decide; press Next.")
        pressed = getattr(evt, "_data", None) or {}
        label, item = pressed.get("label"), pressed.get("item")
        if str(item) != str(current["image_id"]):
            raise gr.Error("The image changed before that key arrived; nothing was recorded. Press it again.")
        if not isinstance(label, str) or label not in current["labels"]:
            raise gr.Error("That class is not one of the classes shown; nothing was recorded.")
        user = request_user(context, request)
        if current.get("task_id") is not None:
            answer = review.answer_blind_class(
                context,
                user,
                current["task_id"],
                label,
                current.get("label"),
                expected_last_id=current["last_decision_id"],
            )
            return {"session": counted(session, answer.action)}
        decision = review.decide_class(
            context, user, current["image_id"], label, expected_last_id=current["last_decision_id"]
        )
        return {"session": counted(session, decision.action)}

    def skip(current: dict | None, session: dict, request: gr.Request) -> dict:
        review.skip(context, request_user(context, request))
        skipped = session["skipped"] + ([current["image_id"]] if current else [])
        return {"session": {**session, "skipped": skipped}}

    def undo(session: dict, request: gr.Request) -> dict:
        review.undo(context, request_user(context, request))
        gr.Info("Undone: the image is back in the queue.")
        return {"session": {**session, "reviewed": max(0, session["reviewed"] - 1), "skipped": []}}

    def show_evidence(current: dict | None, request: gr.Request) -> dict:
        """Look-alikes of the shown image's given and predicted classes, or nothing when no image is shown."""
        hidden = gr.Gallery(value=None, visible=False)
        if not current:
            return {"given": hidden, "predicted": hidden, "evidence_note": ""}
        if current.get("task_id") is not None:  # never computed: they would show what the model thinks
            return {"given": hidden, "predicted": hidden, "evidence_note": BLIND_EVIDENCE}
        found = review.evidence(context, request_user(context, request), current["image_id"])

        def gallery(neighbours, heading: str):
            if neighbours is None:
                return hidden
            pictures = [(str(context.store.absolute(n.thumb_path)), neighbour_caption(n)) for n in neighbours.images]
            return gr.Gallery(value=pictures or None, label=f"{heading} {neighbours.label} — like these", visible=True)

        notes = [found.note] if found.note else []
        for heading, neighbours in (("Labeled", found.given), ("Predicted", found.predicted)):
            if neighbours is not None and neighbours.note:
                notes.append(f"{heading} {md_text(neighbours.label)}: {md_text(neighbours.note)}")
        return {
            "given": gallery(found.given, "Labeled"),
            "predicted": gallery(found.predicted, "Predicted"),
            "evidence_note": " · ".join(notes),
        }

    def show_history(current: dict | None, request: gr.Request) -> dict:
        """The shown image's history; held back on a blind check (it holds scores and earlier answers)."""
        if current and current.get("task_id") is not None:
            return empty_history(BLIND_HISTORY)
        image_id = current["image_id"] if current else None
        return shown_history(context, request_user(context, request), image_id, NO_HISTORY)

    def open_history(current: dict | None, request: gr.Request) -> dict:
        """The accordion opened: fill it, and keep it filled as the image changes."""
        return {**show_history(current, request), "history_open": True}

    def close_history() -> dict:
        return {"history_open": False}

    def follow_history(current: dict | None, history_open: bool, request: gr.Request) -> dict:
        """A new image: its history when the accordion is open; else empty until it is opened."""
        return show_history(current, request) if history_open else empty_history(CLOSED_HISTORY)

    handlers = (
        show_next, decide, press_class, skip, undo, show_evidence,
        show_history, open_history, close_history, follow_history,
    )  # fmt: skip
    return tuple(shows_refusals(handler) for handler in handlers)


def counted(session: dict, action: str) -> dict:
    """The session's counts after one more decision or blind answer with action."""
    found = review.ACTIONS[action].finds_error
    return {**session, "reviewed": session["reviewed"] + 1, "errors": session["errors"] + found}


def build_review_tab(context: Context, selection: gr.State | None = None) -> dict:
    """The Review tab's components and wiring; call inside a gr.Blocks. Returns the event that shows
    the next item, for the page to run on load.

    selection: a State holding image ids (chosen on the map); while it holds any, Review shows only those.
    """
    (
        show_next, decide, press_class, skip, undo, show_evidence,
        show_history, open_history, close_history, follow_history,
    ) = make_handlers(context)  # fmt: skip
    review.warm_evidence(context)
    with gr.Tab("Review", id="review") as tab:
        session = gr.State({"reviewed": 0, "errors": 0, "skipped": []})
        current = gr.State(None)
        history_open = gr.State(False)
        if selection is None:
            selection = gr.State([])
        with gr.Row():
            label_filter = gr.Dropdown([ANY], value=ANY, label="Current label", scale=1)
            predicted_filter = gr.Dropdown([ANY], value=ANY, label="Predicted label", scale=1)
            split_filter = gr.Dropdown([ANY, "train", "valid"], value=ANY, label="Split", scale=1)
            unlabeled = gr.Checkbox(label="Unlabeled images (active learning)", scale=1)
            next_button = gr.Button("Next", elem_id="review-next", scale=0)
        with gr.Row():
            selection_note = gr.Markdown(visible=False, elem_id="review-selection")
            clear_selection = gr.Button(
                "Clear the selection", size="sm", visible=False, scale=0, elem_id="review-clear-selection"
            )
        with gr.Row():
            image = gr.Image(label="Image", type="filepath", interactive=False, height=420, elem_id="review-image")
            with gr.Column():
                facts = gr.Markdown(elem_id="review-facts")
                with gr.Row():
                    keep = gr.Button("Keep (Enter)", variant="primary", elem_id="review-keep")
                    delete = gr.Button("Delete (Del)", variant="stop", elem_id="review-delete")
                    skip_button = gr.Button("Skip (→)", elem_id="review-skip")
                    undo_button = gr.Button("Undo (Ctrl+Z)", elem_id="review-undo")
                classes = gr.HTML("", elem_id="review-classes", js_on_load=CLASS_BUTTONS_JS)
                with gr.Row():
                    new_label = gr.Dropdown(
                        [],
                        label="Relabel to (or type a new class)",
                        allow_custom_value=True,
                        elem_id="review-new-label",
                    )
                    relabel = gr.Button("Relabel", elem_id="review-relabel", scale=0)
                guide = gr.Markdown(visible=False, elem_id="review-guide")
                guide_examples = gr.Gallery(
                    label="Pinned examples",
                    columns=6,
                    height=110,
                    fit_columns=False,
                    object_fit="contain",
                    visible=False,
                    interactive=False,
                    elem_id="review-guide-examples",
                )
        with gr.Row(elem_id="review-evidence"):
            given = gr.Gallery(
                label="Labeled", columns=4, height=170, visible=False, interactive=False, elem_id="review-given"
            )
            predicted = gr.Gallery(
                label="Predicted", columns=4, height=170, visible=False, interactive=False, elem_id="review-predicted"
            )
        evidence_note = gr.Markdown(elem_id="review-evidence-note")
        history = build_history_box(
            "History of this image", "review-history", CLOSED_HISTORY, open=False, refresh="Show the history"
        )
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
        "classes": classes,
        "selection_note": selection_note,
        "clear_selection": clear_selection,
        "guide": guide,
        "guide_examples": guide_examples,
    }
    show_fn, show_outputs = wire(with_selection(show_next), shown)
    show = {
        "fn": show_fn,
        "inputs": [session, *filters, selection],
        "outputs": show_outputs,
        "api_visibility": "private",
    }

    tab.select(**show)
    next_button.click(**show)
    for control in filters:
        control.change(**show)
    selection.change(**show)
    clear_selection.click(clear, outputs=[selection], api_visibility="private")

    # The look-alikes follow the shown image: the item appears first, its neighbours a moment later.
    evidence_fn, evidence_outputs = wire(
        show_evidence, {"given": given, "predicted": predicted, "evidence_note": evidence_note}
    )
    current.change(evidence_fn, inputs=[current], outputs=evidence_outputs, api_visibility="private")

    # The history is read when asked for (the accordion opened, the button), then follows the shown image.
    history_fn, history_outputs = wire(show_history, history.outputs)
    history.refresh.click(history_fn, inputs=[current], outputs=history_outputs, api_visibility="private")
    open_fn, open_outputs = wire(open_history, {**history.outputs, "history_open": history_open})
    history.box.expand(open_fn, inputs=[current], outputs=open_outputs, api_visibility="private")
    close_fn, close_outputs = wire(close_history, {"history_open": history_open})
    history.box.collapse(close_fn, outputs=close_outputs, api_visibility="private")
    follow_fn, follow_outputs = wire(follow_history, history.outputs)
    current.change(follow_fn, inputs=[current, history_open], outputs=follow_outputs, api_visibility="private")

    def on_click(button, handler, inputs):
        event, outputs = wire(handler, {"session": session})
        button.click(event, inputs=inputs, outputs=outputs, api_visibility="private").then(**show)

    on_click(keep, decide_action(decide, "keep"), [current, session])
    on_click(delete, decide_action(decide, "delete"), [current, session])
    on_click(relabel, relabel_action(decide), [current, new_label, session])
    on_click(classes, press_class, [current, session])
    on_click(skip_button, skip, [current, session])
    on_click(undo_button, undo, [session])
    return show


def clear() -> list:
    """An empty selection: Review shows the whole queue again."""
    return []


def with_selection(show_next):
    """show_next as the event calls it, with the selection as one more input."""

    def handler(session: dict, label, predicted, split, unlabeled, selection, request: gr.Request) -> dict:
        return show_next(session, label, predicted, split, unlabeled, request, selection=selection)

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
