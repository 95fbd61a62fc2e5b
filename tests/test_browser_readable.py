"""Times on the pages read as people say them, with the full time on hover (Chromium)."""

from __future__ import annotations

import re

from conftest import EXPERT
from test_browser import log_in
from test_review_service import scored_images

from db import users as user_db
from labeling import review


def test_admin_tables_show_relative_times_with_the_full_time_on_hover(live_server, page):
    context = live_server.context
    image_id = scored_images(context, count=1)[0]
    expert = user_db.get_user(context.database, EXPERT[0])
    review.decide(context, expert, image_id, "keep", expected_last_id=None)

    log_in(page, live_server.url, ("alice", "alice-password"))
    page.get_by_role("tab", name="Admin").click()
    page.get_by_role("tab", name="Users").click()
    row = page.locator("#users-table").get_by_role("row").filter(has_text=EXPERT[0])
    moment = row.locator("time")
    moment.wait_for()
    assert moment.inner_text() in ("just now", "1 min ago")
    # The server wrote "Sat 28 Nov 2026, 14:23:49 UTC"; the page's script rewrote it in the browser's own
    # locale and time zone, with the weekday in full ("Saturday, November 28, 2026 at 2:23:49 PM").
    page.wait_for_function("() => /day, /.test(document.querySelector('#users-table time').title)")
    assert re.search(r"day, .*2\d{3}", moment.get_attribute("title"))
