"""The loop that turns decisions into a fresher queue and a better model, with nobody running a command.

These jobs run in APScheduler (its job store is a table in Loupe's own database):

- quick loop: once decisions (or imports, or a promotion) have been quiet for the debounce, embed
  what is new and retrain the cross-validated heads, so the queue re-ranks within seconds;
- retrain check: the first model, as soon as there are enough labeled images and no version is
  promoted (so the Predict page answers without waiting for anyone): a head on the ranking's cached
  embeddings, then a fine-tune that must beat it; after each settled ranking, a new head when it would
  beat the served version; when N decisions have piled up since the last fine-tune, fine-tune the network;
- scheduled retrain: on a cron expression (e.g. nightly), if anything changed since the last run;
- hook deliveries: send the event hooks' deliveries that are due (training/hooks.py).

Every job may run in several processes at once (two app servers on one PostgreSQL): the quick loop
takes a lease in the database and training takes the database's training slot, so each happens once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
from dataclasses import asdict, dataclass, fields
from datetime import timedelta

from context import Context
from db import app_state
from db import decisions as decision_db
from db import images as image_db
from db import model_versions as version_db
from db import runs as run_db
from db.schema import as_utc, scheduler_jobs, utcnow
from db.stats import dataset_stats
from errors import LoupeError
from labeling.ranking import neighbours
from labeling.ranking.dataset_map import build_map, map_wanted
from labeling.ranking.scoring import (
    FOLD_SPLITS,
    QUICK_SPLITS,
    RescoreResult,
    ScoringStopped,
    rescore,
    serving_pass,
    wanted_scorer,
)
from models.embedder import EmbeddingModelError
from training.first_model import (
    FIRST_MODEL_KEY,
    FIRST_MODEL_TRIGGER,
    WAITING_FOR_RANKING,
    first_line,
    first_model_data_problem,
    note_first_model,
)
from training.gate import DEFAULT_TOLERANCE
from training.hooks import deliver_due
from training.launcher import fail_dead_runs, launch
from training.params import DEFAULTS, epochs_problem, size_problem

log = logging.getLogger(__name__)

POLICY_KEY = "loop_policy"
HEAD_CHECK_KEY = "head_check"  # app_state: the last settled ranking the head check looked at, and what it found
HEAD_TRIGGER = "ranking"  # the trigger of a head the loop trains after a ranking
QUICK_LOOP_KEY = "quick_loop"
MAP_FAILED_KEY = "dataset_map.failed"  # the pass stamp whose map failed: tried again only for a new pass
QUICK_LOOP_LEASE_S = 600  # longer than any rescoring pass; a crashed holder's lease runs out

_schedulers: dict[str, LoopScheduler] = {}  # job functions find their scheduler by key (jobs are stored by name)


class BadPolicy(LoupeError, ValueError):
    """A loop setting that cannot work, with a sentence saying which."""


@dataclass(frozen=True)
class LoopPolicy:
    """When the loop rescores and retrains; admins change it in the Admin tab, it is kept in the database."""

    quick_loop: bool = True
    first_model: bool = True  # train the first model by itself once there is enough labeled data
    head_models: bool = True  # after each settled ranking, train a head when it would beat the served version
    debounce_s: float = 20.0
    retrain_after_decisions: int = 200  # 0 turns the decision trigger off
    retrain_cron: str = ""  # crontab syntax, UTC, e.g. "0 3 * * *"; empty turns it off
    tolerance: float = DEFAULT_TOLERANCE
    epochs: int = DEFAULTS.epochs
    freeze_epochs: int = DEFAULTS.freeze_epochs
    size: int = DEFAULTS.size

    def checked(self) -> LoopPolicy:
        """This policy, or BadPolicy naming the first setting that cannot work."""
        if self.debounce_s < 0:
            raise BadPolicy("the debounce cannot be negative")
        if self.retrain_after_decisions < 0:
            raise BadPolicy("the number of decisions before a retrain cannot be negative (0 turns it off)")
        if not 0 <= self.tolerance <= 1:
            raise BadPolicy("the promotion tolerance is an error-rate difference between 0 and 1")
        problem = epochs_problem(self.epochs, self.freeze_epochs) or size_problem(self.size)
        if problem:
            raise BadPolicy(problem)
        if self.retrain_cron.strip():
            cron_trigger(self.retrain_cron)
        return self

    def training_params(self) -> dict:
        """What a retrain this policy starts is asked to do."""
        return {
            "epochs": self.epochs,
            "freeze_epochs": self.freeze_epochs,
            "size": self.size,
            "tolerance": self.tolerance,
        }


def cron_trigger(expression: str):
    """APScheduler's trigger for a crontab line (UTC); BadPolicy when it does not parse."""
    from apscheduler.triggers.cron import CronTrigger

    try:
        return CronTrigger.from_crontab(expression.strip(), timezone="UTC")
    except ValueError as error:
        raise BadPolicy(f"the retrain schedule {expression!r} is not a crontab line: {error}") from None


def load_policy(context: Context) -> LoopPolicy:
    """The stored policy over the defaults."""
    stored = app_state.get_state(context.database, POLICY_KEY)
    known = {f.name for f in fields(LoopPolicy)}
    return LoopPolicy(**{k: v for k, v in stored.items() if k in known})


def save_policy(context: Context, policy: LoopPolicy) -> LoopPolicy:
    """Check and store the policy; running schedulers pick it up at their next tick."""
    app_state.set_state(context.database, POLICY_KEY, asdict(policy.checked()))
    return policy


# --- the quick loop -------------------------------------------------------------------------------


def quick_loop_due(context: Context, policy: LoopPolicy) -> dict | None:
    """The marks to rescore for, or None when the ranking is current or decisions are still coming in.

    The marks are what the queue's ranking depends on: the newest decision, the newest image, the
    promoted version, and which scoring pass the queue reads (a new default ranking is scored at once,
    rather than leaving the queue empty until someone runs `loupe score`).
    """
    newest = decision_db.newest_decision(context.database)
    promoted = version_db.promoted_version(context.database)
    marks = {
        "decision_id": newest.id if newest else None,
        "image_id": image_db.newest_image_id(context.database),
        "model_version": promoted.version if promoted else None,
        "scorer": wanted_scorer(context),
    }
    seen = app_state.get_state(context.database, QUICK_LOOP_KEY)
    if all(seen.get(key) == value for key, value in marks.items()):
        if seen.get("splits", FOLD_SPLITS) < FOLD_SPLITS:
            return {**marks, "splits": FOLD_SPLITS}  # quiet now: refine the quick pass
        return None
    if newest and newest.id != seen.get("decision_id"):
        if utcnow() - as_utc(newest.at) < timedelta(seconds=policy.debounce_s):
            return None  # an expert is still deciding; rescoring now would be redone in a moment
    # The queue follows decisions within seconds with one fold split; the next quiet tick refines it.
    return {**marks, "splits": QUICK_SPLITS}


def run_quick_loop(context: Context, policy: LoopPolicy, holder: str) -> RescoreResult | None:
    """Rescore if due and no other process is doing it; returns what was done, or None."""
    try:
        marks = quick_loop_due(context, policy)
    except EmbeddingModelError as error:
        _record_failure(context, error)
        return None
    if marks is None:
        _map_if_missing(context, holder)
        return None
    if not app_state.try_lease(context.database, QUICK_LOOP_KEY, holder, QUICK_LOOP_LEASE_S):
        return None
    try:
        try:
            result = rescore(context, splits=marks["splits"], keep_going=lambda: _unchanged(context, marks))
        except EmbeddingModelError as error:
            _record_failure(context, error)
            return None
        except ScoringStopped:
            return None  # a decision or an image came in: the next tick scores again (quick pass first)
        app_state.set_state(
            context.database,
            QUICK_LOOP_KEY,
            {
                **marks,
                "rescored_at": utcnow().isoformat(),
                "seconds": round(result.seconds, 2),
                "scored": result.scored,
            },
        )
        log.info("quick loop rescored %d images in %.1f s", result.scored, result.seconds)
        neighbours.warm(context)  # Review's look-alikes follow the new pass without a reviewer waiting
        if marks["splits"] >= FOLD_SPLITS:  # the ranking has settled: map it (a quick pass is redone soon)
            _refresh_map(context, marks)
        return result
    finally:
        app_state.release_lease(context.database, QUICK_LOOP_KEY, holder)


def _refresh_map(context: Context, marks: dict) -> None:
    """Redraw the dataset map for the pass just stored; a failure leaves the last map showing, the loop going."""
    stamp = map_wanted(context)
    if stamp is None:
        return
    try:
        built = build_map(context, keep_going=lambda: _unchanged(context, marks))
    except Exception:  # noqa: BLE001 — the map is a view; the queue must keep re-ranking whatever happens to it
        log.exception("the dataset map could not be computed")
        app_state.set_state(context.database, MAP_FAILED_KEY, {"stamp": stamp})  # not retried every tick
        return
    if built is not None:
        log.info("dataset map of %d images computed in %.1f s", built.n, built.seconds)


def _map_if_missing(context: Context, holder: str) -> None:
    """On a quiet tick, map a current ranking that has no map: one a decision stopped, or from before maps."""
    stamp = map_wanted(context)
    if stamp is None or app_state.get_state(context.database, MAP_FAILED_KEY).get("stamp") == stamp:
        return
    if not app_state.try_lease(context.database, QUICK_LOOP_KEY, holder, QUICK_LOOP_LEASE_S):
        return
    try:
        newest = decision_db.newest_decision(context.database)
        marks = {"decision_id": newest.id if newest else None, "image_id": image_db.newest_image_id(context.database)}
        _refresh_map(context, marks)
    finally:
        app_state.release_lease(context.database, QUICK_LOOP_KEY, holder)


def _unchanged(context: Context, marks: dict) -> bool:
    """Whether no decision and no image came in since marks were taken (a refining pass stops if one did)."""
    newest = decision_db.newest_decision(context.database)
    return (newest.id if newest else None) == marks["decision_id"] and image_db.newest_image_id(
        context.database
    ) == marks["image_id"]


def _record_failure(context: Context, error: EmbeddingModelError) -> None:
    """Keep the operator's model error beside the last pass's marks, once: the last ranking keeps serving."""
    seen = app_state.get_state(context.database, QUICK_LOOP_KEY)
    if seen.get("error") != error.message:
        log.error("quick loop cannot rescore: %s", error.message)
        app_state.set_state(context.database, QUICK_LOOP_KEY, {**seen, "error": error.message})


def last_rescore(context: Context) -> dict:
    """When the quick loop last rescored, for the Admin tab (empty before the first pass)."""
    return app_state.get_state(context.database, QUICK_LOOP_KEY)


# --- full retraining -------------------------------------------------------------------------------


def decisions_since_last_run(context: Context) -> int:
    """Decisions no run has seen yet."""
    return decision_db.count_decisions_since(context.database, run_db.last_trained_decision_id(context.database))


def run_retrain_check(context: Context, policy: LoopPolicy, trigger: str = "decisions") -> int | None:
    """Start a retrain if the policy's decision count is reached; returns the run id, or None."""
    if policy.retrain_after_decisions <= 0 or run_db.active_run(context.database) is not None:
        return None
    if decisions_since_last_run(context) < policy.retrain_after_decisions:
        return None
    return _start(context, policy, trigger)


def run_scheduled_retrain(context: Context, policy: LoopPolicy) -> int | None:
    """The cron job: retrain if any decision came since the last run, or no run ever happened."""
    if run_db.active_run(context.database) is not None:
        return None
    if run_db.count_runs(context.database, run_db.FINETUNE) and decisions_since_last_run(context) == 0:
        log.info("scheduled retrain skipped: nothing changed since the last run")
        return None
    return _start(context, policy, "schedule")


def _start(context: Context, policy: LoopPolicy, trigger: str, kind: str = run_db.FINETUNE) -> int | None:
    params = policy.training_params() if kind == run_db.FINETUNE else {"tolerance": policy.tolerance}
    try:
        run_id = launch(context, trigger, kind=kind, **params)
    except run_db.TrainingBusy:
        return None  # another process started one first
    log.info("%s retrain started: run %d", trigger, run_id)
    return run_id


# --- the first model -------------------------------------------------------------------------------


def _data_marks(context: Context) -> dict:
    """What a failed first run is compared against: it is retried only once one of these moved."""
    newest = decision_db.newest_decision(context.database)
    return {"decision_id": newest.id if newest else None, "image_id": image_db.newest_image_id(context.database)}


def run_first_model_check(context: Context, policy: LoopPolicy) -> int | None:
    """Start the first training run when no version is promoted and the data can train one; the run id or None.

    Records its reason either way (first_model_note). A first run that failed or was cancelled is not
    started again until an image or a decision came in since it started: no retry storm.
    """
    database = context.database
    if not policy.first_model:
        note_first_model(context, "off", "the first-model policy is off")
        return None
    promoted = version_db.promoted_version(database)
    if promoted is not None:
        noted = app_state.get_state(database, FIRST_MODEL_KEY)
        if noted.get("state") != "done":
            note_first_model(context, "done", f"version {promoted.version} is promoted", version=promoted.version)
        return None
    active = run_db.active_run(database)
    if active is not None:
        noted = app_state.get_state(database, FIRST_MODEL_KEY)
        if noted.get("run_id") != active.id:  # an admin's run: it will be the first model if it passes
            note_first_model(context, "waiting", f"training run {active.id} is {active.status}")
        return None
    problem = first_model_data_problem(dataset_stats(database))
    if problem:
        note_first_model(context, "waiting", problem)
        return None
    kind = run_db.HEAD if policy.head_models else run_db.FINETUNE
    if kind == run_db.HEAD and policy.quick_loop and not serving_pass(context).get("labeled"):
        # The head trains on the ranking's cached embeddings: started before the first pass, it would embed
        # every image a second time beside the quick loop. Without the quick loop it embeds them itself.
        note_first_model(context, "waiting", WAITING_FOR_RANKING)
        return None
    marks = _data_marks(context)
    noted = app_state.get_state(database, FIRST_MODEL_KEY)
    if noted.get("run_id") is not None and noted.get("marks") == marks:
        last = run_db.get_run(database, noted["run_id"])
        if last is not None and last.status in ("failed", "cancelled"):
            note_first_model(
                context,
                "held",
                f"the last attempt (run {last.id}) {last.status}: {first_line(last.error)}"
                if last.status == "failed"
                else f"the last attempt (run {last.id}) was cancelled",
                run_id=last.id,
                marks=marks,
            )
            return None
    run_id = _start(context, policy, FIRST_MODEL_TRIGGER, kind)
    if run_id is not None:
        note_first_model(context, "started", f"training run {run_id} started", run_id=run_id, marks=marks)
    return run_id


def run_first_finetune_check(context: Context, policy: LoopPolicy) -> int | None:
    """Once the first model (a head) is promoted, fine-tune the network once; the gate serves the better one.

    Only when no fine-tune was ever queued: after that, fine-tunes follow decisions, the schedule or an admin.
    """
    database = context.database
    if not policy.first_model or run_db.active_run(database) is not None:
        return None
    promoted = version_db.promoted_version(database)
    if promoted is None or promoted.metrics.get("kind") != run_db.HEAD:
        return None
    if run_db.count_runs(database, run_db.FINETUNE):
        return None
    return _start(context, policy, FIRST_MODEL_TRIGGER)


# --- heads after each settled ranking -----------------------------------------------------------------


def settled_ranking_stamp(context: Context) -> str | None:
    """When the quick loop last stored a settled pass (FOLD_SPLITS splits), or None before the first one."""
    seen = app_state.get_state(context.database, QUICK_LOOP_KEY)
    if seen.get("splits", 0) < FOLD_SPLITS or not seen.get("rescored_at"):
        return None
    return seen["rescored_at"]


def run_head_check(context: Context, policy: LoopPolicy) -> int | None:
    """After each settled ranking: fit a head on today's train split; if it errs less than the served version
    on today's validation split, train it as a version (the gate judges it like any). The run id or None.

    What it found is kept (head_check_note) for Admin → Models & loop.
    """
    database = context.database
    stamp = settled_ranking_stamp(context)
    promoted = version_db.promoted_version(database)
    if not policy.head_models or stamp is None or promoted is None or run_db.active_run(database) is not None:
        return None
    if app_state.get_state(database, HEAD_CHECK_KEY).get("stamp") == stamp:
        return None
    from models.predictor import LoadedModel, NoOnnxModel
    from training.data import NotEnoughData, snapshot, snapshot_digest
    from training.gate import error_rate
    from training.head import HeadUnavailable, head_estimate

    note = {"stamp": stamp, "served": promoted.version, "at": utcnow().isoformat()}
    try:
        frame = snapshot(context)
        if promoted.metrics.get("kind") == run_db.HEAD and _trained_on(context, promoted) == snapshot_digest(frame):
            # The same head again: float32 against float64 may flip one borderline image either way, and a
            # "better" copy would be promoted, re-ranked, checked and copied again, for ever.
            outcome = f"{promoted.version} is a head trained on today's labels already"
            app_state.set_state(database, HEAD_CHECK_KEY, {**note, "outcome": outcome})
            return None
        estimate = head_estimate(context, frame)
        valid = frame[frame["is_valid"]]
        # The web process never loads torch: a version without ONNX cannot be measured here.
        served = LoadedModel(context.settings.data_dir / promoted.path, threads=1, onnx_only=True)
        served_error = error_rate(served, valid["path"].tolist(), valid["label"].tolist())
    except (NotEnoughData, HeadUnavailable, NoOnnxModel) as reason:
        app_state.set_state(database, HEAD_CHECK_KEY, {**note, "outcome": str(reason)})
        return None
    note |= {"head_error": estimate.error, "served_error": served_error, "valid_images": estimate.valid_count}
    if estimate.error >= served_error:
        outcome = f"{promoted.version} is served: the head would err on {estimate.error:.1%}, it on {served_error:.1%}"
        app_state.set_state(database, HEAD_CHECK_KEY, {**note, "outcome": outcome})
        return None
    run_id = _start(context, policy, HEAD_TRIGGER, run_db.HEAD)
    outcome = (
        f"training run {run_id}: the head would err on {estimate.error:.1%}, {promoted.version} on {served_error:.1%}"
        if run_id is not None
        else "another run started first"
    )
    app_state.set_state(database, HEAD_CHECK_KEY, {**note, "outcome": outcome, "run_id": run_id})
    log.info("head check: %s", outcome)
    return run_id


def _trained_on(context: Context, version: version_db.VersionRow) -> str | None:
    """The snapshot digest (which images, labels and splits) a version was trained on, if it says."""
    from models.registry import read_meta

    try:
        return (read_meta(context.settings.data_dir / version.path).get("data") or {}).get("snapshot")
    except (OSError, ValueError):
        return None


def head_check_note(context: Context) -> dict:
    """What the last head check found (empty before the first): stamp, errors, outcome."""
    return app_state.get_state(context.database, HEAD_CHECK_KEY)


# --- APScheduler wiring ----------------------------------------------------------------------------


def quick_loop_job(key: str) -> None:
    """APScheduler entry point of the quick loop."""
    scheduler = _schedulers.get(key)
    if scheduler is not None:
        policy = load_policy(scheduler.context)
        if policy.quick_loop:
            run_quick_loop(scheduler.context, policy, scheduler.holder)


def retrain_check_job(key: str) -> None:
    """APScheduler entry point of the first model, the head check, the decision-count retrain (and of dead-run
    recovery)."""
    scheduler = _schedulers.get(key)
    if scheduler is not None:
        fail_dead_runs(scheduler.context)
        policy = load_policy(scheduler.context)
        run_first_model_check(scheduler.context, policy)
        run_first_finetune_check(scheduler.context, policy)
        run_head_check(scheduler.context, policy)
        run_retrain_check(scheduler.context, policy)
        scheduler.sync_cron()


def scheduled_retrain_job(key: str) -> None:
    """APScheduler entry point of the cron retrain."""
    scheduler = _schedulers.get(key)
    if scheduler is not None:
        run_scheduled_retrain(scheduler.context, load_policy(scheduler.context))


def hook_deliveries_job(key: str) -> None:
    """APScheduler entry point of the event hooks' delivery pump (training/hooks.py)."""
    scheduler = _schedulers.get(key)
    if scheduler is not None:
        deliver_due(scheduler.context, holder=scheduler.holder)


class LoopScheduler:
    """APScheduler with Loupe's jobs, started and stopped with the server."""

    def __init__(self, context: Context, tick_s: float = 5.0, retrain_check_s: float = 30.0):
        self.context = context
        self.tick_s = tick_s
        self.retrain_check_s = retrain_check_s
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{id(self)}"
        # Stored jobs carry this key; it names the database, not the process, so every process sharing
        # the database (and its job table) finds its own scheduler under it when a job comes due.
        self.key = hashlib.sha256(context.settings.resolved_database_url.encode()).hexdigest()[:16]
        self._cron: str | None = None
        self._scheduler = None

    def start(self) -> None:
        """Mark dead runs failed, then start the jobs."""
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
        from apscheduler.schedulers.background import BackgroundScheduler

        # A tick that finds the previous one still rescoring is skipped on purpose; APScheduler would
        # warn about each, and log every run at INFO. The loop logs what it does itself.
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        logging.getLogger("apscheduler.executors").setLevel(logging.WARNING)
        failed = fail_dead_runs(self.context)
        if failed:
            log.warning("training runs %s were left active by a dead process; marked failed", failed)
        store = SQLAlchemyJobStore(engine=self.context.database.write_engine, tablename=scheduler_jobs.name)
        self._scheduler = BackgroundScheduler(
            jobstores={"default": store},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 300},
            timezone="UTC",
        )
        _schedulers[self.key] = self
        self._scheduler.start()
        # Jobs are stored under fixed ids: a restart replaces them instead of adding copies.
        self._scheduler.add_job(
            "training.scheduler:quick_loop_job", "interval", seconds=self.tick_s, args=[self.key],
            id="quick_loop", name="quick loop: rescore after decisions", replace_existing=True,
        )  # fmt: skip
        self._scheduler.add_job(
            "training.scheduler:retrain_check_job", "interval", seconds=self.retrain_check_s, args=[self.key],
            id="retrain_check", name="first model / retrain after N decisions", replace_existing=True,
            # The first check comes a tick after start, not a whole interval: a fresh instance's first
            # model should not wait half a minute for nothing.
            next_run_time=utcnow() + timedelta(seconds=min(self.tick_s, self.retrain_check_s)),
        )  # fmt: skip
        self._scheduler.add_job(
            "training.scheduler:hook_deliveries_job", "interval", seconds=self.tick_s, args=[self.key],
            id="hook_deliveries", name="event hook deliveries", replace_existing=True,
        )  # fmt: skip
        self.sync_cron()

    def sync_cron(self) -> None:
        """Make the cron job match the stored policy (it may have changed in another process)."""
        if self._scheduler is None:
            return
        cron = load_policy(self.context).retrain_cron.strip()
        if cron == self._cron:
            return
        if cron:
            self._scheduler.add_job(
                "training.scheduler:scheduled_retrain_job", cron_trigger(cron), args=[self.key],
                id="scheduled_retrain", name=f"scheduled retrain ({cron} UTC)", replace_existing=True,
            )  # fmt: skip
        elif self._scheduler.get_job("scheduled_retrain"):
            self._scheduler.remove_job("scheduled_retrain")
        self._cron = cron

    def jobs(self) -> list[tuple[str, str]]:
        """(job name, next run time) for the Admin tab."""
        if self._scheduler is None:
            return []
        return [(job.name, str(job.next_run_time)) for job in self._scheduler.get_jobs()]

    def stop(self) -> None:
        """Stop the jobs, waiting for a rescore in progress to finish (training runs go on in their process)."""
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=True)
        _schedulers.pop(self.key, None)
