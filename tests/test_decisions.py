"""The review service's decisions on SQLite and PostgreSQL: applied at once, stale views refused, undo appends."""

from __future__ import annotations

import pytest
from test_db import new_image

from db import decisions as decision_db
from db import images as image_db
from db import model_versions as version_db
from db import users as user_db
from db.scores import NewScore, replace_scores
from labeling import review
from labeling.ranking.scoring import scorer_name


def delete_as_expert(context, image_id: int) -> None:
    """Delete an image the way an expert does: through a decision."""
    expert = user_db.get_user(context.database, "deleter") or user_db.add_user(
        context.database, "deleter", "expert", "deleter-password"
    )
    review.decide_on_current(context, expert, image_id, "delete")


@pytest.fixture
def people_and_image(context):
    ann = user_db.add_user(context.database, "ann", "expert", "ann-password")
    ben = user_db.add_user(context.database, "ben", "admin", "ben-password")  # restores and purges need an admin
    image, _ = image_db.add_image(context.database, new_image("c" * 64, label="cat"))
    return context, ann, ben, image


def test_relabel_applies_and_is_logged_with_the_serving_version_and_the_scoring_pass(people_and_image, tmp_path):
    context, ann, _, image = people_and_image
    database = context.database
    replace_scores(database, scorer_name(), [NewScore(image.id, 0.97, "cat", "dog", 0.03, [["dog", 0.97]])])
    version_db.add_version(database, "v3", None, "models/v3", {})
    version_db.promote(database, "v3")
    row = review.decide(context, ann, image.id, "relabel", expected_last_id=None, new_label="dog")
    assert image_db.get_image(database, image.id).label == "dog"
    assert (row.user_name, row.old_label, row.new_label, row.model_version, row.scorer, row.score) == (
        "ann",
        "cat",
        "dog",
        "v3",
        scorer_name(),
        0.97,
    )
    assert decision_db.last_decision_id(database, image.id) == row.id
    assert decision_db.list_decisions(database) == [row]


def test_delete_and_restore_are_soft(people_and_image):
    context, ann, ben, image = people_and_image
    database = context.database
    first = review.decide(context, ann, image.id, "delete", expected_last_id=None)
    assert image_db.get_image(database, image.id).status == "deleted"
    with pytest.raises(review.PermissionDenied, match="admin role"):  # experts undo their own deletes instead
        review.decide(context, ann, image.id, "restore", expected_last_id=first.id)
    review.decide(context, ben, image.id, "restore", expected_last_id=first.id)
    assert image_db.get_image(database, image.id).status == "active"


def test_a_stale_view_is_refused_and_changes_nothing(people_and_image):
    context, ann, ben, image = people_and_image
    database = context.database
    review.decide(context, ann, image.id, "relabel", expected_last_id=None, new_label="dog")
    with pytest.raises(review.StaleDecision, match="decided by ann meanwhile"):
        review.decide(context, ben, image.id, "delete", expected_last_id=None)
    assert image_db.get_image(database, image.id).status == "active"
    assert [d.action for d in decision_db.list_decisions(database)] == ["relabel"]
    with pytest.raises(review.StaleDecision, match="no longer exists"):
        review.decide(context, ben, 987654, "keep", expected_last_id=None)


def test_bad_decisions_are_refused(people_and_image):
    context, ann, _, image = people_and_image
    database = context.database
    with pytest.raises(review.DecisionError, match="unknown action"):
        review.decide(context, ann, image.id, "burn", expected_last_id=None)
    with pytest.raises(review.DecisionError, match="needs the new label"):
        review.decide(context, ann, image.id, "relabel", expected_last_id=None)
    assert decision_db.list_decisions(database) == []


def test_undo_appends_a_compensating_decision(people_and_image):
    context, ann, ben, image = people_and_image
    database = context.database
    relabel = review.decide(context, ann, image.id, "relabel", expected_last_id=None, new_label="dog")
    undo = review.undo(context, ann)
    assert (undo.action, undo.undoes_id, undo.old_label, undo.new_label) == ("undo", relabel.id, "dog", "cat")
    assert image_db.get_image(database, image.id).label == "cat"
    with pytest.raises(review.DecisionError, match="nothing of yours"):
        review.undo(context, ann)
    assert [d.action for d in decision_db.list_decisions(database, image.id)] == ["relabel", "undo"]


def test_undo_is_refused_once_someone_else_decided(people_and_image):
    context, ann, ben, image = people_and_image
    database = context.database
    deleted = review.decide(context, ann, image.id, "delete", expected_last_id=None)
    review.decide(context, ben, image.id, "restore", expected_last_id=deleted.id)
    with pytest.raises(review.StaleDecision, match="decided by ben"):
        review.undo(context, ann)
    assert image_db.get_image(database, image.id).status == "active"


def test_concurrent_decisions_on_one_image_let_exactly_one_through(people_and_image):
    import threading

    context, ann, ben, image = people_and_image
    database = context.database
    outcomes: list[str] = []

    def try_delete(user) -> None:
        try:
            review.decide(context, user, image.id, "delete", expected_last_id=None)
            outcomes.append("recorded")
        except review.StaleDecision:
            outcomes.append("stale")

    threads = [threading.Thread(target=try_delete, args=((ann, ben)[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["recorded"] + ["stale"] * 7
    assert len(decision_db.list_decisions(database, image.id)) == 1


def test_restore_and_purge_need_a_deleted_image_and_purge_is_not_undone(people_and_image):
    context, _, ben, image = people_and_image
    database = context.database
    for action in ("restore", "purge"):
        with pytest.raises(review.DecisionError, match="only deleted images"):
            review.decide(context, ben, image.id, action, expected_last_id=None)
    deleted = review.decide(context, ben, image.id, "delete", expected_last_id=None)
    review.decide(context, ben, image.id, "purge", expected_last_id=deleted.id)
    assert image_db.get_image(database, image.id).status == "purged"
    assert decision_db.deleted_images(database) == []
    with pytest.raises(review.StaleDecision):  # the purge stands: the delete under it cannot be undone
        review.undo(context, ben)
    assert image_db.get_image(database, image.id).status == "purged"
