"""Where the first model stands, without torch: the rule, the last check's verdict, the status sentence's
facts. The Predict page (also in a predict-only process) reads these; training/scheduler.py decides and
starts the first run."""

from __future__ import annotations

from dataclasses import dataclass

from context import Context
from db import app_state
from db import runs as run_db
from db.schema import utcnow
from db.stats import DatasetStats

FIRST_MODEL_KEY = "first_model"
FIRST_MODEL_TRIGGER = "first model"
# The first model waits for this many labeled images in each of at least FIRST_MODEL_CLASSES classes.
# fastai needs two classes and images in both splits; the split is drawn per image from its hash
# (about one in five is validation), so at 5 a class very likely has a validation image too, while a
# few minutes of labeling reach it. The split check below makes sure rather than very likely.
FIRST_MODEL_PER_CLASS = 5
FIRST_MODEL_CLASSES = 2
FIRST_MODEL_RULE = (
    f"When no model version is promoted, the loop trains the first one by itself as soon as at least "
    f"{FIRST_MODEL_CLASSES} classes have {FIRST_MODEL_PER_CLASS} labeled images each, with images in both "
    "the train and the validation split: a head on the ranking's image embeddings (seconds, once the quick "
    "loop has ranked the images), then a fine-tune of the network, served only if it errs less than the head. "
    "After a failed or cancelled first run it waits until images or decisions change before trying again."
)
WAITING_FOR_RANKING = (
    "the first model is a head on the ranking's image embeddings, so it starts once the quick loop has ranked "
    "the images"
)


def first_model_data_problem(stats: DatasetStats) -> str | None:
    """Why the labeled images cannot train a first model yet, or None when they can."""
    if not stats.by_label:
        return "there are no labeled images yet"
    totals = {label: sum(splits.values()) for label, splits in stats.by_label.items()}
    enough = [label for label, total in totals.items() if total >= FIRST_MODEL_PER_CLASS]
    if len(enough) < FIRST_MODEL_CLASSES:
        now = ", ".join(f"{label} {total:,}" for label, total in sorted(totals.items(), key=lambda kv: -kv[1])[:5])
        more = f" and {len(totals) - 5:,} more" if len(totals) > 5 else ""
        return (
            f"the first model needs {FIRST_MODEL_PER_CLASS} labeled images in each of {FIRST_MODEL_CLASSES} classes "
            f"(now: {now}{more})"
        )
    train = sum(splits.get("train", 0) for splits in stats.by_label.values())
    valid = sum(splits.get("valid", 0) for splits in stats.by_label.values())
    if train < 2 or valid < 1:
        return f"the first model needs labeled images in both splits (now {train:,} in train, {valid:,} in validation)"
    return None


def note_first_model(context: Context, state: str, reason: str, **extra) -> None:
    """Keep why the first model did or did not start, for the Admin tab and the Predict page.

    Written only when it changes, so a check every few seconds does not write every few seconds.
    """
    noted = app_state.get_state(context.database, FIRST_MODEL_KEY)
    wanted = {"state": state, "reason": reason, **extra}
    if {key: noted.get(key) for key in wanted} == wanted and set(noted) - {"at"} == set(wanted):
        return
    app_state.set_state(context.database, FIRST_MODEL_KEY, {**wanted, "at": utcnow().isoformat()})


def first_line(error: str | None, limit: int = 300) -> str:
    """The first line of a run's error (the exception, not its traceback), cut to limit characters."""
    text = (error or "").strip()
    line = text.splitlines()[0] if text else "no reason was recorded"
    return line if len(line) <= limit else line[: limit - 1] + "…"


def first_model_note(context: Context) -> dict:
    """The first-model check's last verdict: state (off, waiting, held, started, done), reason, at, run_id."""
    return app_state.get_state(context.database, FIRST_MODEL_KEY)


@dataclass(frozen=True)
class FirstModelStatus:
    """Where the first model stands while no version answers, for the Predict page and /api/predict."""

    state: str  # "queued", "training", "loading" (promoted, not yet served), "failed", "waiting", "off", "unknown"
    reason: str = ""
    run: run_db.RunRow | None = None
    fraction: float | None = None  # of the training done, from the run's progress; None before a measurable step


def training_fraction(run: run_db.RunRow) -> float | None:
    """How much of a run's epochs are done (0–1), from its progress; None before the first batch."""
    progress = run.progress or {}
    total = int(run.params.get("freeze_epochs", 0)) + int(run.params.get("epochs", 0))
    if run.metrics.get("error_rate") is not None:
        return 1.0  # training is over: exporting and the gate remain
    if not progress or total <= 0 or progress.get("phase") not in ("frozen", "unfrozen"):
        return None
    epochs_done = len([h for h in progress.get("history", []) if h.get("phase") in ("frozen", "unfrozen")])
    offset = int(run.params.get("freeze_epochs", 0)) if progress["phase"] == "unfrozen" else 0
    batches = progress.get("n_batches") or 0
    within = (progress.get("batch") or 0) / batches if batches else 0.0
    done = max(epochs_done, offset + int(progress.get("epoch", 1)) - 1 + within)
    return min(done / total, 1.0) if done > 0 else None


def first_model_status(context: Context) -> FirstModelStatus:
    """What is happening about the first model (call only while no version answers): a read or two."""
    database = context.database
    run = run_db.active_run(database)  # an admin's run becomes the first model too if it passes the gate
    if run is not None:
        if run.status == "queued" or run.started_at is None:
            return FirstModelStatus("queued", run=run)
        return FirstModelStatus("training", run=run, fraction=training_fraction(run))
    noted = app_state.get_state(database, FIRST_MODEL_KEY)
    state = noted.get("state")
    if state == "started" and noted.get("run_id") is not None:
        last = run_db.get_run(database, noted["run_id"])  # it ended after the last check
        if last is not None and last.status == "failed":
            return FirstModelStatus("failed", f"the last attempt failed: {first_line(last.error)}", run=last)
        if last is not None and last.status == "succeeded":
            return FirstModelStatus("loading", run=last)
    if state == "held":
        return FirstModelStatus("failed", noted.get("reason", ""))
    if state == "waiting":
        return FirstModelStatus("waiting", noted.get("reason", ""))
    if state == "off":
        return FirstModelStatus("off", noted.get("reason", ""))
    return FirstModelStatus("unknown")
