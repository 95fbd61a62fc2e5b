"""Blind checks in Debian's Chromium: an audit item in the Review tab shows the question, the class guideline
and nothing of the model (no prediction, top 3, score or look-alikes); a class key answers it as an audit
decision; the ranked item after it shows its prediction as before; the history accordion and the Grid list
the audit decision once it is undone and the image is back in the queue, and the Map for its point."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import ADMIN, EXPERT
from playwright.sync_api import expect
from test_browser import log_in
from test_browser_map import click_map
from test_browser_review_keys import class_picture

from db import blind as blind_db
from db import decisions as decision_db
from db import images as image_db
from db import users as user_db
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.ranking.dataset_map import map_points, refresh_map
from labeling.ranking.scoring import rescore
from ui.history import HISTORY_COLUMNS, history_frame
from ui.map_tab import draw_map

CLASSES = ["0", "1", "2", "3"]
PER_CLASS = 5
MODEL_WORDS = re.compile(r"the model says|Top 3|\bscore\b", re.IGNORECASE)


@pytest.fixture(scope="module")
def embedder_files(tmp_path_factory):
    """A folder keeping the embedder's ONNX files from the first rescore, so the second database's test does
    not export them again (they depend only on the offline weights; the export takes about 15 s here)."""
    return tmp_path_factory.mktemp("embedder")


def rescore_reusing(context, kept) -> None:
    """A real rescore, with the embedder's ONNX files copied in from kept (and kept after the first)."""
    folder = context.settings.data_dir / "embedder"
    if any(kept.iterdir()):
        shutil.copytree(kept, folder, dirs_exist_ok=True)
    rescore(context)
    if not any(kept.iterdir()):
        shutil.copytree(folder, kept, dirs_exist_ok=True)


def seed(context, tmp_path, kept) -> tuple[int, int]:
    """Four classes with one picture of the first filed under the last, scored for real; another expert keeps
    all but two unreviewed (the misfiled one and one more); an audit draws one of the two, and every class
    has a guideline. Returns (the audit's image, the other unreviewed image)."""
    admin = user_db.get_user(context.database, ADMIN[0])
    # No second opinion drawn at random: the expert's queue holds the audit item and the ranked items only.
    review.save_review_policy(context, admin, review.ReviewPolicy(second_opinion_share=0.0))
    source = tmp_path / "in"
    for number, name in enumerate(CLASSES):
        (source / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            picture = class_picture(number, len(CLASSES), seed=number * 100 + i)
            (source / name / f"{number}-{i}.png").write_bytes(picture)
    (source / CLASSES[-1] / "misfiled.png").write_bytes(class_picture(0, len(CLASSES), seed=9999))
    import_paths(context, [source])
    rescore_reusing(context, kept)
    rows = {row.original_name: row for row in image_db.iter_active_labeled(context.database)}
    left = {rows["misfiled.png"].id, rows["1-0.png"].id}
    ann = user_db.add_user(context.database, "ann", "expert", "ann-password")
    for row in rows.values():
        if row.id not in left:
            review.decide(context, ann, row.id, "keep", expected_last_id=None)
    for name in CLASSES:
        example = rows[f"{name}-4.png"].id
        review.save_class_guide(context, admin, name, f"Class {name}: a hue of its own with a pale square.", [example])
    assert refresh_map(context) is not None
    drawn = review.start_audit(context, admin, 1, seed=3)
    (item,) = blind_db.audit_items(context.database, drawn.audit_id)
    (other,) = left - {item.image_id}
    return item.image_id, other


def shown_item(page) -> int:
    """The image the class buttons were drawn for."""
    return int(page.locator("#review-classes button[data-label]").first.get_attribute("data-item"))


def test_an_audit_item_is_answered_blind_then_the_queue_shows_predictions_again(
    live_server, page, tmp_path, embedder_files
):
    context = live_server.context
    audited, other = seed(context, tmp_path, embedder_files)
    label = image_db.get_image(context.database, audited).label
    log_in(page, live_server.url, EXPERT)

    facts = page.locator("#review-facts")
    expect(facts).to_contain_text(f"Is this {label}?")
    expect(facts).to_contain_text("A blind check (an audit item): no prediction is shown, so your answer is your own.")
    assert shown_item(page) == audited
    expect(page.locator("#review-guide")).to_contain_text(f"Class {label}: a hue of its own")
    expect(page.locator("#review-guide")).not_to_contain_text("predicted")
    expect(page.locator("#review-guide-examples img")).to_have_count(1)
    # The look-alikes' event has answered, and shows none; the history is held back too.
    expect(page.locator("#review-evidence-note")).to_contain_text("No look-alikes on a blind check.")
    expect(page.locator("#review-given")).to_be_hidden()
    expect(page.locator("#review-predicted")).to_be_hidden()
    page.locator("#review-history").get_by_text("History of this image").click()
    expect(page.locator("#review-history-title")).to_contain_text("A blind check: its history is not shown")
    # The page says nothing of the model; the history table is empty (its column headings aside).
    table = page.locator("#review-history-table")
    expect(table.locator("tbody tr")).to_have_count(0)
    shown_text = page.locator("body").inner_text().replace(table.inner_text(), "")
    assert not MODEL_WORDS.search(shown_text), shown_text
    page.screenshot(path=str(tmp_path / "blind.png"), full_page=True)

    page.keyboard.press(label)  # the shown label's own key: keep
    expect(page.locator("#review-classes button[data-label]").first).not_to_have_attribute("data-item", str(audited))
    expect(page.locator("#review-progress")).to_contain_text("Reviewed this session: 1")
    last = decision_db.list_decisions(context.database)[-1]
    assert (last.image_id, last.action, last.purpose, last.user_name) == (audited, "keep", "audit", EXPERT[0])
    (item,) = [i for i in blind_db.audit_items(context.database, 1) if i.image_id == audited]
    assert item.status == "answered" and item.answer.user_name == EXPERT[0]

    # The next item is a ranked one: its prediction, top 3 and look-alikes are shown as before.
    assert shown_item(page) == other
    expect(facts).to_contain_text("the model says")
    expect(facts).to_contain_text("Top 3")
    expect(page.locator("#review-given")).to_contain_text("like these")
    other_label = image_db.get_image(context.database, other).label
    expect(page.locator("#review-guide")).to_contain_text(f"Class {other_label}: a hue of its own")
    expect(page.locator("#review-history-title")).to_contain_text("nothing decided on it yet")

    # Undone, the audited image is back in the ranked queue; the open accordion lists what happened to it.
    page.keyboard.press("Control+z")
    expect(page.get_by_text("Undone: the image is back in the queue.")).to_be_visible()
    # The item shown after the undo: the counts the same event writes say it has arrived.
    expect(page.locator("#review-progress")).to_contain_text("Reviewed this session: 0")
    expect(page.locator("#review-progress")).to_contain_text("left in this filter: 2 of")
    if shown_item(page) != audited:
        page.keyboard.press("ArrowRight")
        expect(page.locator("#review-classes button[data-label]").first).to_have_attribute("data-item", str(audited))
    expect(page.locator("#review-history-title")).to_contain_text("2 entries")
    expect(table).to_contain_text("keep (audit)")
    expect(table).to_contain_text("undo")
    expect(table).to_contain_text(EXPERT[0])
    page.screenshot(path=str(tmp_path / "history.png"), full_page=True)

    # The Grid shows the same history for a picture clicked on its page.
    names = {audited: image_db.get_image(context.database, audited).original_name}
    page.get_by_role("tab", name="Grid").click()
    expect(page.locator("#grid-summary")).to_contain_text("likeliest wrong labels")
    expect(page.locator("#grid-history-title")).to_contain_text("Click a picture")
    for slot in range(2):
        page.locator(f"#grid-image-{slot} img").click()
        expect(page.locator("#grid-history-title")).to_contain_text("History of")
        if names[audited] in page.locator("#grid-history-title").inner_text():
            break
    expect(page.locator("#grid-history-title")).to_contain_text(f"History of {names[audited]}")
    expect(page.locator("#grid-history-table")).to_contain_text("keep (audit)")

    # The Map shows the history of the point clicked (the page draws the same figure from the same points).
    points = map_points(context)
    _, view = draw_map(points.xy, points.labels, points.suspects, points.classes, points.bounds)
    page.get_by_role("tab", name="Map").click()
    expect(page.locator("#map-history-title")).to_contain_text("Click a point")
    page.wait_for_function(
        "() => { const i = document.querySelector('#map-image img'); return i && i.naturalWidth > 0; }"
    )
    x, y = (float(v) for v in points.xy[list(points.image_ids).index(audited)])
    click_map(page, view, x, y)
    expect(page.locator("#map-history-title")).to_contain_text(f"History of {names[audited]}")
    expect(page.locator("#map-history-table")).to_contain_text("keep (audit)")

    frame = history_frame(context, user_db.get_user(context.database, EXPERT[0]), audited)
    assert list(frame.columns) == HISTORY_COLUMNS
    assert list(frame["what"]) == ["keep (audit)", "undo"] and set(frame["who"]) == {EXPERT[0]}
