"""Admin → Audit & agreement handlers called directly with a Gradio request, on SQLite and PostgreSQL: audits,
the review policy, settling disagreements, class guidelines, and experts refused throughout."""

from __future__ import annotations

import gradio as gr
import pytest
from conftest import image_bytes
from matplotlib.figure import Figure
from test_db import new_image

from db import blind as blind_db
from db import decisions as decision_db
from db import images as image_db
from db.scores import NewScore, replace_scores
from db.users import add_user
from labeling import review
from labeling.ranking.scoring import scorer_name
from ui.admin_audit import make_handlers, parse_example_ids


@pytest.fixture
def team(context):
    """An admin (alice) and two experts (bob, bea), as users, and the handlers."""
    users = {
        "alice": add_user(context.database, "alice", "admin", "alice-password"),
        "bob": add_user(context.database, "bob", "expert", "bob-password"),
        "bea": add_user(context.database, "bea", "expert", "bea-password"),
    }
    return users, make_handlers(context)


def scored(context, count: int, label: str = "cat") -> list[int]:
    """count labeled images scored in the queue's pass, scores spread from 0 to 1 (higher id, higher score)."""
    ids = [image_db.add_image(context.database, new_image(f"{n + 700:064d}", label=label))[0].id for n in range(count)]
    scores = [
        NewScore(image_id, n / max(1, count - 1), label, "dog", 0.4, [["dog", 0.6], [label, 0.4]])
        for n, image_id in enumerate(ids)
    ]
    replace_scores(context.database, scorer_name(), scores)
    return ids


def as_user(name: str) -> gr.Request:
    return gr.Request(username=name)


def no_random_second_opinions(context, admin, **policy):
    review.save_review_policy(context, admin, review.ReviewPolicy(second_opinion_share=0.0, **policy))


def dispute(context, users, image_id: int, first: str = "bob", second: str = "bea") -> int:
    """first relabels the image cat → dog; second, asked blind, keeps cat: an open disagreement (its task id)."""
    decided = review.decide(context, users[first], image_id, "relabel", expected_last_id=None, new_label="dog")
    [check] = blind_db.judgements(context.database, statuses=[blind_db.OPEN], image_id=image_id)
    answer = review.answer_blind(context, users[second], check.task_id, "keep", expected_last_id=decided.id)
    assert answer.status == "disputed"
    return check.task_id


def test_starting_an_audit_says_what_was_drawn_and_the_estimates_follow_its_answers(context, team):
    users, handlers = team
    admin = as_user("alice")
    with pytest.raises(gr.Error, match="nothing to audit"):
        handlers["start_audit"](10, admin)
    no_random_second_opinions(context, users["alice"], audit_second_opinion=False)
    scored(context, 40)

    shown = handlers["start_audit"](8, admin)
    [audit] = [blind_db.latest_audit(context.database)]
    assert f"Audit **{audit.id}** drew **8** of 40 unreviewed images" in shown["audit_result"]
    # The same number from each band, the bands cut at the 50th, 80th and 95th percentiles of the scores.
    assert [part.rsplit(": ", 1)[1] for part in shown["audit_result"].split("(")[1].split(")")[0].split("; ")] == [
        "2 of 20", "2 of 12", "2 of 6", "2 of 2"
    ]  # fmt: skip
    assert list(shown["bands"]["audited"]) == [0] * 4 and list(shown["bands"]["unreviewed"]) == [18, 10, 4, 0]
    assert f"Audit {audit.id}: 0 of 8 items answered" in shown["estimates"]
    assert shown["chart"] is None  # no answer yet, nothing to draw
    for bad, refusal in ((0, "from 1 to 5000"), (5001, "from 1 to 5000"), ("many", "must be a whole number")):
        with pytest.raises(gr.Error, match=refusal):
            handlers["start_audit"](bad, admin)
    assert blind_db.latest_audit(context.database).id == audit.id  # the refused sizes drew nothing

    for n, item in enumerate(blind_db.audit_items(context.database, audit.id)):  # every other one is wrong
        last = decision_db.last_decision_id(context.database, item.image_id)
        review.answer_blind(context, users["bob"], item.task_id, "delete" if n % 2 else "keep", expected_last_id=last)
    shown = handlers["refresh"](admin)
    assert list(shown["bands"]["audited"]) == [2, 2, 2, 2] and sum(shown["bands"]["wrong"]) == 4
    assert all(shown["bands"]["estimated wrong left"]) and all("–" in i for i in shown["bands"]["95% interval"])
    assert "wrong labels are left among the 32 unreviewed images" in shown["estimates"]
    assert isinstance(shown["chart"], Figure)


def test_the_review_policy_is_shown_saved_and_checked(context, team):
    _, handlers = team
    admin = as_user("alice")
    shown = handlers["refresh"](admin)
    assert (shown["share"], shown["relabels"], shown["audit_checks"]) == (0.1, True, True)  # the defaults

    saved = handlers["save_policy"](0.25, False, True, admin)
    assert saved == {"share": 0.25, "relabels": False, "audit_checks": True}
    assert review.load_review_policy(context) == review.ReviewPolicy(0.25, False, True)
    for share, refusal in ((1.5, "fraction from 0 to 1"), ("half", "must be a number")):
        with pytest.raises(gr.Error, match=refusal):
            handlers["save_policy"](share, True, False, admin)
    assert review.load_review_policy(context) == review.ReviewPolicy(0.25, False, True)
    assert handlers["refresh"](admin)["share"] == 0.25


def test_settling_a_disagreement_applies_the_answer_once_and_refreshes_the_list(context, team):
    users, handlers = team
    admin = as_user("alice")
    no_random_second_opinions(context, users["alice"])
    ids = scored(context, 4)
    picture = context.store.absolute(image_db.get_image(context.database, ids[0]).stored_path)
    picture.parent.mkdir(parents=True, exist_ok=True)
    picture.write_bytes(image_bytes())
    first_task = dispute(context, users, ids[0])
    second_task = dispute(context, users, ids[1])

    shown = handlers["refresh"](admin)
    choices = shown["disputes"].choices
    assert [task for _, task in choices] == [first_task, second_task]
    assert choices[0][0] == f"#{first_task}: image {ids[0]} — bob says dog, bea says cat"
    assert shown["disputes"].value == first_task and shown["dispute_image"] == str(picture)
    assert "bob says dog" in shown["dispute_text"] and "2 disagreement(s) waiting" in shown["dispute_text"]
    shown = handlers["show_dispute"](second_task, admin)
    assert shown["disputes"].value == second_task and shown["dispute_image"] is None  # no file: nothing to show

    with pytest.raises(gr.Error, match="Choose or type the label"):
        handlers["settle_label"](second_task, "  ", admin)
    with pytest.raises(gr.Error, match="Choose a disagreement first"):
        handlers["settle_second"](None, None, admin)
    shown = handlers["settle_second"](first_task, None, admin)  # bea said it is still a cat
    assert image_db.get_image(context.database, ids[0]).label == "cat"
    assert [task for _, task in shown["disputes"].choices] == [second_task]
    assert "bea and bob agreed on 0 of 2 second opinions" in shown["estimates"]
    assert list(shown["pairs"].iloc[0]) == ["bea", "bob", 2, 0, "0.00"]
    with pytest.raises(gr.Error, match="no longer waiting"):  # once: the second try changes nothing
        handlers["settle_first"](first_task, None, admin)
    assert image_db.get_image(context.database, ids[0]).label == "cat"

    shown = handlers["settle_label"](second_task, "bird", admin)  # neither: another label
    assert image_db.get_image(context.database, ids[1]).label == "bird"
    assert shown["disputes"].choices == [] and "No disagreements" in shown["dispute_text"]
    log = [(d.action, d.new_label, d.purpose) for d in decision_db.list_decisions(context.database, ids[1])]
    assert log == [("relabel", "dog", None), ("relabel", "bird", "settle")]

    # An admin who gave one of the answers gets the service's refusal, and the image stays as it is.
    check = dispute(context, users, ids[2], first="alice")
    with pytest.raises(gr.Error, match="another admin settles it"):
        handlers["settle_second"](check, None, admin)
    with pytest.raises(gr.Error, match="another admin settles it"):
        handlers["settle_delete"](check, None, admin)
    assert image_db.get_image(context.database, ids[2]).status == "active"
    add_user(context.database, "ann", "admin", "ann-password")
    handlers["settle_delete"](str(check), None, as_user("ann"))  # a script may send the id as text
    assert image_db.get_image(context.database, ids[2]).status == "deleted"


def test_a_guideline_with_a_bad_id_is_refused_and_changes_nothing(context, team):
    users, handlers = team
    admin = as_user("alice")
    ids = scored(context, 3)
    assert handlers["refresh"](admin)["guide_class"].choices == [("cat", "cat")]
    assert handlers["show_guide"]("cat", admin)["guide_note"] == "No guideline for **cat** yet."

    shown = handlers["save_guide"]("cat", "Whiskers.", f" {ids[1]} ,{ids[0]}", admin)
    assert shown["definition"] == "Whiskers." and shown["example_ids"] == f"{ids[1]}, {ids[0]}"
    assert "Written by alice" in shown["guide_note"]
    for typed, refusal in (
        (f"{ids[0]}, x", "'x' is not an id"),
        (f"{ids[0]} {ids[1]}", "is not an id"),
        (f"{ids[0]},", "'' is not an id"),
        ("-3", "'-3' is not an id"),
        ("1.5", "is not an id"),
        ("10000000", "no active image has id 10000000"),  # well formed, but no such image: the service says so
        ("999999999", "no active image has id 999999999"),
        ("9999999999", "'9999999999' is not an id"),  # past the database's 32-bit ids: a refusal, not an SQL error
    ):
        with pytest.raises(gr.Error, match=refusal):
            handlers["save_guide"]("cat", "Changed.", typed, admin)
    with pytest.raises(gr.Error, match="Choose a class first"):
        handlers["save_guide"](None, "Changed.", "", admin)
    with pytest.raises(gr.Error, match="no class 'unicorn'"):
        handlers["save_guide"]("unicorn", "Changed.", "", admin)
    stored = review.class_guide(context, users["alice"], "cat")
    assert stored.definition == "Whiskers." and [i for i, _ in stored.examples] == [ids[1], ids[0]]
    loaded = handlers["show_guide"]("cat", admin)
    assert loaded["definition"] == "Whiskers." and loaded["example_ids"] == f"{ids[1]}, {ids[0]}"
    assert parse_example_ids("  ") == [] and parse_example_ids("7, 7 ,8") == [7, 7, 8]


def test_an_expert_is_refused_every_admin_handler_and_nothing_changes(context, team):
    users, handlers = team
    no_random_second_opinions(context, users["alice"])
    ids = scored(context, 3)
    task = dispute(context, users, ids[0])
    expert = as_user("bob")
    calls = {
        "refresh": (),
        "start_audit": (2,),
        "save_policy": (0.9, False, False),
        "show_dispute": (task,),
        "settle_first": (task, None),
        "settle_second": (task, None),
        "settle_label": (task, "bird"),
        "settle_delete": (task, None),
        "show_guide": ("cat",),
        "save_guide": ("cat", "mine", str(ids[0])),
    }
    assert set(calls) == set(handlers)  # every handler is tried
    for name, arguments in calls.items():
        with pytest.raises(gr.Error, match="admin role"):
            handlers[name](*arguments, expert)
    with pytest.raises(gr.Error, match="log in"):
        handlers["refresh"](gr.Request(username=None))  # nobody logged in
    assert blind_db.latest_audit(context.database) is None
    assert review.load_review_policy(context).second_opinion_share == 0.0
    assert [j.task_id for j in review.disagreements(context, users["alice"])] == [task]
    assert image_db.get_image(context.database, ids[0]).label == "dog"
    assert review.class_guide(context, users["alice"], "cat") is None


def test_admin_dataset_says_how_clean_the_labels_are(context, team):
    from ui.admin_dataset import make_handlers as dataset_handlers

    users, _ = team
    ids = scored(context, 30)
    refresh = dataset_handlers(context)[0]
    assert "Nobody has reviewed from the ranked queue yet." in refresh(as_user("alice"))["cleanliness"]
    for image_id in ids[:25]:
        review.decide(context, users["bob"], image_id, "keep", expected_last_id=None)
    review.decide(context, users["bob"], ids[25], "relabel", expected_last_id=None, new_label="dog")
    said = refresh(as_user("alice"))["cleanliness"]
    assert "Of 26 images reviewed from the ranked queue, 1 had a wrong label" in said
    assert "The next 4 items of the queue are expected to hold about 0.2 wrong labels" in said
