"""The review queue on SQLite and PostgreSQL: order, filters, counts and leases."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from test_db import new_image

from db import decisions as decision_db
from db import images as image_db
from db import users as user_db
from db.embeddings import NewScore, replace_scores
from db.queue import QueueFilters, lease_next, queue_page, release_leases
from db.schema import Lease

SCORER = "test-scorer"


@pytest.fixture
def queue(context):
    database = context.database
    ann = user_db.add_user(database, "ann", "expert", "ann-password")
    ben = user_db.add_user(database, "ben", "expert", "ben-password")
    ids, scores = [], []
    for number, (label, predicted, score, split) in enumerate(
        [
            ("cat", "dog", 0.95, "train"),
            ("cat", "cat", 0.10, "valid"),
            ("dog", "cat", 0.80, "train"),
            ("dog", "dog", 0.05, "train"),
            (None, "cat", 0.50, "train"),
        ]
    ):
        row, _ = image_db.add_image(database, new_image(f"{number:064d}", label=label, split=split))
        ids.append(row.id)
        scores.append(NewScore(row.id, score, label, predicted, None, [[predicted, score]]))
    replace_scores(database, SCORER, scores)
    return database, ann, ben, ids


def test_order_is_most_likely_wrong_first_and_unreviewed_first(queue):
    database, ann, _, ids = queue
    page = queue_page(database, SCORER, QueueFilters())
    assert [item.image_id for item in page.items] == [ids[0], ids[2], ids[1], ids[3]]
    assert (page.total, page.unreviewed) == (4, 4)
    decision_db.decide(database, ids[0], ann.id, "keep", expected_last_id=None)
    page = queue_page(database, SCORER, QueueFilters())
    assert [item.image_id for item in page.items] == [ids[2], ids[1], ids[3], ids[0]]
    assert page.items[-1].reviewed and page.items[-1].last_decision_id is not None
    assert (page.total, page.unreviewed) == (4, 3)


def test_filters_and_paging(queue):
    database, ann, _, ids = queue
    assert [i.image_id for i in queue_page(database, SCORER, QueueFilters(label="dog")).items] == [ids[2], ids[3]]
    assert [i.image_id for i in queue_page(database, SCORER, QueueFilters(predicted="cat")).items] == [ids[2], ids[1]]
    assert [i.image_id for i in queue_page(database, SCORER, QueueFilters(split="valid")).items] == [ids[1]]
    assert [i.image_id for i in queue_page(database, SCORER, QueueFilters(unlabeled=True)).items] == [ids[4]]
    assert [i.image_id for i in queue_page(database, SCORER, QueueFilters(), limit=2, offset=2).items] == [
        ids[1],
        ids[3],
    ]
    decision_db.decide(database, ids[3], ann.id, "delete", expected_last_id=None)
    assert queue_page(database, SCORER, QueueFilters()).total == 3  # deleted images leave the queue
    undone = decision_db.undo_last(database, ann.id)
    assert undone.action == "undo"
    assert queue_page(database, SCORER, QueueFilters(reviewed=False)).total == 4  # undone = not reviewed


def test_two_experts_never_hold_the_same_item(queue):
    database, ann, ben, ids = queue
    first = lease_next(database, SCORER, ann.id, QueueFilters())
    second = lease_next(database, SCORER, ben.id, QueueFilters())
    assert (first.image_id, second.image_id) == (ids[0], ids[2])
    again = lease_next(database, SCORER, ann.id, QueueFilters())  # asking again moves ann's lease on
    assert again.image_id == ids[0]
    release_leases(database, ann.id)
    assert lease_next(database, SCORER, ben.id, QueueFilters()).image_id == ids[0]


def test_an_expired_lease_returns_the_item(queue):
    from datetime import timedelta

    from db.schema import utcnow

    database, ann, ben, ids = queue
    lease_next(database, SCORER, ann.id, QueueFilters())
    with database.write() as session:
        session.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert lease_next(database, SCORER, ben.id, QueueFilters()).image_id == ids[0]


def test_concurrent_leases_hand_out_distinct_items(queue):
    import threading

    database, ann, ben, _ = queue
    more = [user_db.add_user(database, f"expert{i}", "expert", "password-123") for i in range(2)]
    taken: list[int] = []

    def take(user_id):
        item = lease_next(database, SCORER, user_id, QueueFilters())
        if item:
            taken.append(item.image_id)

    threads = [threading.Thread(target=take, args=(u.id,)) for u in (ann, ben, *more)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(taken) == 4 and len(set(taken)) == 4


def test_experts_pulling_and_deciding_at_once_never_share_an_image(context):
    import threading

    database = context.database
    experts = [user_db.add_user(database, f"pull{i}", "expert", "password-123") for i in range(4)]
    scores = []
    for number in range(80):
        row, _ = image_db.add_image(database, new_image(f"{number + 100:064d}", label="cat"))
        scores.append(NewScore(row.id, 1 - number / 100, "cat", "dog", None, [["dog", 0.5]]))
    replace_scores(database, SCORER, scores)
    confirmed: list[int] = []
    problems: list[str] = []

    def review(expert):
        while (item := lease_next(database, SCORER, expert.id, QueueFilters())) is not None:
            try:
                row = decision_db.decide(
                    database, item.image_id, expert.id, "keep", expected_last_id=item.last_decision_id
                )
                confirmed.append(row.id)
            except decision_db.StaleDecision as stale:
                problems.append(str(stale))
            release_leases(database, expert.id)

    threads = [threading.Thread(target=review, args=(expert,)) for expert in experts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = decision_db.list_decisions(database)
    assert problems == []  # nobody was handed an image someone else had decided
    assert sorted(row.id for row in log) == sorted(confirmed)  # nothing lost, nothing extra
    assert len({row.image_id for row in log}) == len(log) == 80  # each image decided exactly once
