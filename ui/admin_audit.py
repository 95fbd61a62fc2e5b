"""Admin → Audit & agreement: how clean the labels are, blind audits, the review policy, the experts' agreement,
disagreements to settle, and class guidelines. Every rule is labeling/review.py's; this page shows and asks."""

from __future__ import annotations

import re
from pathlib import Path

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure  # not pyplot: no global figure registry to leak from a server

from context import Context
from db.blind import Answer, Judgement
from db.images import get_image
from db.labels import list_label_names
from labeling import review
from labeling.audits import Estimates
from ui import readable
from ui.admin_models import entered_number
from ui.auth import require_role_in_handler
from ui.markdown import html_text, md_text
from ui.refusals import shows_refusals
from ui.wiring import wire

BAND_COLUMNS = ["band", "unreviewed", "audited", "wrong", "estimated wrong left", "95% interval"]
PAIR_COLUMNS = ["first", "second", "items", "agreed", "kappa"]
CLASS_COLUMNS = ["label", "items", "kappa"]
QUALITY_COLUMNS = ["expert", "estimated quality"]
KAPPA_NOTE = (
    "Kappa is agreement corrected for chance: **1** = perfect agreement, **0** = no better than chance "
    "(below 0: worse than chance). Estimated quality is cleanlab's CROWDLAB score per expert, from 0 to 1."
)
DEFAULT_AUDIT_SIZE = 100
DELETE_IT = "delete it"
# An id as typed: ids are 32-bit integers in the database, and PostgreSQL fails a query that names a larger one
# (the service passes ids to SQL as given), so more than 9 digits is refused here as not an id.
WHOLE_NUMBER = re.compile(r"[0-9]{1,9}")


# --- what the page shows ------------------------------------------------------------------------------


def estimates_markdown(found: Estimates) -> str:
    """The estimates' plain-words sentences as a Markdown list (names and labels shown literally)."""
    return "\n".join(f"- {md_text(sentence)}" for sentence in found.sentences())


def bands_table(found: Estimates) -> pd.DataFrame:
    """The latest audit's score bands: unreviewed images, audited and wrong ones, and the wrong labels left."""
    by_band = found.wrong_left.by_band if found.wrong_left is not None else ()
    rows = []
    for b, band in enumerate(found.bands):
        left = by_band[b] if b < len(by_band) else None
        rows.append(
            [
                band.name,
                band.unreviewed,
                band.audited,
                band.wrong,
                f"{left.estimate:,.0f}" if left else "",
                f"{left.low:,.0f}–{left.high:,.0f}" if left else "",
            ]
        )
    return pd.DataFrame(rows, columns=BAND_COLUMNS)


def wrong_left_chart(found: Estimates):
    """Estimated wrong labels left per score band with their 95% intervals as whiskers; None before any answer."""
    if found.wrong_left is None or not found.bands:
        return None
    intervals = found.wrong_left.by_band
    estimates = [i.estimate for i in intervals]
    whiskers = [[i.estimate - i.low for i in intervals], [i.high - i.estimate for i in intervals]]
    figure = Figure(figsize=(6, 2.8))
    axis = figure.subplots()
    positions = range(len(intervals))
    axis.bar(positions, estimates, yerr=whiskers, capsize=4, color="tab:orange")
    axis.set_xticks(list(positions), [band.name for band in found.bands[: len(intervals)]], fontsize=8)
    axis.set_ylabel("wrong labels left")
    figure.tight_layout()
    return figure


def kappa_text(kappa: float | None) -> str:
    """Kappa with two decimals, or why there is none."""
    return f"{kappa:.2f}" if kappa is not None else "not defined yet"


def pairs_table(found: Estimates) -> pd.DataFrame:
    """Agreement per pair of experts over the second opinions both answered."""
    rows = [[p.first, p.second, p.items, p.agreed, kappa_text(p.kappa)] for p in found.pairs]
    return pd.DataFrame(rows, columns=PAIR_COLUMNS)


def classes_table(found: Estimates) -> pd.DataFrame:
    """Agreement per class, one class against the rest."""
    rows = [[c.label, c.items, kappa_text(c.kappa)] for c in found.classes]
    return pd.DataFrame(rows, columns=CLASS_COLUMNS)


def quality_table(found: Estimates) -> pd.DataFrame:
    """Each expert's estimated quality (CROWDLAB), best first."""
    ranked = sorted(found.expert_quality.items(), key=lambda item: (-item[1], item[0]))
    return pd.DataFrame([[name, f"{quality:.2f}"] for name, quality in ranked], columns=QUALITY_COLUMNS)


def estimate_outputs(context: Context, user) -> dict:
    """The estimates, the bands with their chart and the agreement tables, as named outputs."""
    found = review.dataset_estimates(context, user)
    return {
        "estimates": estimates_markdown(found),
        "bands": bands_table(found),
        "chart": wrong_left_chart(found),
        "pairs": pairs_table(found),
        "class_kappa": classes_table(found),
        "quality": quality_table(found),
    }


def drawn_markdown(drawn) -> str:
    """What an audit drew, per band."""
    per_band = "; ".join(f"{band['name']}: {band['drawn']} of {readable.count(band['size'])}" for band in drawn.bands)
    return (
        f"Audit **{drawn.audit_id}** drew **{readable.count(drawn.sampled)}** of "
        f"{readable.count(drawn.population)} unreviewed images ({per_band}). "
        "Experts get them blind, mixed into their queue."
    )


def says(answer: Answer | None) -> str:
    """What one answer says the image shows, in plain words."""
    if answer is None:
        return "nobody has answered"
    return f"{answer.user_name or '?'} says {answer.label if answer.label is not None else DELETE_IT}"


def dispute_choice(judgement: Judgement) -> tuple[str, int]:
    """(the Dropdown's text, the task id) for an open disagreement."""
    return f"#{judgement.task_id}: image {judgement.image_id} — {says(judgement.first)}, {says(judgement.second)}", (
        judgement.task_id
    )


def answer_line(answer: Answer | None) -> str:
    """One answer as a Markdown line: who says what, with the action taken and when."""
    if answer is None:
        return md_text(says(answer))
    return f"{md_text(says(answer))} ({md_text(answer.action)}, {readable.when(answer.created_at)})"


def image_file(context: Context, relpath: str | None) -> str | None:
    """The stored file's path when it is still there (purged images' files are gone)."""
    path: Path | None = context.store.absolute(relpath) if relpath else None
    return str(path) if path is not None and path.is_file() else None


def dispute_outputs(context: Context, user, chosen: int | None = None) -> dict:
    """The open disagreements, the chosen one (else the oldest) with its image and both answers."""
    disputes = review.disagreements(context, user)
    shown = next((j for j in disputes if j.task_id == chosen), disputes[0] if disputes else None)
    if shown is None:
        return {
            "disputes": gr.Dropdown(choices=[], value=None),
            "dispute_image": None,
            "dispute_text": "No disagreements are waiting to be settled.",
        }
    image = get_image(context.database, shown.image_id)
    now = f"labeled **{md_text(image.label) if image.label else 'unlabeled'}**, {image.status}" if image else "gone"
    name = f" ({md_text(image.original_name)})" if image else ""
    text = (
        f"**#{shown.task_id}**, image {shown.image_id}{name}: now {now}. "
        f"The label shown was **{md_text(shown.shown_label or 'none')}**.\n\n"
        f"- First: {answer_line(shown.first)}\n- Second: {answer_line(shown.second)}\n\n"
        f"{len(disputes)} disagreement(s) waiting."
    )
    return {
        "disputes": gr.Dropdown(choices=[dispute_choice(j) for j in disputes], value=shown.task_id),
        "dispute_image": image_file(context, image.stored_path) if image else None,
        "dispute_text": text,
    }


def policy_outputs(policy: review.ReviewPolicy) -> dict:
    """The review policy's fields as named outputs."""
    return {
        "share": policy.second_opinion_share,
        "relabels": policy.second_opinion_relabels,
        "audit_checks": policy.audit_second_opinion,
    }


def guide_outputs(context: Context, user, label: str | None) -> dict:
    """A class's guideline in the form's fields (empty when none is written)."""
    guide = review.class_guide(context, user, label)
    if guide is None:
        note = f"No guideline for **{md_text(label)}** yet." if label else "Choose a class."
        return {"definition": "", "example_ids": "", "examples": None, "guide_note": note}
    pictures = [(file, f"id {image_id}") for image_id, thumb in guide.examples if (file := image_file(context, thumb))]
    note = f"Written by {md_text(guide.updated_by or 'an admin')}, {readable.when(guide.updated_at)}."
    return {
        "definition": guide.definition,
        "example_ids": ", ".join(str(image_id) for image_id, _ in guide.examples),
        "examples": pictures or None,
        "guide_note": note,
    }


# --- what the admin types ------------------------------------------------------------------------------


def parse_example_ids(text: str | None) -> list[int]:
    """Image ids typed as '12, 40, 7' (empty: none); anything else is a gr.Error and nothing is saved."""
    if not (text or "").strip():
        return []
    ids = []
    for item in str(text).split(","):
        item = item.strip()
        if not WHOLE_NUMBER.fullmatch(item):
            raise gr.Error(
                html_text(f"Example ids are image ids separated by commas, like 12, 40; {item!r} is not an id.")
            )
        ids.append(int(item))
    return ids


def chosen_task(value) -> int:
    """The disagreement chosen in the Dropdown (its task id), or a gr.Error asking for one."""
    text = str(value).strip() if value is not None else ""
    if not text:
        raise gr.Error("Choose a disagreement first.")
    if not WHOLE_NUMBER.fullmatch(text):
        raise gr.Error(html_text(f"{text!r} is not a disagreement's number."))
    return int(text)


def make_handlers(context: Context) -> dict:
    """The Audit & agreement section's handlers by name, bound to this Loupe instance; each returns
    {output name: value}."""

    def refresh(request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        classes = list_label_names(context.database)
        return {
            **estimate_outputs(context, user),
            **policy_outputs(review.load_review_policy(context)),
            **dispute_outputs(context, user),
            "guide_class": gr.Dropdown(choices=classes),  # the value stays: a guideline being written is kept
            "settle_label": gr.Dropdown(choices=classes),
        }

    def start_audit(size, request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        drawn = review.start_audit(context, user, entered_number(size, "The number of images to audit", int))
        gr.Info(f"Audit {drawn.audit_id} started: {drawn.sampled} images drawn.")
        return {"audit_result": drawn_markdown(drawn), **estimate_outputs(context, user)}

    def save_policy(share, relabels, audit_checks, request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        wanted = review.ReviewPolicy(
            second_opinion_share=entered_number(share, "The share of decisions sent for a second opinion"),
            second_opinion_relabels=bool(relabels),
            audit_second_opinion=bool(audit_checks),
        )
        saved = review.save_review_policy(context, user, wanted)  # DecisionError says what is out of range
        gr.Info("Review policy saved.")
        return policy_outputs(saved)

    def show_dispute(chosen, request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        return dispute_outputs(context, user, chosen_task(chosen) if chosen not in (None, "") else None)

    def settle_with(pick_label):
        """A handler that settles the chosen disagreement with the label pick_label(judgement, typed) gives."""

        def handler(chosen, typed, request: gr.Request) -> dict:
            user = require_role_in_handler(context, request, review.ADMIN)
            task_id = chosen_task(chosen)
            judgement = next((j for j in review.disagreements(context, user) if j.task_id == task_id), None)
            if judgement is None:
                raise gr.Error(f"Disagreement #{task_id} is no longer waiting (settled or withdrawn); press Refresh.")
            label = pick_label(judgement, typed)
            review.settle(context, user, task_id, label)  # a party to it is refused here (PermissionDenied)
            image = get_image(context.database, judgement.image_id)
            outcome = f"labeled {image.label}" if label is not None and image else "deleted"
            gr.Info(html_text(f"#{task_id} settled: image {judgement.image_id} {outcome}."))
            return {**dispute_outputs(context, user), **estimate_outputs(context, user)}

        return handler

    def typed_label(_judgement, typed) -> str:
        if not str(typed or "").strip():
            raise gr.Error("Choose or type the label the image shows first.")
        return str(typed)

    def show_guide(label, request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        return guide_outputs(context, user, label or None)

    def save_guide(label, definition, example_ids, request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        if not label:
            raise gr.Error("Choose a class first.")
        ids = parse_example_ids(example_ids)  # before anything is written: a bad id changes nothing
        review.save_class_guide(context, user, label, definition or "", ids)
        gr.Info(html_text(f"Guideline for {label} saved."))
        return guide_outputs(context, user, label)

    handlers = {
        "refresh": refresh,
        "start_audit": start_audit,
        "save_policy": save_policy,
        "show_dispute": show_dispute,
        "settle_first": settle_with(lambda judgement, _typed: judgement.first.label),
        "settle_second": settle_with(lambda judgement, _typed: judgement.second.label if judgement.second else None),
        "settle_label": settle_with(typed_label),
        "settle_delete": settle_with(lambda _judgement, _typed: None),
        "show_guide": show_guide,
        "save_guide": save_guide,
    }
    return {name: shows_refusals(handler) for name, handler in handlers.items()}


def build_audit_section(context: Context) -> dict:
    """The Audit & agreement section's components and wiring; returns the handler that fills it."""
    handlers = make_handlers(context)
    gr.Markdown("### How clean the labels are")
    estimates = gr.Markdown(elem_id="admin-estimates")
    bands = gr.Dataframe(
        headers=BAND_COLUMNS, label="The latest audit's score bands", interactive=False, elem_id="admin-audit-bands"
    )
    chart = gr.Plot(label="Estimated wrong labels left per band (95% interval)", elem_id="admin-audit-chart")
    refresh_button = gr.Button("Refresh", size="sm", elem_id="admin-audit-refresh")

    gr.Markdown(
        "### Start an audit\nDraws unreviewed images at random from each score band; experts answer them blind "
        "(no prediction, no score), and the answers estimate the wrong labels left."
    )
    with gr.Row():
        size = gr.Number(
            DEFAULT_AUDIT_SIZE, label="Images to audit", precision=0, minimum=1, maximum=review.MAX_AUDIT,
            elem_id="admin-audit-size", scale=1,
        )  # fmt: skip
        start_button = gr.Button("Start the audit", variant="primary", elem_id="admin-start-audit", scale=0)
    audit_result = gr.Markdown(elem_id="admin-audit-result")

    gr.Markdown("### Review policy\nWhich decisions another expert checks blind (a second opinion).")
    with gr.Row():
        share = gr.Slider(
            0, 1, step=0.01, label="Share of decisions sent for a second opinion", elem_id="admin-policy-share"
        )
        relabels = gr.Checkbox(label="Every relabel", elem_id="admin-policy-relabels")
        audit_checks = gr.Checkbox(label="Every audit answer", elem_id="admin-policy-audit")
    save_policy_button = gr.Button("Save the review policy", elem_id="admin-save-policy")

    gr.Markdown(f"### Agreement between experts\n{KAPPA_NOTE}")
    with gr.Row():
        pairs = gr.Dataframe(
            headers=PAIR_COLUMNS, label="Per pair of experts", interactive=False, elem_id="admin-pairs"
        )
        class_kappa = gr.Dataframe(
            headers=CLASS_COLUMNS, label="Per class", interactive=False, elem_id="admin-class-kappa"
        )
        quality = gr.Dataframe(
            headers=QUALITY_COLUMNS, label="Estimated quality", interactive=False, elem_id="admin-expert-quality"
        )

    gr.Markdown("### Disagreements to settle\nYour answer is applied to the image as a decision, once.")
    # Custom values let scripts pass task ids and labels through the Gradio API without loading the page first.
    disputes = gr.Dropdown([], label="Open disagreements", allow_custom_value=True, elem_id="admin-disputes")
    with gr.Row():
        dispute_image = gr.Image(
            show_label=False, interactive=False, height=300, type="filepath", elem_id="admin-dispute-image"
        )
        dispute_text = gr.Markdown(elem_id="admin-dispute-text")
    with gr.Row():
        first_button = gr.Button("Side with the first", elem_id="admin-side-first")
        second_button = gr.Button("Side with the second", elem_id="admin-side-second")
        delete_button = gr.Button("Delete the image", variant="stop", elem_id="admin-settle-delete")
    with gr.Row():
        settle_label = gr.Dropdown(
            [], label="Another label", allow_custom_value=True, elem_id="admin-settle-label", scale=3
        )
        label_button = gr.Button("Settle with this label", elem_id="admin-settle-other", scale=1)

    gr.Markdown("### Class guidelines\nExperts read them while reviewing.")
    guide_class = gr.Dropdown([], label="Class", allow_custom_value=True, elem_id="admin-guide-class")
    guide_note = gr.Markdown(elem_id="admin-guide-note")
    definition = gr.Textbox(
        label="Definition", lines=4, max_length=review.MAX_GUIDE_CHARS, elem_id="admin-guide-definition"
    )
    example_ids = gr.Textbox(
        label=f"Pinned example image ids, separated by commas (at most {review.MAX_GUIDE_EXAMPLES})",
        max_lines=1,
        elem_id="admin-guide-examples",
    )
    examples = gr.Gallery(label="Pinned examples", columns=8, height=140, elem_id="admin-guide-gallery")
    save_guide_button = gr.Button("Save the guideline", elem_id="admin-save-guide")

    named = {
        "estimates": estimates,
        "bands": bands,
        "chart": chart,
        "pairs": pairs,
        "class_kappa": class_kappa,
        "quality": quality,
        "audit_result": audit_result,
        "share": share,
        "relabels": relabels,
        "audit_checks": audit_checks,
        "disputes": disputes,
        "dispute_image": dispute_image,
        "dispute_text": dispute_text,
        "settle_label": settle_label,
        "guide_class": guide_class,
        "definition": definition,
        "example_ids": example_ids,
        "examples": examples,
        "guide_note": guide_note,
    }
    shown_estimates = ("estimates", "bands", "chart", "pairs", "class_kappa", "quality")
    policy = ("share", "relabels", "audit_checks")
    dispute = ("disputes", "dispute_image", "dispute_text")
    guide = ("definition", "example_ids", "examples", "guide_note")

    def event(name, *names):
        return wire(handlers[name], {output: named[output] for output in names})

    fill, outputs = event("refresh", *shown_estimates, *policy, *dispute, "guide_class", "settle_label")
    refresh_button.click(fill, outputs=outputs, api_name="admin_audit_refresh")
    start_fn, start_outputs = event("start_audit", "audit_result", *shown_estimates)
    start_button.click(start_fn, inputs=size, outputs=start_outputs, api_name="admin_start_audit")
    policy_fn, policy_outputs_ = event("save_policy", *policy)
    save_policy_button.click(
        policy_fn, inputs=[share, relabels, audit_checks], outputs=policy_outputs_, api_name="admin_save_review_policy"
    )
    show_fn, show_outputs = event("show_dispute", *dispute)
    disputes.input(show_fn, inputs=disputes, outputs=show_outputs, api_name="admin_show_disagreement")
    for name, button in (
        ("settle_first", first_button),
        ("settle_second", second_button),
        ("settle_label", label_button),
        ("settle_delete", delete_button),
    ):
        settle_fn, settle_outputs = event(name, *dispute, *shown_estimates)
        button.click(settle_fn, inputs=[disputes, settle_label], outputs=settle_outputs, api_name=f"admin_{name}")
    guide_fn, guide_outputs_ = event("show_guide", *guide)
    guide_class.input(guide_fn, inputs=guide_class, outputs=guide_outputs_, api_name="admin_class_guide")
    save_guide_fn, _ = event("save_guide", *guide)
    save_guide_button.click(
        save_guide_fn, inputs=[guide_class, definition, example_ids], outputs=guide_outputs_,
        api_name="admin_save_class_guide",
    )  # fmt: skip
    return {"fn": fill, "outputs": outputs}
