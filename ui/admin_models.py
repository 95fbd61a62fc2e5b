"""Admin → Models & loop: model versions with promote / rollback, and the retraining loop's policy."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from context import Context
from db import model_versions as version_db
from db import runs as run_db
from training.scheduler import (
    BadPolicy,
    LoopPolicy,
    LoopScheduler,
    decisions_since_last_run,
    last_rescore,
    load_policy,
    save_policy,
)
from ui.auth import require_role_in_handler
from ui.markdown import html_text

VERSION_COLUMNS = ["version", "status", "run", "error rate", "gate", "created", "promoted"]


def versions_table(context: Context) -> pd.DataFrame:
    """Every kept version, newest first, with its error rate and the gate's verdict."""
    rows = []
    for v in reversed(version_db.list_versions(context.database)):
        error_rate = v.metrics.get("error_rate")
        gate = v.metrics.get("gate") or {}
        rows.append(
            [
                v.version,
                v.status,
                v.run_id,
                f"{error_rate:.1%}" if error_rate is not None else "",
                gate.get("reason", ""),
                v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                v.promoted_at.strftime("%Y-%m-%d %H:%M:%S") if v.promoted_at else "",
            ]
        )
    return pd.DataFrame(rows, columns=VERSION_COLUMNS)


def loop_status(context: Context, loop: LoopScheduler | None) -> str:
    """What the loop did last and will do next, in a few lines."""
    policy = load_policy(context)
    rescored = last_rescore(context)
    active = run_db.active_run(context.database)
    lines = [
        "The scheduler is **running** in this server."
        if loop
        else "The scheduler is **off** in this server (LOUPE_SCHEDULER=0).",
        f"Last quick rescore: {rescored.get('rescored_at', 'never')}"
        + (f" ({rescored.get('scored')} images in {rescored.get('seconds')} s)." if rescored else "."),
        f"Decisions since the last training run: **{decisions_since_last_run(context)}**"
        + (
            f" (a retrain starts at {policy.retrain_after_decisions})."
            if policy.retrain_after_decisions
            else " (the decision trigger is off)."
        ),
        f"Training now: run {active.id} ({active.status})." if active else "No training run is active.",
    ]
    if loop:
        lines += [f"- next {name}: {when}" for name, when in loop.jobs()]
    return "\n\n".join(lines)


def make_handlers(context: Context, loop: LoopScheduler | None):
    """The Models & loop section's handlers, bound to this Loupe instance."""

    def refresh(request: gr.Request):
        require_role_in_handler(context, request, "admin")
        policy = load_policy(context)
        versions = [v.version for v in reversed(version_db.list_versions(context.database))]
        return (
            versions_table(context),
            gr.Dropdown(choices=versions, value=None),
            loop_status(context, loop),
            policy.quick_loop,
            policy.debounce_s,
            policy.retrain_after_decisions,
            policy.retrain_cron,
            policy.tolerance,
            policy.freeze_epochs,
            policy.epochs,
            policy.size,
        )

    def promote(request: gr.Request, version: str | None):
        user = require_role_in_handler(context, request, "admin")
        if not version:
            raise gr.Error("Choose a version to promote.")
        try:
            version_db.promote(context.database, version)
        except version_db.VersionError as refused:  # may quote the typed version
            raise gr.Error(html_text(refused)) from None
        gr.Info(html_text(f"{version} promoted by {user.name}; the predictor switches within seconds."))
        return refresh(request)

    def rollback(request: gr.Request):
        user = require_role_in_handler(context, request, "admin")
        try:
            restored = version_db.rollback(context.database)
        except version_db.VersionError as refused:
            raise gr.Error(html_text(refused)) from None
        gr.Info(html_text(f"Rolled back to {restored.version} by {user.name}."))
        return refresh(request)

    def save(request: gr.Request, quick_loop, debounce_s, retrain_after, cron, tolerance, freeze_epochs, epochs, size):
        require_role_in_handler(context, request, "admin")
        try:
            policy = LoopPolicy(
                quick_loop=bool(quick_loop),
                debounce_s=float(debounce_s),
                retrain_after_decisions=int(retrain_after),
                retrain_cron=(cron or "").strip(),
                tolerance=float(tolerance),
                freeze_epochs=int(freeze_epochs),
                epochs=int(epochs),
                size=int(size),
            )
            save_policy(context, policy)
        except (BadPolicy, TypeError, ValueError) as refused:
            raise gr.Error(html_text(f"Not saved: {refused}")) from None
        if loop:
            loop.sync_cron()
        gr.Info("Loop settings saved.")
        return refresh(request)

    return refresh, promote, rollback, save


def build_models_section(context: Context, loop: LoopScheduler | None) -> dict:
    """The Models & loop section's components and wiring; returns the handler that fills it."""
    refresh, promote, rollback, save = make_handlers(context, loop)
    gr.Markdown("### Model versions")
    versions = gr.Dataframe(headers=VERSION_COLUMNS, interactive=False, elem_id="versions-table")
    with gr.Row():
        chosen = gr.Dropdown([], label="Version", allow_custom_value=True, elem_id="version-choice", scale=3)
        promote_button = gr.Button("Promote", variant="primary", elem_id="promote-version")
        rollback_button = gr.Button("Roll back", elem_id="rollback-version")
    gr.Markdown("### Retraining loop")
    status = gr.Markdown(elem_id="loop-status")
    with gr.Row():
        quick_loop = gr.Checkbox(label="Quick loop: rescore after decisions")
        debounce_s = gr.Number(label="…once decisions are quiet for (s)", minimum=0)
        retrain_after = gr.Number(label="Retrain after N decisions (0: off)", precision=0, minimum=0)
        cron = gr.Textbox(label="Retrain on a schedule (crontab, UTC; empty: off)", placeholder="0 3 * * *")
    with gr.Row():
        tolerance = gr.Number(label="Promotion tolerance (error-rate points, 0.01 = 1%)", minimum=0, maximum=1)
        freeze_epochs = gr.Number(label="Frozen epochs", precision=0, minimum=0)
        epochs = gr.Number(label="Unfrozen epochs", precision=0, minimum=0)
        size = gr.Number(label="Image size (px)", precision=0, minimum=32, step=32)
    save_button = gr.Button("Save loop settings", elem_id="save-loop")

    policy_fields = [quick_loop, debounce_s, retrain_after, cron, tolerance, freeze_epochs, epochs, size]
    outputs = [versions, chosen, status, *policy_fields]
    promote_button.click(promote, inputs=chosen, outputs=outputs, api_name="promote_version")
    rollback_button.click(rollback, outputs=outputs, api_name="rollback_version")
    save_button.click(save, inputs=policy_fields, outputs=outputs, api_name="save_loop_policy")
    return {"fn": refresh, "outputs": outputs}
