"""Blind audits, second opinions, settlements, class guidelines and an image's history, through the review
service on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from conftest import ADMIN, EXPERT
from test_db import new_image

from db import blind as blind_db
from db import decisions as decision_db
from db import images as image_db
from db import users as user_db
from db.queue import QueueFilters
from db.scores import NewScore, replace_scores
from errors import PermissionDenied
from labeling import review
from labeling.ranking.scoring import scorer_name

SECOND_EXPERT = ("bea", "bea-password-123")
SECOND_ADMIN = ("ann", "ann-password-123")


def scored(context, count: int, label: str = "cat") -> list[int]:
    """count labeled images scored in the queue's pass, scores spread from 0 to 1 (higher id, higher score)."""
    ids = [image_db.add_image(context.database, new_image(f"{n + 500:064d}", label=label))[0].id for n in range(count)]
    scores = [
        NewScore(i, n / max(1, count - 1), label, "dog", 0.9 - 0.8 * n / count, [["dog", 0.6], [label, 0.4]])
        for n, i in enumerate(ids)
    ]
    replace_scores(context.database, scorer_name(), scores)
    return ids


@pytest.fixture
def team(context):
    admin = user_db.add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    other_admin = user_db.add_user(context.database, SECOND_ADMIN[0], "admin", SECOND_ADMIN[1])
    first = user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    second = user_db.add_user(context.database, SECOND_EXPERT[0], "expert", SECOND_EXPERT[1])
    return admin, other_admin, first, second


def no_random_second_opinions(context, admin, **policy):
    review.save_review_policy(context, admin, review.ReviewPolicy(second_opinion_share=0.0, **policy))


def test_an_audit_draws_every_band_and_its_items_come_blind(context, team):
    admin, _, first, _ = team
    scored(context, 40)
    drawn = review.start_audit(context, admin, 8, seed=1)
    assert drawn.population == 40 and drawn.sampled == 8
    assert [band["drawn"] for band in drawn.bands] == [2, 2, 2, 2]  # the low bands too, not only the top
    item = review.next_item(context, first, QueueFilters(), blind=True)
    assert item.task_kind == "audit" and item.task_id is not None
    assert item.predicted_label is None and item.score is None and item.top == []
    # No ranked view hands out or lists an image waiting for its audit answer (it would show the prediction).
    audited = {t.image_id for t in blind_db.audit_items(context.database, drawn.audit_id)}
    ranked = review.next_item(context, first, QueueFilters(label="cat"), blind=True)
    assert review.next_item(context, first, QueueFilters()).task_id is None  # only callers that ask get them
    assert ranked.task_id is None and ranked.image_id not in audited
    listed = review.queue_page(context, first, QueueFilters(), limit=100)
    assert listed.total == 32 and not audited & {item.image_id for item in listed.items}


def test_blind_checks_alternate_with_the_ranked_queue_and_audit_answers_are_logged_as_audit(context, team):
    admin, _, first, _ = team
    no_random_second_opinions(context, admin, audit_second_opinion=False)
    scored(context, 20)
    review.start_audit(context, admin, 3, seed=2)
    kinds = []
    for _ in range(6):
        item = review.next_item(context, first, QueueFilters(), blind=True)
        kinds.append(item.task_kind)
        if item.task_id is not None:
            review.answer_blind(context, first, item.task_id, "keep", expected_last_id=item.last_decision_id)
        else:
            review.decide(context, first, item.image_id, "keep", expected_last_id=item.last_decision_id)
    assert kinds == ["audit", None, "audit", None, "audit", None]
    purposes = [d.purpose for d in decision_db.list_decisions(context.database)]
    assert purposes == ["audit", None, "audit", None, "audit", None]


def test_a_second_opinion_never_goes_to_the_expert_who_decided(context, team):
    admin, _, first, second = team
    no_random_second_opinions(context, admin)
    ids = scored(context, 3)
    review.decide(context, first, ids[0], "relabel", expected_last_id=None, new_label="dog")
    # The first expert gets ranked items only, however often they ask; the check is not theirs.
    for _ in range(3):
        item = review.next_item(context, first, QueueFilters(), blind=True)
        assert item is None or item.task_id is None
        if item is not None:
            review.skip(context, first)
    check = review.next_item(context, second, QueueFilters(), blind=True)
    assert check.task_kind == "second" and check.image_id == ids[0]
    assert check.label == "cat"  # the label the first expert saw, not their answer
    assert check.predicted_label is None
    # Asking by id does not get round it either.
    with pytest.raises(PermissionDenied):
        review.answer_blind(context, first, check.task_id, "keep", expected_last_id=check.last_decision_id)
    # Nor does looking the image up: its history would show the first answer, its look-alikes the prediction.
    for peek in (review.image_history, review.evidence):
        with pytest.raises(review.BlindCheckWaiting):
            peek(context, second, ids[0])
    assert review.image_history(context, first, ids[0]).entries  # the decider waits for nothing on it


def test_a_settled_disagreement_changes_the_label_once(context, team):
    admin, other_admin, first, second = team
    no_random_second_opinions(context, admin)
    ids = scored(context, 2)
    review.decide(context, first, ids[0], "relabel", expected_last_id=None, new_label="dog")
    check = review.next_item(context, second, QueueFilters(), blind=True)
    answer = review.answer_blind(context, second, check.task_id, "keep", expected_last_id=check.last_decision_id)
    assert answer.status == "disputed"
    assert image_db.get_image(context.database, ids[0]).label == "dog"  # a second opinion changes nothing itself
    [dispute] = review.disagreements(context, admin)
    assert (dispute.first.label, dispute.second.label) == ("dog", "cat")

    settled = review.settle(context, admin, dispute.task_id, "cat")
    assert settled.purpose == "settle" and settled.new_label == "cat"
    with pytest.raises(review.StaleDecision):
        review.settle(context, other_admin, dispute.task_id, "dog")
    assert image_db.get_image(context.database, ids[0]).label == "cat"
    log = [(d.action, d.purpose) for d in decision_db.list_decisions(context.database, ids[0])]
    assert log == [("relabel", None), ("relabel", "settle")]
    assert review.disagreements(context, admin) == []


def test_a_party_to_a_disagreement_does_not_settle_it_and_experts_cannot_settle(context, team):
    admin, _, first, second = team
    no_random_second_opinions(context, admin)
    ids = scored(context, 2)
    review.decide(context, admin, ids[0], "relabel", expected_last_id=None, new_label="dog")
    check = review.next_item(context, second, QueueFilters(), blind=True)
    review.answer_blind(context, second, check.task_id, "delete", expected_last_id=check.last_decision_id)
    with pytest.raises(PermissionDenied):
        review.settle(context, admin, check.task_id, "dog")
    with pytest.raises(PermissionDenied):
        review.settle(context, first, check.task_id, "dog")
    assert image_db.get_image(context.database, ids[0]).label == "dog"


def test_agreement_closes_the_check_and_undo_withdraws_an_open_one(context, team):
    admin, _, first, second = team
    no_random_second_opinions(context, admin)
    ids = scored(context, 3)
    review.decide(context, first, ids[0], "relabel", expected_last_id=None, new_label="dog")
    check = review.next_item(context, second, QueueFilters(), blind=True)
    agreed = review.answer_blind(
        context, second, check.task_id, "relabel", expected_last_id=check.last_decision_id, new_label="dog"
    )
    assert agreed.status == "agreed"
    review.decide(context, first, ids[1], "relabel", expected_last_id=None, new_label="dog")
    review.undo(context, first)
    assert blind_db.count_open(context.database)["second"] == 0
    estimates = review.dataset_estimates(context, admin)
    [pair] = estimates.pairs
    assert (pair.items, pair.agreed) == (1, 1)


def test_the_share_of_second_opinions_follows_the_policy(context, team):
    admin, _, first, _ = team
    review.save_review_policy(context, admin, review.ReviewPolicy(second_opinion_share=0.5))
    ids = scored(context, 40)
    for image_id in ids:
        review.decide(context, first, image_id, "keep", expected_last_id=None)
    asked = blind_db.count_open(context.database)["second"]
    assert 10 <= asked <= 30  # about half of 40 keeps, drawn per decision
    with pytest.raises(review.DecisionError):
        review.save_review_policy(context, admin, review.ReviewPolicy(second_opinion_share=1.5))
    with pytest.raises(PermissionDenied):
        review.save_review_policy(context, first, review.ReviewPolicy())


def test_estimates_follow_the_audit_answers(context, team):
    admin, _, first, second = team
    no_random_second_opinions(context, admin, audit_second_opinion=False)
    scored(context, 60)
    drawn = review.start_audit(context, admin, 12, seed=3)
    before = review.dataset_estimates(context, admin)
    assert before.audit_id == drawn.audit_id and before.wrong_left is None
    items = blind_db.audit_items(context.database, drawn.audit_id)
    for n, item in enumerate(items):  # every other audited image is found wrong
        action = "delete" if n % 2 else "keep"
        last = decision_db.last_decision_id(context.database, item.image_id)
        review.answer_blind(context, first, item.task_id, action, expected_last_id=last)
    after = review.dataset_estimates(context, admin)
    assert after.audit_answered == len(items) == 12
    assert after.unreviewed == 48
    assert 0 < after.wrong_left.low <= after.wrong_left.estimate <= after.wrong_left.high <= 48
    assert any("wrong labels are left" in sentence for sentence in after.sentences())


def test_class_guides_are_admins_to_write_and_checked(context, team):
    admin, _, first, _ = team
    ids = scored(context, 3)
    guide = review.save_class_guide(context, admin, "cat", "  Whiskers and pointed ears. ", [ids[1], ids[0], ids[1]])
    assert guide.definition == "Whiskers and pointed ears."
    assert [image_id for image_id, _ in guide.examples] == [ids[1], ids[0]]
    assert review.class_guide(context, first, "cat") == guide
    with pytest.raises(PermissionDenied):
        review.save_class_guide(context, first, "cat", "mine", [])
    with pytest.raises(review.DecisionError, match="no class"):
        review.save_class_guide(context, admin, "unicorn", "", [])
    with pytest.raises(review.DecisionError, match="no active image"):
        review.save_class_guide(context, admin, "cat", "", [10**6, 2**40])
    assert review.class_guide(context, first, "cat").definition == "Whiskers and pointed ears."


def test_an_images_history_holds_every_decision_and_blind_answer(context, team):
    admin, _, first, second = team
    no_random_second_opinions(context, admin)
    ids = scored(context, 2)
    review.decide(context, first, ids[0], "relabel", expected_last_id=None, new_label="dog")
    check = review.next_item(context, second, QueueFilters(), blind=True)
    review.answer_blind(context, second, check.task_id, "keep", expected_last_id=check.last_decision_id)
    review.settle(context, admin, check.task_id, "dog")
    history = review.image_history(context, first, ids[0])
    assert [(e.user_name, e.what, e.old_label, e.new_label) for e in history.entries] == [
        (EXPERT[0], "relabel", "cat", "dog"),
        (SECOND_EXPERT[0], "second opinion: keep", "cat", "cat"),
        (ADMIN[0], "keep (settle)", "dog", "dog"),
    ]
    assert history.entries[0].score is not None
    with pytest.raises(review.DecisionError):
        review.image_history(context, first, 10**6)


def test_the_rest_api_serves_blind_items_without_a_prediction_and_admins_settle(live_server):
    import httpx

    database = live_server.context.database
    user_db.add_user(database, SECOND_EXPERT[0], "expert", SECOND_EXPERT[1])
    ids = scored(live_server.context, 3)

    def api(method, path, auth, **kwargs):
        return httpx.request(method, f"{live_server.url}{path}", auth=auth, timeout=30, **kwargs)

    assert api("POST", "/api/audits", EXPERT, json={"size": 1}).status_code == 403
    first = api("POST", "/api/queue/next", EXPERT).json()["item"]
    assert first["task_id"] is None
    relabel = {"image_id": first["image_id"], "action": "relabel", "new_label": "dog"}
    assert api("POST", "/api/decisions", EXPERT, json=relabel).status_code == 200  # every relabel is checked

    check = api("POST", "/api/queue/next?blind=true", SECOND_EXPERT).json()["item"]
    assert check["task_kind"] == "second" and check["image_id"] == first["image_id"]
    assert (check["predicted_label"], check["score"], check["top"]) == (None, None, [])
    body = {"image_id": check["image_id"], "action": "keep", "task_id": check["task_id"]}
    answered = api("POST", "/api/decisions", SECOND_EXPERT, json=body).json()
    assert answered["blind"]["status"] == "disputed" and answered["decision"] is None

    assert api("GET", "/api/disagreements", EXPERT).status_code == 403
    [dispute] = api("GET", "/api/disagreements", ADMIN).json()["disagreements"]
    settle = f"/api/disagreements/{dispute['task_id']}/settle"
    assert api("POST", settle, ADMIN, json={"label": "cat"}).json()["decision"]["purpose"] == "settle"
    assert api("POST", settle, ADMIN, json={"label": "dog"}).status_code == 409  # once
    assert image_db.get_image(database, first["image_id"]).label == "cat"
    history = api("GET", f"/api/images/{first['image_id']}/history", EXPERT).json()
    assert [entry["what"] for entry in history["entries"]] == ["relabel", "second opinion: keep", "relabel (settle)"]
    estimates = api("GET", "/api/estimates", EXPERT).json()
    assert estimates["pairs"][0]["items"] == 1 and estimates["sentences"]
    assert ids


def test_an_audit_verdict_is_what_two_of_three_said_once_settled(context, team):
    admin, _, first, second = team
    scored(context, 8)
    drawn = review.start_audit(context, admin, 1, seed=4)
    [item] = blind_db.audit_items(context.database, drawn.audit_id)
    last = decision_db.last_decision_id(context.database, item.image_id)
    review.answer_blind(context, first, item.task_id, "relabel", expected_last_id=last, new_label="dog")
    check = review.next_item(context, second, QueueFilters(), blind=True)
    assert check.task_kind == "second" and check.label == "cat"  # every audit answer is checked by default
    review.answer_blind(context, second, check.task_id, "keep", expected_last_id=check.last_decision_id)
    [verdict] = review.dataset_estimates(context, admin).verdicts
    assert verdict.how == "disputed"
    review.settle(context, admin, check.task_id, "cat")
    [verdict] = review.dataset_estimates(context, admin).verdicts
    assert (verdict.how, verdict.verdict, verdict.wrong) == ("settled", "cat", False)
    assert image_db.get_image(context.database, item.image_id).label == "cat"
