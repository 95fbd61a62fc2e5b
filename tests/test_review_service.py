"""One review service beneath every edge: each edge (REST, the Review, Grid and Admin tabs, the CLI) follows
the same rules, records the same facts, and a new action needs no change below the service."""

from __future__ import annotations

import gradio as gr
import httpx
import pytest
from conftest import ADMIN, EXPERT
from test_db import new_image

import cli
from db import decisions as decision_db
from db import images as image_db
from db import model_versions as version_db
from db import users as user_db
from db.queue import QueueFilters
from db.schema import Lease
from db.scores import NewScore, replace_scores
from labeling import review
from labeling.ranking.scoring import scorer_name


def scored_images(context, count: int = 3) -> list[int]:
    """count labeled images, each scored in the queue's pass (higher id, higher score)."""
    ids = [image_db.add_image(context.database, new_image(f"{n + 100:064d}", label="cat"))[0].id for n in range(count)]
    scores = [NewScore(i, 0.5 + n / 10, "cat", "dog", 0.5, [["dog", 0.5]]) for n, i in enumerate(ids)]
    replace_scores(context.database, scorer_name(), scores)
    return ids


def promote_a_version(context, name: str = "v7") -> None:
    version_db.add_version(context.database, name, None, f"models/{name}", {})
    version_db.promote(context.database, name)


def leases(context) -> list[tuple[int, int]]:
    with context.database.read() as session:
        return [(lease.image_id, lease.user_id) for lease in session.query(Lease).all()]


@pytest.fixture
def people(context):
    admin = user_db.add_user(context.database, ADMIN[0], "admin", ADMIN[1])
    expert = user_db.add_user(context.database, EXPERT[0], "expert", EXPERT[1])
    return admin, expert


def test_every_decision_records_the_serving_version_and_the_scoring_pass(context, people):
    _, expert = people
    ids = scored_images(context)
    promote_a_version(context)
    review.decide(context, expert, ids[0], "keep", expected_last_id=None)
    review.decide(context, expert, ids[1], "relabel", expected_last_id=None, new_label="dog")
    review.undo(context, expert)
    log = decision_db.list_decisions(context.database)
    assert [(d.action, d.model_version, d.scorer) for d in log] == [
        ("keep", "v7", scorer_name()),
        ("relabel", "v7", scorer_name()),
        ("undo", "v7", scorer_name()),
    ]
    assert [round(d.score, 2) for d in log] == [0.5, 0.6, 0.6]


def test_the_grid_releases_the_lease_its_decisions_end(context, people):
    from ui.grid_tab import KEEP, make_handlers

    _, expert = people
    ids = scored_images(context)
    held = review.next_item(context, expert, QueueFilters())
    assert leases(context) == [(held.image_id, expert.id)]
    load_page, apply, *_ = make_handlers(context)
    shown = load_page(gr.Request(username=EXPERT[0]))["shown"]
    choices = [KEEP if item["image_id"] == held.image_id else "skip" for item in shown]
    apply(gr.Request(username=EXPERT[0]), shown, *choices)
    assert leases(context) == []
    assert [(d.image_id, d.action) for d in decision_db.list_decisions(context.database)] == [(held.image_id, "keep")]
    assert ids  # the other images stay unreviewed
    assert review.queue_page(context, expert, QueueFilters(reviewed=False)).total == len(ids) - 1


def test_a_refused_decision_keeps_the_lease(context, people):
    _, expert = people
    scored_images(context)
    held = review.next_item(context, expert, QueueFilters())
    with pytest.raises(review.StaleDecision):
        review.decide(context, expert, held.image_id, "keep", expected_last_id=12345)
    assert leases(context) == [(held.image_id, expert.id)]


def deleted_image(context, people) -> int:
    _, expert = people
    image_id = scored_images(context, 1)[0]
    review.decide(context, expert, image_id, "delete", expected_last_id=None)
    return image_id


def test_restore_needs_an_admin_in_the_service_and_the_admin_tab(context, people):
    from ui.admin_dataset import make_handlers

    image_id = deleted_image(context, people)
    _refresh, _upload, restore, _purge, _export = make_handlers(context)
    with pytest.raises(gr.Error, match="admin role"):
        restore([image_id], gr.Request(username=EXPERT[0]))
    with pytest.raises(review.PermissionDenied, match="admin role"):
        review.restore_images(context, people[1], [image_id])
    assert image_db.get_image(context.database, image_id).status == "deleted"
    restore([image_id], gr.Request(username=ADMIN[0]))
    assert image_db.get_image(context.database, image_id).status == "active"


def test_taking_back_a_restore_needs_an_admin_too(context, people):
    admin, expert = people
    image_id = deleted_image(context, people)
    review.restore_images(context, admin, [image_id])
    demoted = user_db.UserRow(admin.id, admin.name, "expert", False)  # the same account, seen as an expert
    with pytest.raises(review.PermissionDenied, match="admin role"):
        review.undo(context, demoted)
    assert image_db.get_image(context.database, image_id).status == "active"
    review.undo(context, admin)
    assert image_db.get_image(context.database, image_id).status == "deleted"


def test_restore_needs_an_admin_on_the_command_line(context, people, monkeypatch, capsys):
    image_id = deleted_image(context, people)
    monkeypatch.setenv("LOUPE_DATA_DIR", str(context.settings.data_dir))
    monkeypatch.setenv("DATABASE_URL", context.settings.resolved_database_url)
    monkeypatch.setenv("LOUPE_SCHEDULER", "0")
    assert cli.main(["decide", str(image_id), "restore", "--as", EXPERT[0]]) == 2
    assert "admin role" in capsys.readouterr().err
    assert image_db.get_image(context.database, image_id).status == "deleted"
    assert cli.main(["decide", str(image_id), "restore", "--as", ADMIN[0]]) == 0
    assert image_db.get_image(context.database, image_id).status == "active"
    assert cli.main(["undo", "--as", ADMIN[0]]) == 0
    assert image_db.get_image(context.database, image_id).status == "deleted"


def test_restore_needs_an_admin_over_rest(live_server):
    context = live_server.context
    expert = user_db.get_user(context.database, EXPERT[0])
    image_id = scored_images(context, 1)[0]
    deleted = review.decide(context, expert, image_id, "delete", expected_last_id=None)
    body = {"image_id": image_id, "action": "restore", "expected_last_decision_id": deleted.id}
    refused = httpx.post(f"{live_server.url}/api/decisions", json=body, auth=EXPERT, timeout=30)
    assert refused.status_code == 403 and "admin role" in refused.json()["detail"]
    assert image_db.get_image(context.database, image_id).status == "deleted"
    purge = {**body, "action": "purge"}
    refused = httpx.post(f"{live_server.url}/api/decisions", json=purge, auth=EXPERT, timeout=30)
    assert refused.status_code == 403 and image_db.get_image(context.database, image_id).status == "deleted"
    restored = httpx.post(f"{live_server.url}/api/decisions", json=body, auth=ADMIN, timeout=30)
    assert restored.status_code == 200, restored.text
    assert restored.json()["decision"]["scorer"] == scorer_name()
    assert image_db.get_image(context.database, image_id).status == "active"


def test_the_rest_schema_offers_exactly_the_services_actions(live_server):
    schema = httpx.get(f"{live_server.url}/openapi.json", timeout=30).json()
    offered = schema["components"]["schemas"]["DecisionIn"]["properties"]["action"]["enum"]
    assert offered == [*review.ACTIONS, review.UNDO]


def test_a_new_action_needs_no_change_below_the_service(context, people, monkeypatch):
    """A "flag for a second opinion" that leaves the image in the queue, declared in ACTIONS alone."""
    _, expert = people
    ids = scored_images(context, 2)
    flag = review.Action("flag", review.EXPERT, "active", "active", reviews=False)
    monkeypatch.setitem(review.ACTIONS, "flag", flag)
    monkeypatch.setattr(review, "UNDOABLE", (*review.UNDOABLE, "flag"))
    review.decide(context, expert, ids[0], "flag", expected_last_id=None)
    unreviewed = review.queue_page(context, expert, QueueFilters(reviewed=False)).items
    assert ids[0] in {item.image_id for item in unreviewed}  # still waiting for the second opinion
    undone = review.undo(context, expert)
    assert (undone.action, image_db.get_image(context.database, ids[0]).status) == ("undo", "active")


# --- the Review tab's keys and selection --------------------------------------------------------------


def test_class_keys_are_the_names_when_single_characters_else_numbers():
    from ui.review_tab import class_keys

    assert class_keys([str(d) for d in range(10)]) == [str(d) for d in range(10)]  # 5 is 5, and 0 has a key
    assert class_keys(["+", "a", "B"]) == ["+", "a", "B"]
    # Names that differ only in case would hang on Shift and Caps Lock: numbers instead.
    assert class_keys(["a", "A"]) == ["1", "2"]
    twelve = [f"class {n}" for n in range(12)]
    assert class_keys(twelve) == [*"1234567890", None, None]  # the filter box reaches the last two
    # A digit key never stands for another class than the one named by it.
    assert class_keys([*"0123456789", "10"]) == [*"0123456789", None]
    assert class_keys(["1", "cat", "dog"]) == ["1", "2", "3"]


def test_class_buttons_carry_the_name_the_image_and_the_key(context, people):
    from ui.review_tab import class_buttons, make_handlers

    _, expert = people
    ids = scored_images(context)
    review.decide(context, expert, ids[0], "relabel", expected_last_id=None, new_label='<i>"odd" & co')
    show_next, *_ = make_handlers(context)
    shown = show_next({"reviewed": 0, "errors": 0, "skipped": []}, None, None, None, False, gr.Request(username="bob"))
    item = review.queue_page(context, expert, QueueFilters(reviewed=False)).items[0]
    assert shown["classes"] == class_buttons(['<i>"odd" & co', "cat"], item)
    assert 'data-label="&lt;i&gt;&quot;odd&quot; &amp; co"' in shown["classes"] and "<i>" not in shown["classes"]
    assert f'data-item="{shown["current"]["image_id"]}"' in shown["classes"]
    assert "<kbd>2</kbd>cat · keep" in shown["classes"]  # its own class confirms it


def test_a_class_press_meant_for_another_image_records_nothing(context, people):
    from ui.review_tab import make_handlers

    _, expert = people
    ids = scored_images(context)
    show_next, _decide, press_class, *_ = make_handlers(context)
    session = {"reviewed": 0, "errors": 0, "skipped": []}
    request = gr.Request(username="bob")
    current = show_next(session, None, None, None, False, request)["current"]
    other = next(i for i in ids if i != current["image_id"])
    with pytest.raises(gr.Error, match="image changed"):
        press_class(current, session, gr.EventData(None, {"label": "dog", "item": other}), request)
    with pytest.raises(gr.Error, match="not one of the classes"):
        press_class(current, session, gr.EventData(None, {"label": "dog", "item": current["image_id"]}), request)
    assert decision_db.list_decisions(context.database) == []
    shown = press_class(current, session, gr.EventData(None, {"label": "cat", "item": current["image_id"]}), request)
    assert shown["session"]["reviewed"] == 1 and shown["session"]["errors"] == 0  # confirming is a keep
    assert [d.action for d in decision_db.list_decisions(context.database)] == ["keep"]


def test_a_selection_shows_only_those_images_and_says_so(context, people):
    from ui.review_tab import make_handlers

    ids = scored_images(context, count=4)
    show_next, *_ = make_handlers(context)
    session = {"reviewed": 0, "errors": 0, "skipped": []}
    request = gr.Request(username="bob")
    shown = show_next(session, None, None, None, False, request, selection=[ids[0], ids[1]])
    assert shown["current"]["image_id"] == ids[1]  # the likelier wrong of the two (higher score)
    assert "Reviewing 2 images chosen on the map" in shown["selection_note"].value
    assert shown["selection_note"].visible and shown["clear_selection"].visible
    everything = show_next(session, None, None, None, False, request, selection=[])
    assert everything["current"]["image_id"] == ids[3] and not everything["selection_note"].visible
