"""The one helper every tab uses for times, durations and counts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ui import readable

NOW = datetime(2026, 11, 28, 14, 30, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (0.42, "0.4 s"),
        (3, "3 s"),
        (12.4, "12 s"),
        (192, "3 min 12 s"),
        (3600, "1 h"),
        (7500, "2 h 5 min"),
        (90061, "1 d 1 h"),
        (None, ""),
    ],
)
def test_durations_use_the_two_largest_units(seconds, shown):
    assert readable.duration(seconds) == shown


@pytest.mark.parametrize(
    ("ago", "shown"),
    [
        (timedelta(seconds=3), "just now"),
        (timedelta(seconds=70), "1 min ago"),
        (timedelta(minutes=4, seconds=12), "4 min ago"),
        (timedelta(hours=1, minutes=6), "1 h 6 min ago"),
        (timedelta(minutes=-5), "in 5 min"),
    ],
)
def test_times_are_relative(ago, shown):
    assert readable.when_text(NOW - ago, now=NOW) == shown


def test_old_times_and_strings_and_none():
    assert readable.when_text(NOW - timedelta(days=10), now=NOW).startswith("Wed 18 Nov 2026")
    assert readable.when_text("2026-11-28T14:26:00+00:00", now=NOW) == "4 min ago"
    assert readable.when_text(datetime(2026, 11, 28, 14, 26), now=NOW) == "4 min ago"  # the database's naive UTC
    assert readable.when_text(None) == "never"


def test_when_carries_the_full_time_for_the_hover_and_escapes():
    html = readable.when("2026-11-28T14:23:49.179387+00:00", now=NOW)
    assert html.startswith('<time datetime="2026-11-28T14:23:49.179387+00:00" title="Sat 28 Nov 2026')
    assert html.endswith(">6 min ago</time>")
    assert readable.when("<script>") == "&lt;script&gt;"


def test_counts_have_separators():
    assert readable.count(10000) == "10,000"
    assert readable.count(1797) == "1,797"
    assert readable.count(None) == ""
