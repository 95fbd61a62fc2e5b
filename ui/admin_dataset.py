"""Admin → Dataset: health counts, reviewer activity, uploads, and deleted images to restore or purge."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from context import Context
from db.decisions import deleted_images, reviewer_activity
from db.duplicate_pairs import count_pending
from db.imports import list_rejections
from db.stats import dataset_stats
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.imports.labels import label_for_import
from labeling.instance.export import FORMATS, export_archive
from ui import readable
from ui.auth import require_role_in_handler
from ui.markdown import html_text, md_text
from ui.refusals import shows_refusals
from ui.wiring import wire

STATS_COLUMNS = ["label", "train", "valid", "total"]
REJECTION_COLUMNS = ["item", "reason", "detail"]
ACTIVITY_ACTIONS = [*review.ACTIONS, review.UNDO]
ACTIVITY_COLUMNS = ["reviewer", "decisions", *ACTIVITY_ACTIONS, "last decision"]


def stats_summary_markdown(context: Context) -> str:
    """The headline counts as a short Markdown paragraph."""
    stats = dataset_stats(context.database)
    counts = review.review_counts(context)
    n = readable.count
    return (
        f"**{n(stats.total)}** images: **{n(stats.active)}** active "
        f"({n(stats.by_split.get('train', 0))} train, {n(stats.by_split.get('valid', 0))} valid), "
        f"**{n(stats.unlabeled)}** unlabeled, **{n(stats.deleted)}** deleted, "
        f"**{n(stats.rejected)}** rejected at import. Review: **{n(counts.reviewed)}** images reviewed, "
        f"**{n(counts.relabeled)}** relabeled ({n(counts.decisions)} decisions logged); "
        f"**{n(count_pending(context.database))}** duplicate pairs pending."
    )


def cleanliness_markdown(context: Context, user) -> str:
    """How clean the labels are, in the sentences Admin → Audit & agreement and `loupe stats` print too."""
    sentences = review.dataset_estimates(context, user).sentences()
    return "**How clean the labels are** (details in Audit & agreement):\n" + "\n".join(
        f"- {md_text(sentence)}" for sentence in sentences
    )


def activity_table(context: Context) -> pd.DataFrame:
    """Decisions per reviewer and action."""
    rows = [
        [a.user_name, a.decisions, *(a.by_action.get(action, 0) for action in ACTIVITY_ACTIONS),
         readable.when(a.last_at) if a.last_at else ""]
        for a in reviewer_activity(context.database)
    ]  # fmt: skip
    return pd.DataFrame(rows, columns=ACTIVITY_COLUMNS)


def stats_table(context: Context) -> pd.DataFrame:
    """Images per label and split, one row per label."""
    stats = dataset_stats(context.database)
    rows = [
        [label, counts.get("train", 0), counts.get("valid", 0), counts.get("train", 0) + counts.get("valid", 0)]
        for label, counts in stats.by_label.items()
    ]
    return pd.DataFrame(rows, columns=STATS_COLUMNS)


def rejections_table(context: Context, batch_id: int | None = None) -> pd.DataFrame:
    """The latest import rejections with their reasons."""
    rows = [[r.item, r.reason, r.detail] for r in list_rejections(context.database, batch_id, limit=200)]
    return pd.DataFrame(rows, columns=REJECTION_COLUMNS)


def deleted_choices(context: Context) -> list[tuple[str, int]]:
    """(shown text, image id) for every deleted image, newest first."""
    return [
        (f"{d.image_id}: {d.original_name} ({d.label or 'unlabeled'})", d.image_id)
        for d in deleted_images(context.database)
    ]


def make_handlers(context: Context):
    """The Dataset section's handlers, bound to this Loupe instance; each returns {output name: value}."""

    def refresh(request: gr.Request) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        return {
            "summary": stats_summary_markdown(context),
            "cleanliness": cleanliness_markdown(context, user),
            "per_label": stats_table(context),
            "activity": activity_table(context),
            "rejections": rejections_table(context),
            "deleted": gr.Dropdown(choices=deleted_choices(context), value=[], multiselect=True),
        }

    def apply_to_deleted(operation, verb: str):
        def handler(selected: list[int] | None, request: gr.Request) -> dict:
            user = require_role_in_handler(context, request, review.ADMIN)
            if not selected:
                raise gr.Error(f"Choose the deleted images to {verb} first.")
            result = operation(context, user, [int(image_id) for image_id in selected])
            if result.refused:
                gr.Warning(html_text(f"{len(result.refused)} not done: {'; '.join(result.refused)}"))
            gr.Info(f"{len(result.recorded)} image(s) {verb}d.")
            return {
                "summary": stats_summary_markdown(context),
                "deleted": gr.Dropdown(choices=deleted_choices(context), value=[], multiselect=True),
            }

        return handler

    def upload(files: list[str] | None, label: str, request: gr.Request, progress=gr.Progress()) -> dict:
        user = require_role_in_handler(context, request, review.ADMIN)
        if not files:
            raise gr.Error("Choose one or more images or a zip first.")
        summary = import_paths(
            context,
            files,
            kind="upload",
            label=label_for_import(label),
            progress=lambda done, total: progress((done, total), desc="Importing", unit="images"),
            user_name=user.name,
        )
        if summary.rejected:
            gr.Warning(f"{len(summary.rejected)} item(s) were rejected; see the table below.")
        return {
            "result": (
                f"Import finished: added **{summary.added}**, duplicates **{summary.duplicates}**, "
                f"rejected **{len(summary.rejected)}**."
            ),
            "files": None,
            "summary": stats_summary_markdown(context),
            "per_label": stats_table(context),
            "rejections": rejections_table(context, summary.batch_id),
        }

    def export(fmt: str, request: gr.Request, progress=gr.Progress()) -> dict:
        require_role_in_handler(context, request, review.ADMIN)
        archive, summary = export_archive(
            context, fmt, lambda done, total: progress((done, total), desc="Exporting", unit="images")
        )
        return {
            "export_file": str(archive),
            "export_result": (
                f"Exported **{summary.images}** images ({fmt}) and **{summary.decisions}** decisions: `{archive.name}`."
            ),
        }

    restore = apply_to_deleted(review.restore_images, "restore")
    purge = apply_to_deleted(review.purge_images, "purge")
    return tuple(shows_refusals(handler) for handler in (refresh, upload, restore, purge, export))


def build_dataset_section(context: Context) -> dict:
    """The Dataset section's components and wiring; returns the handler that fills it."""
    refresh, upload, restore, purge, export = make_handlers(context)
    summary = gr.Markdown(elem_id="admin-stats-summary")
    cleanliness = gr.Markdown(elem_id="admin-dataset-estimates")
    with gr.Row():
        per_label = gr.Dataframe(headers=STATS_COLUMNS, label="Images per label and split", interactive=False)
        activity = gr.Dataframe(
            headers=ACTIVITY_COLUMNS,
            datatype=readable.column_types(ACTIVITY_COLUMNS, ("last decision",)),
            label="Reviewer activity",
            interactive=False,
        )
    refresh_button = gr.Button("Refresh", size="sm")
    gr.Markdown("### Upload images")
    files = gr.File(
        label="Images or a .zip (class folders inside become labels)", file_count="multiple", elem_id="admin-files"
    )
    label = gr.Textbox(label="Label for images without a class folder (optional)", max_lines=1)
    upload_button = gr.Button("Import", variant="primary", elem_id="admin-import")
    result = gr.Markdown(elem_id="admin-import-result")
    rejections = gr.Dataframe(headers=REJECTION_COLUMNS, label="Rejected items", interactive=False)
    gr.Markdown("### Deleted images\nRestore brings them back; purge removes their files for good (the log stays).")
    # Custom values let scripts pass image ids through the Gradio API without loading the page first.
    deleted = gr.Dropdown(
        [], multiselect=True, allow_custom_value=True, label="Deleted images", elem_id="admin-deleted"
    )
    with gr.Row():
        restore_button = gr.Button("Restore selected", elem_id="admin-restore")
        purge_button = gr.Button("Purge selected (removes files)", variant="stop", elem_id="admin-purge")

    gr.Markdown(
        "### Export the cleaned dataset\nActive labeled images with their current labels, split as stored, and the "
        "decision log (`decisions.csv`), as one zip: **folders** (class folders under `train/` and `valid/`, for "
        "torchvision, fastai, FiftyOne), **csv** (`cleaned.csv`, `name,label,is_valid,…` like fastai's, files in "
        "`images/`), **imagefolder** (Hugging Face: `train/` and `validation/` with `metadata.jsonl`) or "
        "**labelstudio** (`tasks.json` with labels as annotations and scores as predictions, `label_config.xml`)."
    )
    with gr.Row():
        export_format = gr.Radio(list(FORMATS), value="folders", label="Layout", scale=1)
        export_button = gr.Button("Export", elem_id="admin-export", scale=0)
    export_file = gr.File(label="Export", interactive=False, elem_id="admin-export-file")
    export_result = gr.Markdown(elem_id="admin-export-result")

    named = {
        "summary": summary,
        "cleanliness": cleanliness,
        "per_label": per_label,
        "activity": activity,
        "rejections": rejections,
        "deleted": deleted,
        "result": result,
        "files": files,
        "export_file": export_file,
        "export_result": export_result,
    }

    def event(handler, *names):
        return wire(handler, {name: named[name] for name in names})

    fill, outputs = event(refresh, "summary", "cleanliness", "per_label", "activity", "rejections", "deleted")
    export_fn, export_outputs = event(export, "export_file", "export_result")
    export_button.click(export_fn, inputs=export_format, outputs=export_outputs, api_name="admin_export")
    refresh_button.click(fill, outputs=outputs, api_name="admin_stats")
    upload_fn, upload_outputs = event(upload, "result", "files", "summary", "per_label", "rejections")
    upload_button.click(upload_fn, inputs=[files, label], outputs=upload_outputs, api_name="admin_upload")
    restore_fn, deleted_outputs = event(restore, "summary", "deleted")
    restore_button.click(restore_fn, inputs=deleted, outputs=deleted_outputs, api_name="admin_restore")
    purge_fn, _ = event(purge, "summary", "deleted")
    purge_button.click(purge_fn, inputs=deleted, outputs=deleted_outputs, api_name="admin_purge")
    return {"fn": fill, "outputs": outputs}
