"""The label rule (labeling/imports/labels.py): what it accepts, every door that creates a label, labels shown
literally in the UI's Markdown, and export's refusal of bad labels stored before the rule."""

from __future__ import annotations

import html
import os
import re
import tempfile
import unicodedata
import zipfile
from pathlib import Path

import gradio as gr
import pytest
from conftest import distinct_images, image_bytes
from hypothesis import given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt
from sqlalchemy import update

from db import decisions as decision_db
from db import images as image_db
from db.imports import list_rejections
from db.labels import list_label_names
from db.queue import QueueFilters
from db.schema import Label
from db.scores import NewScore, replace_scores
from db.store import EXPORTS_FOLDER
from db.users import add_user, get_user
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.imports.labels import MAX_LABEL_BYTES, BadLabel, clean_label
from labeling.imports.urls import import_url_lists
from labeling.instance.export import ExportError, export_archive, export_dataset
from labeling.ranking.scoring import scorer_name
from models.imagecheck import ImageRejected, RejectReason
from ui.markdown import md_text

HTML_LABEL = "<img src=x onerror=alert(1)>"
MARKDOWN_LABEL = "[click](javascript:alert(1)) **bold** _it_ `code` # | ~x~ &amp; !"
EMOJI_64 = "🐱" * 64  # 64 characters, 256 bytes
# Text likely to sit on the rule's edges: separators, dots, spaces of every kind, controls,
# combining marks (NFC), multi-byte characters near the byte cap, lone surrogates.
EDGES = st.sampled_from(
    ["/", "\\", "\x00", ".", " ", "\t", "\n", "\u2028", "\u00a0", "\u200d", "\x7f", "\x85", "e", "\u0301",
     "\u1100", "\u1161", "\u11a8", "\u0958", "é", "🐱", "<", "*", "\ud800", "a"]
)  # fmt: skip
LABEL_TEXT = st.one_of(
    st.text(st.characters(exclude_categories=()), max_size=120),  # anything, surrogates included
    st.text(EDGES, max_size=140),
    st.builds(lambda core, pad: pad + core + pad, st.text(st.sampled_from(["🐱", "é", "a"]), min_size=55, max_size=110),
              st.sampled_from(["", " ", "\t", "\u3000"])),
)  # fmt: skip


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def render(markdown: str) -> str:
    """HTML from a CommonMark renderer; Gradio's marked reads backslash escapes the same way."""
    return MarkdownIt("commonmark").render(markdown)


def as_html_text(text: str) -> str:
    """How a CommonMark renderer writes text that holds no markup."""
    return html.escape(text, quote=False).replace('"', "&quot;")


# --- the rule ----------------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(LABEL_TEXT)
def test_a_label_is_refused_or_a_safe_stable_folder_name(text):
    try:
        label = clean_label(text)
    except ImageRejected as refused:
        assert refused.reason == RejectReason.UNKNOWN_LABEL and refused.detail
        assert "<" not in refused.detail and ">" not in refused.detail  # toasts render HTML
        assert all(ch.isprintable() for ch in refused.detail)
        return
    assert label == unicodedata.normalize("NFC", label) == label.strip()
    assert label.isprintable() and label not in ("", ".", "..")
    assert not any(separator in label for separator in "/\\\x00")
    assert len(label.encode("utf-8")) <= MAX_LABEL_BYTES
    assert clean_label(label) == label
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        child = root / label
        assert Path(os.path.normpath(child)).parent == root and child.name == label
        child.mkdir()  # the file system takes it as one folder name
        assert [p.name for p in root.iterdir()] == [label]


@pytest.mark.parametrize("name", [".", "..", " .. ", "\t.\n"])
def test_dot_and_dot_dot_are_refused(name):
    with pytest.raises(BadLabel, match="'.' and '..'"):
        clean_label(name)


def test_the_byte_cap_counts_utf8_bytes_not_characters():
    with pytest.raises(ImageRejected) as refused:
        clean_label(EMOJI_64)
    assert refused.value.reason == RejectReason.UNKNOWN_LABEL
    assert "256 bytes" in refused.value.detail and f"limit is {MAX_LABEL_BYTES} bytes" in refused.value.detail
    assert clean_label("🐱" * 63) == "🐱" * 63  # 252 bytes


@pytest.mark.parametrize(
    ("name", "words"),
    [("", "at least one"), ("   ", "at least one"), ("a/b", "slash"), ("a\\b", "backslash"), ("a\x00b", "NUL"),
     ("a\u2028b", "U+2028"), ("a\x7fb", "U+007F"), ("a" * 101, "101 characters")],
)  # fmt: skip
def test_refusals_say_why(name, words):
    with pytest.raises(BadLabel, match=re.escape(words)):
        clean_label(name)


def test_labels_are_stored_nfc_and_stripped_and_inner_spaces_stay():
    assert clean_label("  cafe\u0301 au lait \t") == "café au lait"


def test_a_refusal_echoes_the_label_without_markup_and_short():
    with pytest.raises(BadLabel) as refused:
        clean_label(HTML_LABEL + "/" + "x" * 200)
    assert "<" not in refused.value.detail and "\\x3cimg src=x" in refused.value.detail
    assert len(refused.value.detail) < 200


def test_ingest_still_offers_the_rule_to_its_callers():
    from labeling.imports import ingest

    assert ingest.clean_label is clean_label


# --- the doors -----------------------------------------------------------------------------------------


def test_a_folder_import_refuses_bad_class_folders_and_changes_nothing_else(context, tmp_path):
    images = distinct_images(4)
    write(tmp_path / "in" / "cat" / "good.png", images[0])
    write(tmp_path / "in" / ("a" * 101) / "long.png", images[1])
    write(tmp_path / "in" / "del\x7fete" / "control.png", images[2])
    write(tmp_path / "in" / "line\u2028break" / "separator.png", images[3])
    summary = import_paths(context, [tmp_path / "in"])
    assert summary.added == 1 and len(summary.rejected) == 3
    recorded = list_rejections(context.database, summary.batch_id)
    assert sorted(Path(r.item).name for r in recorded) == ["control.png", "long.png", "separator.png"]
    assert {r.reason for r in recorded} == {RejectReason.UNKNOWN_LABEL.value}
    assert any("101 characters" in r.detail for r in recorded)
    assert list_label_names(context.database) == ["cat"]
    assert image_db.count_images(context.database) == 1
    assert len([p for p in (context.store.data_dir / "images").rglob("*") if p.is_file()]) == 1


def test_a_zip_import_refuses_a_class_folder_over_255_bytes_and_dot_dot(context, tmp_path):
    archive = tmp_path / "classes.zip"
    images = distinct_images(3)
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("cat/good.png", images[0])
        bundle.writestr(f"{EMOJI_64}/emoji.png", images[1])
        bundle.writestr("../escape.png", images[2])
    summary = import_paths(context, [archive])
    reasons = sorted((r.item.split(":", 1)[1], r.reason) for r in summary.rejected)
    assert reasons == [
        ("../escape.png", RejectReason.UNSAFE_PATH),
        (f"{EMOJI_64}/emoji.png", RejectReason.UNKNOWN_LABEL),
    ]
    assert "256 bytes" in next(r.detail for r in summary.rejected if r.reason == RejectReason.UNKNOWN_LABEL)
    assert list_label_names(context.database) == ["cat"] and summary.added == 1


@pytest.mark.parametrize("label", ["..", ".", "a\\b", EMOJI_64])
def test_the_cli_label_option_goes_through_the_rule(context, tmp_path, label):
    one = write(tmp_path / "one.png", image_bytes())
    summary = import_paths(context, [one], label=label)  # what `server.py import --label` calls
    assert [r.reason for r in summary.rejected] == [RejectReason.UNKNOWN_LABEL]
    assert list_label_names(context.database) == [] and image_db.count_images(context.database) == 0


def test_a_url_list_whose_name_is_a_bad_class_is_refused(context, tmp_path):
    listing = tmp_path / "..txt"  # the stem, '.', would be the class
    listing.write_text("http://127.0.0.1:9/x.png\n")
    summary = import_url_lists(context, [listing], workers=0, timeout_s=0.5, retries=0)
    assert [r.reason for r in summary.rejected] == [RejectReason.UNKNOWN_LABEL]
    assert list_label_names(context.database) == []


def test_the_admin_upload_refuses_a_bad_label_field_before_importing(context, tmp_path):
    from ui.admin_dataset import make_handlers

    add_user(context.database, "alice", "admin", "alice-password")
    _refresh, upload, *_ = make_handlers(context)
    one = write(tmp_path / "one.png", image_bytes())
    with pytest.raises(gr.Error, match="Nothing imported.*'..'"):
        upload([str(one)], " .. ", gr.Request(username="alice"))
    assert image_db.count_images(context.database) == 0 and list_label_names(context.database) == []
    upload([str(one)], " cafe\u0301 ", gr.Request(username="alice"))
    assert list_label_names(context.database) == ["café"]


@pytest.fixture
def scored(context, tmp_path):
    """A cat image and one imported from a class folder named like an HTML tag, both scored."""
    images = distinct_images(2)
    write(tmp_path / "in" / "cat" / "a [b](c) <i>.png", images[0])
    write(tmp_path / "in" / HTML_LABEL / "b.png", images[1])
    summary = import_paths(context, [tmp_path / "in"])
    assert summary.added == 2, summary.as_text()
    rows = {r.label: r for r in image_db.iter_active_labeled(context.database)}
    top = [[HTML_LABEL, 0.7], ["cat", 0.3]]
    replace_scores(
        context.database,
        scorer_name(),
        [
            NewScore(rows["cat"].id, 0.9, "cat", HTML_LABEL, 0.3, top),
            NewScore(rows[HTML_LABEL].id, 0.5, HTML_LABEL, HTML_LABEL, 0.7, top),
        ],
    )
    add_user(context.database, "bob", "expert", "bob-password")
    return rows


def queue_items(context) -> dict:
    expert = get_user(context.database, "bob")
    return {item.image_id: item for item in review.queue_page(context, expert, QueueFilters()).items}


def assert_literal(markdown: str, *texts: str) -> None:
    shown = render(markdown)
    assert "<img" not in shown and "<a " not in shown and "<code>" not in shown and "<em>" not in shown
    for text in texts:
        assert as_html_text(text) in shown, (text, shown)


def test_labels_from_a_folder_import_and_a_relabel_show_literally(context, scored):
    from ui.duplicates_tab import describe as describe_side
    from ui.grid_tab import caption
    from ui.review_tab import describe, make_handlers

    _show_next, decide, *_ = make_handlers(context)
    cat = scored["cat"]
    session = {"reviewed": 0, "errors": 0, "skipped": []}
    expert = gr.Request(username="bob")
    with pytest.raises(gr.Error, match="slash"):
        decide("relabel", {"image_id": cat.id, "last_decision_id": None}, "a/b", session, expert)
    decide("relabel", {"image_id": cat.id, "last_decision_id": None}, f"  {MARKDOWN_LABEL} ", session, expert)
    assert image_db.get_image(context.database, cat.id).label == MARKDOWN_LABEL

    items = queue_items(context)
    relabeled, imported = items[cat.id], items[scored[HTML_LABEL].id]
    assert (relabeled.label, imported.label) == (MARKDOWN_LABEL, HTML_LABEL)
    assert_literal(caption(relabeled), MARKDOWN_LABEL, HTML_LABEL)
    assert_literal(caption(imported), HTML_LABEL)
    assert "<strong>" in render(caption(imported))  # the caption's own bold still works
    assert_literal(describe(relabeled), MARKDOWN_LABEL, HTML_LABEL, "a [b](c) <i>.png")
    assert_literal(describe(imported), HTML_LABEL)
    assert render(describe(imported)).startswith("<h3>")
    side = image_db.get_image(context.database, cat.id)
    assert_literal(describe_side(side), MARKDOWN_LABEL, "a [b](c) <i>.png")


def test_the_grid_will_not_relabel_to_a_prediction_the_rule_refuses(context, scored):
    from ui.grid_tab import RELABEL, make_handlers

    cat = scored["cat"]
    with context.database.write() as session:  # a class stored before the rule
        session.execute(update(Label).where(Label.name == HTML_LABEL).values(name=".."))
    _load_page, apply, *_ = make_handlers(context)
    shown = [{"image_id": cat.id, "last_decision_id": None, "predicted": ".."}]
    with pytest.warns(UserWarning, match="1 not saved"):
        apply(gr.Request(username="bob"), shown, RELABEL)
    assert image_db.get_image(context.database, cat.id).label == "cat"
    assert decision_db.list_decisions(context.database) == []


def test_review_buttons_cut_long_labels(context, scored):
    from ui.review_tab import make_handlers

    expert = get_user(context.database, "bob")
    review.decide(context, expert, scored["cat"].id, "relabel", expected_last_id=None, new_label="🐱" * 63)
    show_next, *_ = make_handlers(context)
    shown = show_next({"reviewed": 0, "errors": 0, "skipped": []}, None, None, None, False, gr.Request(username="bob"))
    buttons = [
        html.unescape(re.sub(r"<[^>]+>", "", b)) for b in re.findall(r"<button[^>]*>(.*?)</button>", shown["classes"])
    ]
    assert len(buttons) == 3 and all(len(text) <= 50 for text in buttons) and any("🐱" * 10 in b for b in buttons)


@settings(max_examples=200, deadline=None)
@given(LABEL_TEXT)
def test_any_accepted_label_renders_as_its_own_text_in_bold(text):
    try:
        label = clean_label(text)
    except ImageRejected:
        return
    assert render(f"**{md_text(label)}** → x") == f"<p><strong>{as_html_text(label)}</strong> → x</p>\n"


# --- export of labels stored before the rule -----------------------------------------------------------


@pytest.mark.parametrize("legacy", ["..", ".", EMOJI_64, "line\u2028break"])
def test_export_refuses_bad_stored_labels_up_front(context, tmp_path, legacy):
    for i, data in enumerate(distinct_images(4)):
        write(tmp_path / "in" / ("cat" if i % 2 else "dog") / f"{i}.png", data)
    import_paths(context, [tmp_path / "in"])
    with context.database.write() as session:  # as an old database, or a db/ caller that skipped the rule
        session.execute(update(Label).where(Label.name == "dog").values(name=legacy))
    destination = tmp_path / "out"
    with pytest.raises(ExportError, match="cannot be folder names.*2 images.*Relabel") as refused:
        export_dataset(context, destination, "folders")
    assert "<" not in str(refused.value)
    assert not destination.exists()
    with pytest.raises(ExportError, match="Relabel"):
        export_archive(context, "folders")
    assert list((context.store.data_dir / EXPORTS_FOLDER).iterdir()) == []

    # The csv layout makes no folders from labels, so it still works.
    summary = export_dataset(context, tmp_path / "as-csv", "csv")
    assert summary.images == 4
