"""The review queue on SQLite and PostgreSQL: order, filters, counts and leases."""

from __future__ import annotations

import pytest
from sqlalchemy import update
from test_db import new_image

from db import decisions as decision_db
from db import images as image_db
from db import users as user_db
from db.queue import QueueFilters
from db.schema import Lease
from db.scores import NewScore, replace_scores
from labeling import review
from labeling.ranking.scoring import scorer_name

SCORER = scorer_name()  # the scoring pass the queue reads


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
    return context, ann, ben, ids


def test_order_is_most_likely_wrong_first_and_unreviewed_first(queue):
    context, ann, _, ids = queue
    page = review.queue_page(context, ann, QueueFilters())
    assert [item.image_id for item in page.items] == [ids[0], ids[2], ids[1], ids[3]]
    assert (page.total, page.unreviewed) == (4, 4)
    review.decide(context, ann, ids[0], "keep", expected_last_id=None)
    page = review.queue_page(context, ann, QueueFilters())
    assert [item.image_id for item in page.items] == [ids[2], ids[1], ids[3], ids[0]]
    assert page.items[-1].reviewed and page.items[-1].last_decision_id is not None
    assert (page.total, page.unreviewed) == (4, 3)


def test_filters_and_paging(queue):
    context, ann, _, ids = queue

    def page(filters: QueueFilters, **paging):
        return review.queue_page(context, ann, filters, **paging)

    assert [i.image_id for i in page(QueueFilters(label="dog")).items] == [ids[2], ids[3]]
    assert [i.image_id for i in page(QueueFilters(predicted="cat")).items] == [ids[2], ids[1]]
    assert [i.image_id for i in page(QueueFilters(split="valid")).items] == [ids[1]]
    assert [i.image_id for i in page(QueueFilters(unlabeled=True)).items] == [ids[4]]
    assert [i.image_id for i in page(QueueFilters(), limit=2, offset=2).items] == [
        ids[1],
        ids[3],
    ]
    review.decide(context, ann, ids[3], "delete", expected_last_id=None)
    assert page(QueueFilters()).total == 3  # deleted images leave the queue
    undone = review.undo(context, ann)
    assert undone.action == "undo"
    assert page(QueueFilters(reviewed=False)).total == 4  # undone = not reviewed


def test_a_selection_limits_the_queue_to_those_images(queue):
    context, ann, _, ids = queue
    chosen = QueueFilters(image_ids=(ids[3], ids[0], ids[4]))
    page = review.queue_page(context, ann, chosen)
    assert [item.image_id for item in page.items] == [ids[0], ids[3]]  # queue order; unlabeled ids[4] needs its filter
    assert (page.total, page.unreviewed) == (2, 2)
    assert [
        i.image_id for i in review.queue_page(context, ann, QueueFilters(image_ids=(ids[4],), unlabeled=True)).items
    ] == [ids[4]]
    assert review.queue_page(context, ann, QueueFilters(image_ids=())).total == 0  # an empty selection holds nothing
    assert review.next_item(context, ann, QueueFilters(image_ids=(ids[3],))).image_id == ids[3]


def test_two_experts_never_hold_the_same_item(queue):
    context, ann, ben, ids = queue
    first = review.next_item(context, ann, QueueFilters())
    second = review.next_item(context, ben, QueueFilters())
    assert (first.image_id, second.image_id) == (ids[0], ids[2])
    again = review.next_item(context, ann, QueueFilters())  # asking again moves ann's lease on
    assert again.image_id == ids[0]
    review.skip(context, ann)
    assert review.next_item(context, ben, QueueFilters()).image_id == ids[0]


def test_an_expired_lease_returns_the_item(queue):
    from datetime import timedelta

    from db.schema import utcnow

    context, ann, ben, ids = queue
    review.next_item(context, ann, QueueFilters())
    with context.database.write() as session:
        session.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert review.next_item(context, ben, QueueFilters()).image_id == ids[0]


def test_concurrent_leases_hand_out_distinct_items(queue):
    import threading

    context, ann, ben, _ = queue
    more = [user_db.add_user(context.database, f"expert{i}", "expert", "password-123") for i in range(2)]
    taken: list[int] = []

    def take(user):
        item = review.next_item(context, user, QueueFilters())
        if item:
            taken.append(item.image_id)

    threads = [threading.Thread(target=take, args=(u,)) for u in (ann, ben, *more)]
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

    def work(expert):
        while (item := review.next_item(context, expert, QueueFilters())) is not None:
            try:
                row = review.decide(context, expert, item.image_id, "keep", expected_last_id=item.last_decision_id)
                confirmed.append(row.id)
            except review.StaleDecision as stale:
                problems.append(str(stale))
            review.skip(context, expert)

    threads = [threading.Thread(target=work, args=(expert,)) for expert in experts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = decision_db.list_decisions(database)
    assert problems == []  # nobody was handed an image someone else had decided
    assert sorted(row.id for row in log) == sorted(confirmed)  # nothing lost, nothing extra
    assert len({row.image_id for row in log}) == len(log) == 80  # each image decided exactly once
