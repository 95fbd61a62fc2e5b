"""The review service: every rule of review, called alike by the REST routes, the Gradio tabs and the CLI.

What lives here and nowhere else:
- the actions (ACTIONS): which role may take each, which image status it applies to, what it does to
  the image's status and label, whether it takes the image out of the queue, whether it says the
  label was wrong, whether it can be undone;
- undo: the reverse of the reviewer's newest undoable decision, derived from that action;
- roles: who may do what (require_role);
- the stale-view check: a decision names the last decision its view showed, and is refused when the
  image was decided since;
- what a decision records: the promoted model version serving when it was made, and the scoring pass
  that ranked the image with the image's score in it;
- leases: the next item is leased to one expert at a time; a recorded decision or a skip ends it;
- blind checks: an admin's audit (images drawn at random by score band) and second opinions (a share of
  decisions, and every relabel, by default) are answered blind, without the model's prediction, score or
  the first answer; a second opinion never goes to the expert who made the decision; they are mixed into
  the unfiltered queue one in two while any wait (for callers that ask: the Review tab, REST with
  blind=true); an admin settles two experts' disagreement, once;
- class guidelines: admins write them, experts read them;
- an image's history: every decision and blind answer on it.

db/ keeps the SQL and the transaction; the edges translate the named refusals (errors.py).
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime

from context import Context
from db import app_state
from db import blind as blind_db
from db import decisions as decision_db
from db import duplicate_pairs as pair_db
from db import guides as guide_db
from db import images as image_db
from db import queue as queue_db
from db import scores as score_db
from db.blind import AUDIT, SECOND, decision_answer
from db.decisions import DecisionRow, LockedImage, Outcome
from db.guides import Guide
from db.labels import list_label_names
from db.stats import ReviewCounts
from db.stats import review_counts as count_reviews
from db.users import UserRow
from errors import Conflict, LoupeError, PermissionDenied  # noqa: F401 (PermissionDenied: callers catch it here)
from labeling import audits
from labeling.imports.labels import clean_label
from labeling.ranking import neighbours
from labeling.ranking.duplicates import PAIR_SCORER
from labeling.ranking.scoring import serving_scorer

EXPERT, ADMIN = "expert", "admin"
UNDO = "undo"
LEASE_S = 300  # how long the next item stays an expert's alone; a lease that runs out frees the item
SETTLE = "settle"  # the purpose of an admin's decision that settles a disagreement (audit answers: AUDIT)
JUDGING = ("keep", "relabel", "delete")  # the actions a blind check is answered with
MAX_AUDIT = 5000  # images one audit may draw
MAX_GUIDE_CHARS = 2000
MAX_GUIDE_EXAMPLES = 8


class StaleDecision(Conflict):
    """The decision no longer fits the image; the message says what changed."""


class BlindCheckWaiting(Conflict):
    """What would be shown about an image would unblind the check it waits for from this user."""


class DecisionError(LoupeError, ValueError):
    """A decision that makes no sense as asked (unknown action, no label for a relabel…)."""


@dataclass(frozen=True)
class Action:
    """One thing an expert can do to an image, and every rule about it."""

    name: str
    role: str  # the least role that may take it (admins hold every role)
    applies_to: str  # the image status it needs
    makes: str  # the image status after it
    relabels: bool = False  # sets the label to the one given
    reviews: bool = True  # takes the image out of the review queue (until undone)
    finds_error: bool = False  # the expert judged the label wrong
    undoable: bool = True
    removes_files: bool = False  # the image's files are deleted once the decision is recorded


ACTIONS: dict[str, Action] = {
    action.name: action
    for action in (
        Action("keep", EXPERT, "active", "active"),
        Action("relabel", EXPERT, "active", "active", relabels=True, finds_error=True),
        Action("delete", EXPERT, "active", "deleted", finds_error=True),
        # Experts take back their own deletes with undo; bringing back anyone's is an admin's call.
        Action("restore", ADMIN, "deleted", "active"),
        # The row stays for the log; the files go. Nothing can bring them back.
        Action("purge", ADMIN, "deleted", "purged", undoable=False, removes_files=True),
    )
}
REVIEWING = tuple(name for name, action in ACTIONS.items() if action.reviews)
UNDOABLE = tuple(name for name, action in ACTIONS.items() if action.undoable)


# --- who may do what --------------------------------------------------------------------------------


def require_role(user: UserRow | None, role: str) -> UserRow:
    """The enabled user, if they hold role (admins hold every role); else PermissionDenied."""
    if user is None or user.disabled:
        raise PermissionDenied("please log in first")
    if role == ADMIN and user.role != ADMIN:
        raise PermissionDenied("this needs the admin role")
    if user.role not in (EXPERT, ADMIN):
        raise PermissionDenied("this needs the expert or admin role")
    return user


def holds_role(user: UserRow | None, role: str) -> bool:
    """Whether require_role would let the user through."""
    try:
        require_role(user, role)
    except PermissionDenied:
        return False
    return True


def action_named(name: str) -> Action:
    """The action called name, or DecisionError listing the known ones."""
    if name not in ACTIONS:
        raise DecisionError(f"unknown action {name!r}; choose one of {', '.join([*ACTIONS, UNDO])}")
    return ACTIONS[name]


# --- deciding ---------------------------------------------------------------------------------------


def _fresh(image: LockedImage | None, image_id: int, expected_last_id: int | None) -> LockedImage:
    """The image, if nobody decided it since the view the decision was made on; else StaleDecision."""
    if image is None:
        raise StaleDecision(f"image {image_id} no longer exists")
    if image.last_decision_id != expected_last_id:
        raise StaleDecision(
            f"image {image_id} was decided by {image.last_decided_by() or 'someone else'} meanwhile; reload it"
        )
    return image


def _plan(
    action: Action, image_id: int, expected_last_id: int | None, new_label: str | None, scorer: str, score, purpose
):
    def plan(locked: LockedImage | None) -> Outcome:
        image = _fresh(locked, image_id, expected_last_id)
        if image.status != action.applies_to:
            if action.applies_to == "active":
                raise StaleDecision(f"image {image_id} is {image.status} now; restore it before deciding on it")
            raise DecisionError(
                f"image {image_id} is {image.status}; only {action.applies_to} images can be {action.name}d"
            )
        return Outcome(
            action=action.name,
            status=action.makes,
            label=new_label if action.relabels else image.label,
            model_version=image.promoted_version,
            scorer=scorer,
            score=image.score if score is None else score,
            purpose=purpose,
        )

    return plan


def decide(
    context: Context,
    user: UserRow | None,
    image_id: int,
    action_name: str,
    *,
    expected_last_id: int | None,
    new_label: str | None = None,
    scorer: str | None = None,
    score: float | None = None,
    purpose: str | None = None,
) -> DecisionRow:
    """Record one action on the image as the user saw it (expected_last_id), then end their lease.

    The decision records the scoring pass that ranked the image (the queue's, unless scorer names
    another, as a duplicate pair's does) with the image's score in it (or score, when given). A share of
    decisions, and every relabel by default, is sent for a blind second opinion (ReviewPolicy). purpose
    marks a decision made outside the ranked queue (a Label Studio annotation), which the queue's
    precision does not count.
    """
    row = _decide(context, user, image_id, action_name, expected_last_id, new_label, scorer, score, purpose=purpose)
    _ask_second_opinion(context, row, user.id)
    return row


def _decide(
    context: Context,
    user: UserRow | None,
    image_id: int,
    action_name: str,
    expected_last_id: int | None,
    new_label: str | None = None,
    scorer: str | None = None,
    score: float | None = None,
    *,
    purpose: str | None,
) -> DecisionRow:
    action = action_named(action_name)
    user = require_role(user, action.role)
    if action.relabels:
        if not (new_label or "").strip():
            raise DecisionError("a relabel needs the new label")
        new_label = clean_label(new_label)
    scorer = scorer or serving_scorer(context)
    plan = _plan(action, image_id, expected_last_id, new_label, scorer, score, purpose)
    # A recorded decision ends the expert's lease, in the same transaction; a refused one leaves it.
    row = decision_db.record_decision(context.database, image_id, user.id, plan, scorer=scorer, end_leases=True)
    if action.removes_files:
        image = image_db.get_image(context.database, image_id)
        for relpath in (image.stored_path, image.thumb_path):
            context.store.absolute(relpath).unlink(missing_ok=True)
    return row


def decide_class(
    context: Context,
    user: UserRow | None,
    image_id: int,
    label: str,
    *,
    expected_last_id: int | None,
    purpose: str | None = None,
) -> DecisionRow:
    """The expert says the image shows class label (a class key): a keep when that is its label already,
    else a relabel; so confirming a label is never counted as a wrong label found."""
    image = image_db.get_image(context.database, image_id)
    if image is not None and image.label == label:
        return decide(context, user, image_id, "keep", expected_last_id=expected_last_id, purpose=purpose)
    return decide(
        context, user, image_id, "relabel", expected_last_id=expected_last_id, new_label=label, purpose=purpose
    )


def decide_on_current(
    context: Context, user: UserRow | None, image_id: int, action_name: str, **details
) -> DecisionRow:
    """decide() on the image as it is now: for admin actions and pairs, which show no single view."""
    expected = decision_db.last_decision_id(context.database, image_id)
    return decide(context, user, image_id, action_name, expected_last_id=expected, **details)


def undo(context: Context, user: UserRow | None) -> DecisionRow:
    """Reverse the user's newest undoable decision that is not undone yet, as a new decision."""
    user = require_role(user, EXPERT)

    def plan(target: DecisionRow | None, locked: LockedImage | None) -> Outcome:
        if target is None:
            raise DecisionError("there is nothing of yours to undo")
        image = _fresh(locked, target.image_id, target.id)
        action = ACTIONS[target.action]
        require_role(user, action.role)  # taking back a restore is an admin's call, like the restore
        return Outcome(
            action=UNDO,
            status=action.applies_to,
            label=target.old_label if action.relabels else image.label,
            model_version=image.promoted_version,
            scorer=target.scorer,
            score=target.score,
            undoes_id=target.id,
        )

    row = decision_db.record_undo(context.database, user.id, UNDOABLE, plan, end_leases=True)
    blind_db.withdraw_checks_of(context.database, row.undoes_id)  # nothing left to give a second opinion on
    return row


@dataclass(frozen=True)
class Choice:
    """One decision of a batch: what to do to which image, as the expert saw it."""

    image_id: int
    action: str
    expected_last_id: int | None
    new_label: str | None = None


@dataclass
class BatchResult:
    """What a batch of decisions did: the decisions recorded and a sentence per refusal."""

    recorded: list[DecisionRow] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


def decide_many(context: Context, user: UserRow | None, choices: Iterable[Choice]) -> BatchResult:
    """Each choice on its own (one refused does not stop the rest): the Grid's page, the Admin's selection."""
    require_role(user, EXPERT)
    result = BatchResult()
    for choice in choices:
        try:
            result.recorded.append(
                decide(
                    context,
                    user,
                    choice.image_id,
                    choice.action,
                    expected_last_id=choice.expected_last_id,
                    new_label=choice.new_label,
                )
            )
        except PermissionDenied:
            raise  # the same for every choice: one answer, not one per image
        except LoupeError as refused:
            result.refused.append(f"image {choice.image_id}: {refused.message}")
    return result


def _current_choices(context: Context, image_ids: Sequence[int], action: str) -> list[Choice]:
    return [Choice(i, action, decision_db.last_decision_id(context.database, i)) for i in image_ids]


def restore_images(context: Context, user: UserRow | None, image_ids: Sequence[int]) -> BatchResult:
    """Bring deleted images back into the dataset (admins)."""
    require_role(user, ACTIONS["restore"].role)
    return decide_many(context, user, _current_choices(context, image_ids, "restore"))


def purge_images(context: Context, user: UserRow | None, image_ids: Sequence[int]) -> BatchResult:
    """Remove deleted images' files for good (admins); their rows and decisions stay as the record."""
    require_role(user, ACTIONS["purge"].role)
    return decide_many(context, user, _current_choices(context, image_ids, "purge"))


# --- the queue --------------------------------------------------------------------------------------


def queue_page(
    context: Context, user: UserRow | None, filters: queue_db.QueueFilters, limit: int = 50, offset: int = 0
) -> queue_db.QueuePage:
    """A page of the queue in review order (unreviewed first, likeliest wrong first), with its counts."""
    require_role(user, EXPERT)
    return queue_db.queue_page(context.database, serving_scorer(context), filters, limit, offset, reviewing=REVIEWING)


def next_item(
    context: Context,
    user: UserRow | None,
    filters: queue_db.QueueFilters,
    skip: tuple[int, ...] = (),
    *,
    blind: bool = False,
) -> queue_db.QueueItem | None:
    """The next item leased to the user; None when none is left.

    With blind (the Review tab; REST clients that ask), while blind checks wait (audit items, second
    opinions this user may give), every other item of the unfiltered queue is one of them, answered with
    answer_blind; otherwise the likeliest wrong unreviewed item nobody else holds. A filtered queue (a
    class, a split, a map selection) shows only ranked items: a blind check of another class would not
    belong there. Callers that do not ask never get a blind item, so a script that only knows decide()
    cannot be handed one it would decide as an ordinary decision, again and again.
    """
    user = require_role(user, EXPERT)
    mixes = blind and _mixes_blind_checks(filters)
    if mixes and not blind_db.last_was_blind(context.database, user.id):
        item = _next_blind(context, user, skip)
        if item is not None:
            return item
    item = queue_db.lease_next(
        context.database, serving_scorer(context), user.id, filters, reviewing=REVIEWING, lease_s=LEASE_S, skip=skip
    )
    if item is None and mixes:
        item = _next_blind(context, user, skip)
    return item


def skip(context: Context, user: UserRow | None) -> None:
    """Give back the item the user holds without deciding it."""
    user = require_role(user, EXPERT)
    queue_db.release_leases(context.database, user.id)


@dataclass(frozen=True)
class Evidence:
    """Confidently-labeled images like the one under review: of its given class and of the predicted one.

    given is None for an unlabeled image; predicted is None when the pass predicts the given class or did
    not score the image (note says why).
    """

    image_id: int
    given: neighbours.Neighbours | None
    predicted: neighbours.Neighbours | None
    note: str | None = None


def evidence(context: Context, user: UserRow | None, image_id: int, count: int = neighbours.NEIGHBOURS) -> Evidence:
    """The nearest confident neighbours of the image in its current class and in the class the queue's
    scoring pass predicts, from the cached embeddings (see labeling/ranking/neighbours.py)."""
    _not_unblinding(context, require_role(user, EXPERT), image_id)
    image = image_db.get_image(context.database, image_id)
    if image is None or image.status != "active":
        return Evidence(image_id, None, None, f"image {image_id} is not in the dataset")
    index = neighbours.current_index(context)
    score = score_db.score_of(context.database, index.marker[0], image_id)
    predicted_label = score.predicted_label if score is not None else None
    given = predicted = None
    if image.label is not None:
        given = neighbours.nearest_confident(context, image_id, image.label, count, index)
    if predicted_label is not None and predicted_label != image.label:
        predicted = neighbours.nearest_confident(context, image_id, predicted_label, count, index)
    note = None if score is not None else "The last scoring pass did not score this image, so it has no prediction."
    return Evidence(image_id, given, predicted, note)


def warm_evidence(context: Context) -> None:
    """Build the look-alike index in the background (at start-up), so the first reviewer does not wait for it."""
    neighbours.warm(context)


def any_scores(context: Context) -> bool:
    """Whether the current scoring pass has ranked anything (else the queue is empty for want of scores)."""
    unfiltered = queue_db.queue_page(
        context.database, serving_scorer(context), queue_db.QueueFilters(), limit=1, reviewing=REVIEWING
    )
    return unfiltered.total > 0


def review_counts(context: Context) -> ReviewCounts:
    """Images reviewed and relabeled (undone decisions left out), and decisions logged."""
    relabeling = tuple(name for name, action in ACTIONS.items() if action.relabels)
    return count_reviews(context.database, reviewing=REVIEWING, relabeling=relabeling)


# --- near-duplicate pairs ---------------------------------------------------------------------------

PAIR_DELETES = {  # which side(s) of a pair each call deletes
    "keep_first": ("second_id",),
    "keep_second": ("first_id",),
    "keep_both": (),
    "keep_neither": ("first_id", "second_id"),
}


def resolve_pair(context: Context, user: UserRow | None, pair_id: int, resolution: str) -> None:
    """Apply an expert's call on a near-duplicate pair: delete the image(s) not kept, as decisions."""
    user = require_role(user, EXPERT)
    if resolution not in PAIR_DELETES:
        raise DecisionError(f"unknown choice {resolution!r}; choose one of {', '.join(PAIR_DELETES)}")
    pair = pair_db.get_pair(context.database, pair_id)
    # Claiming the pair first makes the call once: a second expert on the same pair is refused here.
    if pair is None or not pair_db.claim_pair(context.database, pair_id, resolution, user.id):
        raise StaleDecision(f"duplicate pair {pair_id} was already decided or does not exist")
    for side in PAIR_DELETES[resolution]:
        image_id = getattr(pair, side)
        try:
            decide_on_current(context, user, image_id, "delete", scorer=PAIR_SCORER, score=pair.similarity)
        except StaleDecision:
            pass  # deleted meanwhile (in the queue, or through another pair): the call's outcome holds


# --- blind checks: audits and second opinions -------------------------------------------------------

REVIEW_POLICY_KEY = "review_policy"


@dataclass(frozen=True)
class ReviewPolicy:
    """Which decisions get a blind second opinion from another expert."""

    second_opinion_share: float = 0.1  # of the other decisions, drawn at random
    second_opinion_relabels: bool = True  # every relabel to another class
    audit_second_opinion: bool = True  # every audit answer: the audit measures, so it is checked twice


def load_review_policy(context: Context) -> ReviewPolicy:
    """The stored review policy (defaults for what was never set)."""
    stored = app_state.get_state(context.database, REVIEW_POLICY_KEY)
    known = {name: stored[name] for name in ReviewPolicy.__dataclass_fields__ if name in stored}
    return ReviewPolicy(**known)


def save_review_policy(context: Context, user: UserRow | None, policy: ReviewPolicy) -> ReviewPolicy:
    """Store the review policy (admins)."""
    require_role(user, ADMIN)
    share = float(policy.second_opinion_share)
    if not 0.0 <= share <= 1.0:
        raise DecisionError(f"the second-opinion share is a fraction from 0 to 1, not {share}")
    policy = ReviewPolicy(share, bool(policy.second_opinion_relabels), bool(policy.audit_second_opinion))
    app_state.set_state(context.database, REVIEW_POLICY_KEY, asdict(policy))
    return policy


def wants_second_opinion(row: DecisionRow, policy: ReviewPolicy) -> bool:
    """Whether the decision goes to another expert, blind: audit answers and relabels by policy, else a share
    drawn per decision (seeded by its id, so the draw is the same on every run)."""
    if row.action not in JUDGING or row.purpose not in (None, AUDIT):
        return False
    if row.purpose == AUDIT:
        return policy.audit_second_opinion
    if row.action == "relabel" and row.new_label != row.old_label and policy.second_opinion_relabels:
        return True
    return random.Random(row.id).random() < policy.second_opinion_share


def _ask_second_opinion(context: Context, row: DecisionRow, decider: int, audit_id: int | None = None) -> None:
    if not wants_second_opinion(row, load_review_policy(context)):
        return
    blind_db.add_task(
        context.database,
        SECOND,
        row.image_id,
        row.old_label,
        first_decision_id=row.id,
        excluded_user_id=decider,
        audit_id=audit_id,
    )


def _not_unblinding(context: Context, user: UserRow, image_id: int) -> None:
    """Refuse to show an image's prediction or history to an expert whose blind answer on it is awaited."""
    if blind_db.waits_for(context.database, user.id, image_id):
        raise BlindCheckWaiting(
            f"image {image_id} waits for your blind check; its prediction and history show once you answered it"
        )


def _mixes_blind_checks(filters: queue_db.QueueFilters) -> bool:
    return filters in (queue_db.QueueFilters(), queue_db.QueueFilters(reviewed=False))


def _next_blind(context: Context, user: UserRow, skip: tuple[int, ...]) -> queue_db.QueueItem | None:
    found = blind_db.lease_next_task(context.database, user.id, lease_s=LEASE_S, skip=skip)
    if found is None:
        return None
    task, image, label_now, last_decision_id = found
    # An audit asks about the label as it is; a second opinion about the label the first expert saw.
    shown = label_now if task.kind == AUDIT else task.shown_label
    return queue_db.QueueItem(
        image_id=image.id,
        original_name=image.original_name,
        source=image.source,
        stored_path=image.stored_path,
        label=shown,
        predicted_label=None,
        score=None,
        top=[],
        split=image.split,
        reviewed=False,
        last_decision_id=last_decision_id,
        task_id=task.id,
        task_kind=task.kind,
    )


@dataclass(frozen=True)
class BlindAnswer:
    """What answering a blind check did: the audit's decision, or whether a second opinion agreed."""

    task_id: int
    kind: str
    action: str
    label: str | None  # the label the expert says the image shows; None: delete it
    decision: DecisionRow | None  # an audit answer is a normal decision
    status: str  # answered (audit) | agreed | disputed


def _answer_label(action: Action, shown: str | None, new_label: str | None) -> str | None:
    if action.name == "delete":
        return None
    if action.relabels:
        if not (new_label or "").strip():
            raise DecisionError("a relabel needs the new label")
        return clean_label(new_label)
    return shown


def answer_blind(
    context: Context,
    user: UserRow | None,
    task_id: int,
    action_name: str,
    *,
    expected_last_id: int | None,
    new_label: str | None = None,
) -> BlindAnswer:
    """Answer a blind check with keep, relabel or delete.

    An audit item's answer is a normal decision, marked audit in the log. A second opinion changes nothing
    on the image: it agrees with the decision it checks, or opens a disagreement for an admin to settle.
    """
    user = require_role(user, EXPERT)
    action = action_named(action_name)
    if action.name not in JUDGING:
        raise DecisionError(f"a blind check is answered with {', '.join(JUDGING)}, not {action.name}")
    database = context.database
    task = blind_db.get_task(database, task_id)
    if task is None or task.status != blind_db.OPEN:
        raise StaleDecision(f"blind check {task_id} was answered or withdrawn meanwhile; press Next")
    if task.excluded_user_id == user.id:
        raise PermissionDenied("a second opinion comes from another expert: the decision it checks is yours")
    if task.kind == AUDIT:
        image = image_db.get_image(database, task.image_id)
        label = _answer_label(action, image.label if image else None, new_label)
        # Claimed first so the item is answered once; given back if the decision is refused.
        with _claimed(
            context,
            task.id,
            blind_db.OPEN,
            blind_db.ANSWERED,
            f"blind check {task_id} was answered meanwhile; press Next",
        ):
            row = _decide(context, user, task.image_id, action.name, expected_last_id, new_label, purpose=AUDIT)
        blind_db.record_answer(database, task.id, user.id, action.name, label, decision_id=row.id)
        _ask_second_opinion(context, row, user.id, audit_id=task.audit_id)
        return BlindAnswer(task.id, AUDIT, action.name, label, row, blind_db.ANSWERED)
    label = _answer_label(action, task.shown_label, new_label)
    first = decision_db.get_decision(database, task.first_decision_id)
    agreed = label == decision_answer(first.action, first.old_label, first.new_label)
    status = blind_db.AGREED if agreed else blind_db.DISPUTED
    if not blind_db.claim_task(database, task.id, blind_db.OPEN, status):
        raise StaleDecision(f"blind check {task_id} was answered or withdrawn meanwhile; press Next")
    blind_db.record_answer(database, task.id, user.id, action.name, label)
    return BlindAnswer(task.id, SECOND, action.name, label, None, status)


@contextmanager
def _claimed(context: Context, task_id: int, holding: str, claimed: str, refusal: str) -> Iterator[None]:
    """Move the task from holding to claimed for the block, so that its work is done once; StaleDecision
    (refusal) when another request claimed it first; moved back when the block raises."""
    if not blind_db.claim_task(context.database, task_id, holding, claimed):
        raise StaleDecision(refusal)
    try:
        yield
    except BaseException:
        blind_db.claim_task(context.database, task_id, claimed, holding)
        raise


def answer_blind_class(
    context: Context, user: UserRow | None, task_id: int, label: str, shown: str | None, *, expected_last_id
) -> BlindAnswer:
    """A class key on a blind check: a keep when it is the label shown, else a relabel."""
    action = "keep" if label == shown else "relabel"
    return answer_blind(context, user, task_id, action, expected_last_id=expected_last_id, new_label=label)


def disagreements(context: Context, user: UserRow | None) -> list[blind_db.Judgement]:
    """Second opinions that disagree with the decision they check, oldest first, for an admin to settle."""
    require_role(user, ADMIN)
    return blind_db.judgements(context.database, statuses=[blind_db.DISPUTED])


def settle(context: Context, user: UserRow | None, task_id: int, label: str | None) -> DecisionRow | None:
    """An admin's answer to a disagreement: the image shows label (None: delete it). It is applied as a
    decision marked settle, once; an admin who gave one of the two answers leaves it to another admin."""
    user = require_role(user, ADMIN)
    database = context.database
    task = blind_db.get_task(database, task_id)
    found = [j for j in blind_db.judgements(database, image_id=task.image_id) if j.task_id == task_id] if task else []
    if not found:
        raise DecisionError(f"there is no second opinion {task_id}")
    judgement = found[0]
    if judgement.status != blind_db.DISPUTED:
        raise StaleDecision(f"second opinion {task_id} is {judgement.status}, not a disagreement waiting to be settled")
    if user.name in (judgement.first.user_name, judgement.second.user_name if judgement.second else None):
        raise PermissionDenied("you gave one of the two answers; another admin settles it")
    if label is not None:
        label = clean_label(label)
    with _claimed(
        context, task_id, blind_db.DISPUTED, blind_db.SETTLED, f"second opinion {task_id} was settled meanwhile"
    ):
        row = _apply_settlement(context, user, judgement.image_id, label)
    action = "delete" if label is None else ("keep" if row is None or row.action == "keep" else "relabel")
    blind_db.record_answer(
        database, task_id, user.id, action, label, decision_id=row.id if row else None,
        settled_decision_id=row.id if row else None,
    )  # fmt: skip
    return row


def _apply_settlement(context: Context, user: UserRow, image_id: int, label: str | None) -> DecisionRow | None:
    image = image_db.get_image(context.database, image_id)
    if image is None or image.status == "purged":
        raise StaleDecision(f"image {image_id} is gone; nothing can be settled on it")

    def on_current(action: str, **details) -> DecisionRow:
        expected = decision_db.last_decision_id(context.database, image_id)
        return _decide(context, user, image_id, action, expected, purpose=SETTLE, **details)

    if label is None:
        return on_current("delete") if image.status == "active" else None  # deleted already: it stays so
    row = None
    if image.status == "deleted":
        row = on_current("restore")
    if image.label != label:
        row = on_current("relabel", new_label=label)
    return row if row is not None else on_current("keep")


def start_audit(context: Context, user: UserRow | None, size: int, seed: int | None = None) -> audits.AuditDrawn:
    """Draw size unreviewed images at random, stratified by score band, as blind audit items (admins)."""
    user = require_role(user, ADMIN)
    if not 1 <= int(size) <= MAX_AUDIT:
        raise DecisionError(f"an audit draws from 1 to {MAX_AUDIT} images, not {size}")
    scorer = serving_scorer(context)
    population = blind_db.unreviewed_scored(context.database, scorer, reviewing=REVIEWING)
    if not population:
        raise DecisionError("there is nothing to audit: no unreviewed image has a score yet (run `loupe score`)")
    drawn = audits.draw(population, int(size), seed)
    audit_id = blind_db.create_audit(context.database, user.id, scorer, drawn.bands, drawn.members)
    return audits.AuditDrawn(audit_id, drawn.bands, drawn.sampled, len(population))


def dataset_estimates(context: Context, user: UserRow | None) -> audits.Estimates:
    """How clean the data is now: the queue's precision, the wrong labels left with an interval, the
    stopping hint and the experts' agreement (labeling/audits.py says how each is computed)."""
    require_role(user, EXPERT)
    return measure_cleanliness(context)


def measure_cleanliness(context: Context) -> audits.Estimates:
    """dataset_estimates for the command line, whose operator holds the database itself (no role to check)."""
    finding = tuple(name for name, action in ACTIONS.items() if action.finds_error and action.name in JUDGING)
    return audits.measure(context, reviewing=REVIEWING, judging=JUDGING, finding=finding)


# --- class guidelines and history -------------------------------------------------------------------


def class_guide(context: Context, user: UserRow | None, label: str | None) -> Guide | None:
    """The admin's guideline for a class, or None."""
    require_role(user, EXPERT)
    return guide_db.get_guide(context.database, label) if label else None


def save_class_guide(
    context: Context, user: UserRow | None, label: str, definition: str, example_ids: Sequence[int]
) -> Guide:
    """Write a class's definition and pinned examples (admins): a known class, a short text, a few active images."""
    user = require_role(user, ADMIN)
    if label not in list_label_names(context.database):
        raise DecisionError(f"there is no class {label!r}")
    definition = (definition or "").strip()
    if len(definition) > MAX_GUIDE_CHARS:
        raise DecisionError(f"a definition is at most {MAX_GUIDE_CHARS} characters, not {len(definition)}")
    ids = list(dict.fromkeys(int(i) for i in example_ids))
    if len(ids) > MAX_GUIDE_EXAMPLES:
        raise DecisionError(f"pin at most {MAX_GUIDE_EXAMPLES} examples, not {len(ids)}")
    # Row ids are 32-bit on PostgreSQL: a larger number would fail the query; no image has one anyway.
    possible = [i for i in ids if 1 <= i < 2**31]
    missing = sorted(set(ids) - guide_db.active_image_ids(context.database, possible))
    if missing:
        raise DecisionError(f"no active image has id {', '.join(map(str, missing))}")
    guide_db.save_guide(context.database, label, definition, ids, user.id)
    return guide_db.get_guide(context.database, label)


@dataclass(frozen=True)
class HistoryEntry:
    """One thing that happened to an image: a decision, or a blind answer that changed nothing on it."""

    at: datetime
    user_name: str | None
    what: str  # the action, with its purpose: "relabel", "keep (audit)", "second opinion: relabel"…
    old_label: str | None
    new_label: str | None
    model_version: str | None
    score: float | None
    decision_id: int | None


@dataclass(frozen=True)
class ImageHistory:
    """An image as it is now and everything decided on it, oldest first."""

    image_id: int
    original_name: str
    label: str | None
    status: str
    entries: list[HistoryEntry]


def image_history(context: Context, user: UserRow | None, image_id: int) -> ImageHistory:
    """Every decision on the image (who, when, action, labels before and after, the model version serving and
    the score) and every blind answer given on it."""
    _not_unblinding(context, require_role(user, EXPERT), image_id)
    image = image_db.get_image(context.database, image_id)
    if image is None:
        raise DecisionError(f"there is no image {image_id}")
    entries = [
        HistoryEntry(d.created_at, d.user_name, f"{d.action} ({d.purpose})" if d.purpose else d.action,
                     d.old_label, d.new_label, d.model_version, d.score, d.id)
        for d in decision_db.list_decisions(context.database, image_id)
    ]  # fmt: skip
    answered: set[int] = set()
    for task, answer in blind_db.answers_for_image(context.database, image_id):
        first_answer = task.id not in answered
        answered.add(task.id)
        if answer.decision_id is not None:
            continue  # audit answers and settlements are decisions, listed above
        what = f"second opinion: {answer.action}" if first_answer else f"settle: {answer.action} (no change needed)"
        entries.append(
            HistoryEntry(answer.created_at, answer.user_name, what, task.shown_label, answer.label, None, None, None)
        )
    entries.sort(key=lambda entry: (entry.at, entry.decision_id or 0))
    return ImageHistory(image.id, image.original_name, image.label, image.status, entries)
