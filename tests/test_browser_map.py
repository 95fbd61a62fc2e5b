"""The Map tab in Debian's Chromium: the map draws, a click or a rectangle chooses images, and "Open in Review"
shows them in the Review tab."""

from __future__ import annotations

import re

from conftest import EXPERT
from playwright.sync_api import expect
from test_browser import log_in
from test_dataset_map import import_flipped_shapes

from db.images import iter_active_labeled
from labeling.ranking.dataset_map import map_points, refresh_map
from labeling.ranking.scoring import rescore
from ui.map_tab import PICK_RADIUS_PX, draw_map, to_pixel


def click_map(page, view: dict, x: float, y: float) -> None:
    """Click the drawn map where the map point (x, y) is, as the page shows the image (scaled to fit)."""
    image = page.locator("#map-image img")
    image.scroll_into_view_if_needed()
    box = image.bounding_box()  # in the viewport, where the mouse clicks
    natural_width, natural_height = image.evaluate("i => [i.naturalWidth, i.naturalHeight]")
    # Gradio's own arithmetic for a select on an image (object-fit: contain, never enlarged).
    scale = min(box["width"] / natural_width, box["height"] / natural_height, 1)
    left = box["x"] + (box["width"] - natural_width * scale) / 2
    top = box["y"] + (box["height"] - natural_height * scale) / 2
    px, py = to_pixel(view, x, y)
    page.mouse.click(left + px * scale, top + py * scale)


def test_expert_opens_images_chosen_on_the_map_in_review(live_server, page, tmp_path):
    context = live_server.context
    import_flipped_shapes(context, tmp_path)
    rescore(context)
    assert refresh_map(context) is not None
    names = {row.id: row.original_name for row in iter_active_labeled(context.database)}
    points = map_points(context)
    # The page draws the same figure from the same points, so its view places each point at the same pixel.
    _, view = draw_map(points.xy, points.labels, points.suspects, points.classes, points.bounds)

    page.set_viewport_size({"width": 1280, "height": 1100})  # the whole map in view, for the screenshot
    log_in(page, live_server.url, EXPERT)
    page.get_by_role("tab", name="Map").click()
    expect(page.locator("#map-status")).to_contain_text("32 images on the map")
    expect(page.locator("#map-status")).to_contain_text("likely wrong labels")
    image = page.locator("#map-image img")
    expect(image).to_be_visible()
    page.wait_for_function(
        "() => { const i = document.querySelector('#map-image img'); return i && i.naturalWidth > 0; }"
    )
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [1000, 700]
    page.screenshot(path=str(tmp_path / "map.png"), full_page=True)

    # One click on a likely-wrong point chooses it (and any drawn within a few pixels of it).
    target = int(points.image_ids[points.suspects][0])
    row = list(points.image_ids).index(target)
    x, y = (float(v) for v in points.xy[row])
    click_map(page, view, x, y)
    expect(page.locator("#map-chosen")).to_contain_text(re.compile(r"\d+ images? chosen"))
    radius = 2 * PICK_RADIUS_PX / view["width_px"] * (view["xlim"][1] - view["xlim"][0])
    near = points.nearest(x, y, radius)
    assert target in near
    page.locator("#map-open").click()
    expect(page.get_by_role("tab", name="Review")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#review-selection")).to_contain_text(re.compile(r"Reviewing \d+ images? chosen on the map"))
    facts = page.locator("#review-facts")
    expect(facts).to_contain_text(re.compile("|".join(re.escape(names[i]) for i in near)))
    page.screenshot(path=str(tmp_path / "review-after-map.png"), full_page=True)

    # Two clicks around the whole map: a rectangle holding every image.
    page.get_by_role("tab", name="Map").click()
    expect(page.locator("#map-chosen")).to_contain_text("Click a point")
    page.get_by_label("Rectangle (two clicks)").check()
    x_min, x_max, y_min, y_max = points.bounds
    pad_x, pad_y = (x_max - x_min) * 0.02, (y_max - y_min) * 0.02
    click_map(page, view, x_min - pad_x, y_max + pad_y)
    expect(page.locator("#map-chosen")).to_contain_text("First corner set")
    click_map(page, view, x_max + pad_x, y_min - pad_y)
    expect(page.locator("#map-chosen")).to_contain_text("32 images chosen")
    page.locator("#map-open").click()
    expect(page.locator("#review-selection")).to_contain_text("Reviewing 32 images chosen on the map")
    expect(facts).to_contain_text(".png")


def test_map_says_when_there_is_no_map_yet(live_server, page):
    log_in(page, live_server.url, EXPERT)
    page.get_by_role("tab", name="Map").click()
    expect(page.locator("#map-status")).to_contain_text("The map is drawn after the next rescore")
    expect(page.locator("#map-open")).to_be_disabled()
