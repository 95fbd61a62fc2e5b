"""Review keys that cannot mislead, in Debian's Chromium: every class key pressed on a 10-class dataset whose
names are single characters (the key is the name) and on a 12-class one with longer names (1–9, 0, then
the filter box); each press must relabel the shown image to exactly that class, read back from the
database. The Review tab also shows look-alikes of the given and of the predicted class beside the image.
"""

from __future__ import annotations

import colorsys
import io

import numpy as np
from conftest import EXPERT
from PIL import Image
from playwright.sync_api import expect
from test_browser import log_in

from db import decisions as decision_db
from db import images as image_db
from db import scores as score_db
from db import users as user_db
from db.queue import QueueFilters
from labeling import review
from labeling.imports.ingest import import_paths
from labeling.ranking.scoring import rescore, serving_scorer

PER_CLASS = 5
CONFIRMED = 2  # per class, kept by another expert first: confident look-alikes from the start
DIGITS = [str(d) for d in range(10)]
FRUITS = [
    "apple",
    "banana",
    "cherry",
    "date",
    "elderberry",
    "fig",
    "grape",
    "honeydew",
    "kiwi",
    "lemon",
    "mango",
    "nectarine",
]


def class_picture(number: int, classes: int, seed: int) -> bytes:
    """A 64×64 PNG in the class's own hue, with noise and a square at a random place."""
    rng = np.random.default_rng(seed)
    red, green, blue = colorsys.hsv_to_rgb(number / classes, 0.9, 0.95)
    pixels = (np.array([red, green, blue]) * 255 * rng.uniform(0.8, 1.0, size=(64, 64, 1))).astype(np.uint8)
    y, x = rng.integers(8, 40, size=2)
    pixels[y : y + 16, x : x + 16] = 255 - pixels[y : y + 16, x : x + 16]
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def seed_dataset(context, tmp_path, names: list[str]) -> None:
    """PER_CLASS images per class, one picture of the first class filed under the last; a real rescore;
    CONFIRMED images per class kept by another expert."""
    source = tmp_path / "in"
    for number, name in enumerate(names):
        (source / name).mkdir(parents=True)
        for i in range(PER_CLASS):
            (source / name / f"{number}-{i}.png").write_bytes(class_picture(number, len(names), seed=number * 100 + i))
    (source / names[-1] / "misfiled.png").write_bytes(class_picture(0, len(names), seed=9999))
    import_paths(context, [source])
    rescore(context)
    ann = user_db.add_user(context.database, "ann", "expert", "ann-password")
    by_label: dict[str, list[int]] = {}
    for row in image_db.iter_active_labeled(context.database):
        if row.original_name != "misfiled.png":
            by_label.setdefault(row.label, []).append(row.id)
    for ids in by_label.values():
        for image_id in sorted(ids)[:CONFIRMED]:
            review.decide(context, ann, image_id, "keep", expected_last_id=None)


def shown_item(page) -> int:
    """The image the class buttons were drawn for."""
    return int(page.locator("#review-classes button[data-label]").first.get_attribute("data-item"))


def wait_for_another_item(page, before: int) -> int:
    expect(page.locator("#review-classes button[data-label]").first).not_to_have_attribute("data-item", str(before))
    return shown_item(page)


def assert_decided_as(context, image_id: int, label: str) -> None:
    image = image_db.get_image(context.database, image_id)
    last = [d for d in decision_db.list_decisions(context.database) if d.image_id == image_id][-1]
    assert image.label == label, (image_id, image.label, label)
    assert last.user_name == EXPERT[0]
    # Pressing the class the image already has confirms it: a keep, not a "wrong label found".
    assert last.action == ("keep" if last.old_label == label else "relabel"), last


def assert_look_alikes_for_both_classes(page, context) -> None:
    """The first item is the misfiled picture: labeled as the last class, predicted as the first."""
    item = shown_item(page)
    image = image_db.get_image(context.database, item)
    predicted = score_db.score_of(context.database, serving_scorer(context), item).predicted_label
    assert image.original_name == "misfiled.png" and predicted != image.label, (image, predicted)
    given, other = page.locator("#review-given"), page.locator("#review-predicted")
    expect(given).to_contain_text(f"Labeled {image.label} — like these")
    expect(other).to_contain_text(f"Predicted {predicted} — like these")
    expect(given.locator("img")).to_have_count(4)
    expect(other.locator("img")).to_have_count(4)
    # The pictures themselves arrive (the page's file route serves the look-alikes' thumbnails).
    page.wait_for_function(
        "() => Array.from(document.querySelectorAll('#review-given img, #review-predicted img'))"
        ".every((img) => img.complete && img.naturalWidth > 0)"
    )


def test_every_single_character_class_is_its_own_key(live_server, page, tmp_path):
    context = live_server.context
    seed_dataset(context, tmp_path, DIGITS)
    log_in(page, live_server.url, EXPERT)
    buttons = page.locator("#review-classes button[data-label]")
    expect(buttons).to_have_count(10)
    for digit in DIGITS:  # each button shows its key, and the key is the class name
        expect(page.locator(f'#review-classes button[data-label="{digit}"] kbd')).to_have_text(digit)
    assert_look_alikes_for_both_classes(page, context)
    page.screenshot(path=str(tmp_path / "review-keys.png"), full_page=True)

    for digit in ["5", *[d for d in DIGITS if d != "5"]]:  # 5 first: the key that once relabeled to 4
        item = shown_item(page)
        page.keyboard.press(digit)
        wait_for_another_item(page, item)
        assert_decided_as(context, item, digit)
    assert len(decision_db.list_decisions(context.database)) == 10 * CONFIRMED + 10


def test_twelve_classes_by_number_keys_and_the_filter_box(live_server, page, tmp_path):
    context = live_server.context
    seed_dataset(context, tmp_path, FRUITS)
    log_in(page, live_server.url, EXPERT)
    expect(page.locator("#review-classes button[data-label]")).to_have_count(12)
    for number, name in enumerate(FRUITS[:10]):  # the mapping is on every button
        key = "1234567890"[number]
        button = page.locator(f'#review-classes button[data-label="{name}"]')
        expect(button.locator("kbd")).to_have_text(key)
        expect(button).to_contain_text(name)
    assert page.locator('#review-classes button[data-label="mango"] kbd').count() == 0  # no key: the filter box
    assert_look_alikes_for_both_classes(page, context)

    for number, name in enumerate(FRUITS[:10]):
        item = shown_item(page)
        page.keyboard.press("1234567890"[number])
        wait_for_another_item(page, item)
        assert_decided_as(context, item, name)
    for name, typed in (("mango", "man"), ("nectarine", "NECT")):
        item = shown_item(page)
        page.keyboard.press("/")
        expect(page.locator("#review-classes input.review-class-filter")).to_be_focused()
        page.keyboard.type(typed)
        expect(page.locator("#review-classes button[data-label]:visible")).to_have_count(1)
        page.keyboard.press("Enter")
        wait_for_another_item(page, item)
        assert_decided_as(context, item, name)
    expect(page.locator("#review-classes button[data-label]:visible")).to_have_count(12)  # the filter is cleared


def test_a_press_meant_for_an_earlier_image_is_refused(live_server, page, tmp_path):
    context = live_server.context
    seed_dataset(context, tmp_path, DIGITS)
    log_in(page, live_server.url, EXPERT)
    first = shown_item(page)
    # The page still shows the first image while someone else decides it: the key is refused as stale.
    other = user_db.get_user(context.database, "ann")
    review.decide(context, other, first, "keep", expected_last_id=None)
    page.keyboard.press("3")
    expect(page.get_by_text("meanwhile")).to_be_visible()
    assert image_db.get_image(context.database, first).label == DIGITS[-1]
    assert review.queue_page(context, other, QueueFilters(reviewed=False)).total == 10 * (PER_CLASS - CONFIRMED)
