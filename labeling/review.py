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
- leases: the next item is leased to one expert at a time; a recorded decision or a skip ends it.

db/ keeps the SQL and the transaction; the edges translate the named refusals (errors.py).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from context import Context
from db import decisions as decision_db
from db import duplicate_pairs as pair_db
from db import images as image_db
from db import queue as queue_db
from db import scores as score_db
from db.decisions import DecisionRow, LockedImage, Outcome
from db.stats import ReviewCounts
from db.stats import review_counts as count_reviews
from db.users import UserRow
from errors import Conflict, LoupeError, PermissionDenied  # noqa: F401 (PermissionDenied: callers catch it here)
from labeling.imports.labels import clean_label
from labeling.ranking import neighbours
from labeling.ranking.duplicates import PAIR_SCORER
from labeling.ranking.scoring import serving_scorer

EXPERT, ADMIN = "expert", "admin"
UNDO = "undo"
LEASE_S = 300  # how long the next item stays an expert's alone; a lease that runs out frees the item


class StaleDecision(Conflict):
    """The decision no longer fits the image; the message says what changed."""


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


def _plan(action: Action, image_id: int, expected_last_id: int | None, new_label: str | None, scorer: str, score):
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
) -> DecisionRow:
    """Record one action on the image as the user saw it (expected_last_id), then end their lease.

    The decision records the scoring pass that ranked the image (the queue's, unless scorer names
    another, as a duplicate pair's does) with the image's score in it (or score, when given).
    """
    action = action_named(action_name)
    user = require_role(user, action.role)
    if action.relabels:
        if not (new_label or "").strip():
            raise DecisionError("a relabel needs the new label")
        new_label = clean_label(new_label)
    scorer = scorer or serving_scorer(context)
    plan = _plan(action, image_id, expected_last_id, new_label, scorer, score)
    # A recorded decision ends the expert's lease, in the same transaction; a refused one leaves it.
    row = decision_db.record_decision(context.database, image_id, user.id, plan, scorer=scorer, end_leases=True)
    if action.removes_files:
        image = image_db.get_image(context.database, image_id)
        for relpath in (image.stored_path, image.thumb_path):
            context.store.absolute(relpath).unlink(missing_ok=True)
    return row


def decide_class(
    context: Context, user: UserRow | None, image_id: int, label: str, *, expected_last_id: int | None
) -> DecisionRow:
    """The expert says the image shows class label (a class key): a keep when that is its label already,
    else a relabel; so confirming a label is never counted as a wrong label found."""
    image = image_db.get_image(context.database, image_id)
    if image is not None and image.label == label:
        return decide(context, user, image_id, "keep", expected_last_id=expected_last_id)
    return decide(context, user, image_id, "relabel", expected_last_id=expected_last_id, new_label=label)


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

    return decision_db.record_undo(context.database, user.id, UNDOABLE, plan, end_leases=True)


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
    context: Context, user: UserRow | None, filters: queue_db.QueueFilters, skip: tuple[int, ...] = ()
) -> queue_db.QueueItem | None:
    """The likeliest wrong unreviewed item nobody else holds, leased to the user; None when none is left."""
    user = require_role(user, EXPERT)
    return queue_db.lease_next(
        context.database, serving_scorer(context), user.id, filters, reviewing=REVIEWING, lease_s=LEASE_S, skip=skip
    )


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
    require_role(user, EXPERT)
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
