"""The decision log on SQLite and PostgreSQL: applied at once, stale views refused, undo appends."""

from __future__ import annotations

import pytest
from test_db import new_image

from db import decisions as decision_db
from db import images as image_db
from db import users as user_db


def delete_as_expert(context, image_id: int) -> None:
    """Delete an image the way an expert does: through a decision."""
    expert = user_db.get_user(context.database, "deleter") or user_db.add_user(
        context.database, "deleter", "expert", "deleter-password"
    )
    decision_db.decide_on_current(context.database, image_id, expert.id, "delete")


@pytest.fixture
def people_and_image(context):
    ann = user_db.add_user(context.database, "ann", "expert", "ann-password")
    ben = user_db.add_user(context.database, "ben", "expert", "ben-password")
    image, _ = image_db.add_image(context.database, new_image("c" * 64, label="cat"))
    return context.database, ann, ben, image


def test_relabel_applies_and_is_logged(people_and_image):
    database, ann, _, image = people_and_image
    row = decision_db.decide(
        database, image.id, ann.id, "relabel", expected_last_id=None, new_label="dog", model_version="v3", score=0.97
    )
    assert image_db.get_image(database, image.id).label == "dog"
    assert (row.user_name, row.old_label, row.new_label, row.model_version, row.score) == (
        "ann",
        "cat",
        "dog",
        "v3",
        0.97,
    )
    assert decision_db.last_decision_id(database, image.id) == row.id


def test_delete_and_restore_are_soft(people_and_image):
    database, ann, _, image = people_and_image
    first = decision_db.decide(database, image.id, ann.id, "delete", expected_last_id=None)
    assert image_db.get_image(database, image.id).status == "deleted"
    decision_db.decide(database, image.id, ann.id, "restore", expected_last_id=first.id)
    assert image_db.get_image(database, image.id).status == "active"


def test_a_stale_view_is_refused_and_changes_nothing(people_and_image):
    database, ann, ben, image = people_and_image
    decision_db.decide(database, image.id, ann.id, "relabel", expected_last_id=None, new_label="dog")
    with pytest.raises(decision_db.StaleDecision, match="decided by ann meanwhile"):
        decision_db.decide(database, image.id, ben.id, "delete", expected_last_id=None)
    assert image_db.get_image(database, image.id).status == "active"
    assert [d.action for d in decision_db.list_decisions(database)] == ["relabel"]
    with pytest.raises(decision_db.StaleDecision, match="no longer exists"):
        decision_db.decide(database, 987654, ben.id, "keep", expected_last_id=None)


def test_bad_decisions_are_refused(people_and_image):
    database, ann, _, image = people_and_image
    with pytest.raises(decision_db.DecisionError, match="unknown action"):
        decision_db.decide(database, image.id, ann.id, "burn", expected_last_id=None)
    with pytest.raises(decision_db.DecisionError, match="needs the new label"):
        decision_db.decide(database, image.id, ann.id, "relabel", expected_last_id=None)
    assert decision_db.list_decisions(database) == []


def test_undo_appends_a_compensating_decision(people_and_image):
    database, ann, ben, image = people_and_image
    relabel = decision_db.decide(database, image.id, ann.id, "relabel", expected_last_id=None, new_label="dog")
    undo = decision_db.undo_last(database, ann.id)
    assert (undo.action, undo.undoes_id, undo.old_label, undo.new_label) == ("undo", relabel.id, "dog", "cat")
    assert image_db.get_image(database, image.id).label == "cat"
    with pytest.raises(decision_db.DecisionError, match="nothing of yours"):
        decision_db.undo_last(database, ann.id)
    assert [d.action for d in decision_db.list_decisions(database, image.id)] == ["relabel", "undo"]


def test_undo_is_refused_once_someone_else_decided(people_and_image):
    database, ann, ben, image = people_and_image
    deleted = decision_db.decide(database, image.id, ann.id, "delete", expected_last_id=None)
    decision_db.decide(database, image.id, ben.id, "restore", expected_last_id=deleted.id)
    with pytest.raises(decision_db.StaleDecision, match="decided by ben"):
        decision_db.undo_last(database, ann.id)
    assert image_db.get_image(database, image.id).status == "active"


def test_concurrent_decisions_on_one_image_let_exactly_one_through(people_and_image):
    import threading

    database, ann, ben, image = people_and_image
    outcomes: list[str] = []

    def try_delete(user_id: int) -> None:
        try:
            decision_db.decide(database, image.id, user_id, "delete", expected_last_id=None)
            outcomes.append("recorded")
        except decision_db.StaleDecision:
            outcomes.append("stale")

    threads = [threading.Thread(target=try_delete, args=((ann.id, ben.id)[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["recorded"] + ["stale"] * 7
    assert len(decision_db.list_decisions(database, image.id)) == 1


def test_restore_and_purge_need_a_deleted_image_and_purge_is_not_undone(people_and_image):
    database, ann, _, image = people_and_image
    for action in ("restore", "purge"):
        with pytest.raises(decision_db.DecisionError, match="only deleted images"):
            decision_db.decide(database, image.id, ann.id, action, expected_last_id=None)
    deleted = decision_db.decide(database, image.id, ann.id, "delete", expected_last_id=None)
    decision_db.decide(database, image.id, ann.id, "purge", expected_last_id=deleted.id)
    assert image_db.get_image(database, image.id).status == "purged"
    assert decision_db.deleted_images(database) == []
    with pytest.raises(decision_db.StaleDecision):  # the purge stands: the delete under it cannot be undone
        decision_db.undo_last(database, ann.id)
    assert image_db.get_image(database, image.id).status == "purged"
