"""The sentence that says which model answers, or where the first model stands: for the Predict page,
/api/health and /api/predict's 409. No Gradio here, so a predict-only process can say it too."""

from __future__ import annotations

import threading
import time

from context import Context
from db.runs import HEAD
from training.first_model import (
    FIRST_MODEL_CLASSES,
    FIRST_MODEL_PER_CLASS,
    WAITING_FOR_RANKING,
    FirstModelStatus,
    first_model_status,
)
from ui.readable import duration, when_text

TOP_CLASSES = 5  # classes a Predict page shows
STATUS_REFRESH_S = 2.0  # how often an open page re-reads the first model's progress while no model answers

NO_MODEL_YET = (
    "No model has been trained yet. Once an admin trains and promotes one, upload an image here to see what it is."
)
HEAD_PHASES = {  # a head run's progress phases (training/head.py)
    "embeddings": "reading the images' embeddings",
    "fitting": "fitting a head on the ranking's image embeddings",
    "exporting": "writing the model",
}
PHASES = {
    "frozen": "training the head",
    "unfrozen": "fine-tuning the whole network",
    "lr_find": "finding a learning rate",
}


class EtaClock:
    """Seconds left in a run, from the pace this process has seen it train at.

    The run's own elapsed time starts before loading the images and building the network (40 s of 60 on
    the demo, on a CPU) and that does not recur, so elapsed / fraction would promise hours at the first
    batch. Measured from the first step seen here, elapsed / fraction-done-since is the training's pace;
    between two progress writes the estimate counts down from the last one instead of growing.
    """

    def __init__(self, keep: int = 8):
        self.keep = keep
        # run id -> (first seen: monotonic time, fraction; last change: monotonic time, fraction)
        self._seen: dict[int, tuple[float, float, float, float]] = {}
        self._lock = threading.Lock()

    def eta_s(self, run_id: int, fraction: float | None, now: float | None = None) -> float | None:
        """Seconds left, or None before a second measurable step (then the page says it is estimating)."""
        if fraction is None or fraction >= 1:
            return None
        now = time.monotonic() if now is None else now
        with self._lock:
            first_time, first_fraction, last_time, last_fraction = self._seen.get(
                run_id, (now, fraction, now, fraction)
            )
            if fraction > last_fraction:
                last_time, last_fraction = now, fraction
            self._seen[run_id] = (first_time, first_fraction, last_time, last_fraction)
            while len(self._seen) > self.keep:
                self._seen.pop(next(iter(self._seen)))
        if last_fraction <= first_fraction or last_time <= first_time:
            return None
        pace = (last_time - first_time) / (last_fraction - first_fraction)  # seconds per whole run
        return max(pace * (1 - last_fraction) - (now - last_time), 1.0)


ETA = EtaClock()


def no_model_sentence(context: Context) -> str:
    """Where the first model stands, in one plain sentence: the Predict page's status and /api/predict's 409."""
    return status_sentence(first_model_status(context))


def status_sentence(status: FirstModelStatus, clock: EtaClock = ETA) -> str:
    """The sentence for a first-model status (training with its ETA, queued, failed, waiting for data)."""
    run = status.run
    if status.state == "training" and run is not None:
        elapsed = f"elapsed {duration(run.seconds)}"
        if status.fraction is not None and status.fraction >= 1:
            return f"The first model is trained; it is being checked and saved ({elapsed}) and answers within seconds."
        progress = run.progress or {}
        if run.kind == HEAD:
            phase = HEAD_PHASES.get(progress.get("phase"), "starting")
            return f"The first model is training: {phase}; it takes seconds ({elapsed})."
        phase = PHASES.get(progress.get("phase"))
        if phase is None:
            return f"The first model is training: loading the images, estimating the time left… ({elapsed})."
        total = int(run.params.get("freeze_epochs", 0)) + int(run.params.get("epochs", 0))
        offset = int(run.params.get("freeze_epochs", 0)) if progress.get("phase") == "unfrozen" else 0
        epoch = (
            f", epoch {offset + int(progress.get('epoch', 1))} of {total}" if progress.get("phase") != "lr_find" else ""
        )
        eta = clock.eta_s(run.id, status.fraction)
        left = f"about {duration(eta)} left" if eta is not None else "estimating the time left…"
        return f"The first model is training: {phase}{epoch}, {left} ({elapsed})."
    if status.state == "loading":
        return "The first model is trained; it answers within seconds."
    if status.state == "queued":
        return f"The first model is queued for training (queued {when_text(run.created_at) if run else 'just now'})."
    if status.state == "failed":
        return (
            f"No model has been trained yet: {status.reason}. "
            "The first model is tried again once images or decisions change, or an admin retrains."
        )
    if status.state == "waiting" and status.reason == WAITING_FOR_RANKING:
        return f"No model has been trained yet: {status.reason}."
    if status.state == "waiting" and status.reason.startswith("the first model needs"):
        return f"No model has been trained yet: {status.reason}; it trains by itself as soon as it has them."
    if status.state == "waiting":
        return (
            f"No model has been trained yet: {status.reason}. The first model trains by itself once "
            f"{FIRST_MODEL_CLASSES} classes have {FIRST_MODEL_PER_CLASS} labeled images each."
        )
    return NO_MODEL_YET


def answering_sentence(version: str | None, context: Context) -> str:
    """Which model version answers, or (with none) where the first model stands."""
    return f"Model version {version} answers." if version else no_model_sentence(context)
