"""Numbers, times and durations as people read them, the same on every page.

Times are shown relative ("4 min ago") with the full time on hover. The server does not know the
reader's time zone, so the hover text is written in the server's local time and READABLE_SCRIPT (in the
page's head) rewrites it to the browser's own local time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape

# Rewrites every <time datetime=…> title to the browser's local time, also in content Gradio adds later.
READABLE_SCRIPT = """
<script>
(() => {
  const localise = (root) => {
    for (const element of root.querySelectorAll ? root.querySelectorAll("time[datetime]") : []) {
      const moment = new Date(element.getAttribute("datetime"));
      if (!isNaN(moment)) element.title = moment.toLocaleString(undefined, {dateStyle: "full", timeStyle: "medium"});
    }
  };
  new MutationObserver((changes) => changes.forEach((change) => change.addedNodes.forEach((node) => {
    if (node.nodeType === 1) localise(node.parentNode || node);
  }))).observe(document.documentElement, {childList: true, subtree: true});
  document.addEventListener("DOMContentLoaded", () => localise(document));
})();
</script>
"""


def count(number: int | float | None) -> str:
    """A count with thousands separators: 10,000 (empty for None)."""
    if number is None:
        return ""
    return f"{number:,}" if float(number).is_integer() else f"{number:,.2f}"


def share(value: float | None) -> str:
    """A rate as a percentage with one decimal (0.123 → "12.3%"), or empty when not measured."""
    return f"{value:.1%}" if value is not None else ""


def duration(seconds: float | None) -> str:
    """A duration in the two largest units: '0.4 s', '12 s', '3 min 12 s', '2 h 5 min', '3 d 4 h'."""
    if seconds is None:
        return ""
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 10:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    whole = round(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "min"), (secs, "s")]
    first = next(index for index, (value, _) in enumerate(parts) if value)
    shown = [f"{value} {unit}" for value, unit in parts[first : first + 2] if value]
    return " ".join(shown)


def _moment(moment: datetime | str | None) -> datetime | None:
    if moment is None or moment == "":
        return None
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment)
        except ValueError:
            return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)  # the database stores UTC


def when_text(moment: datetime | str | None, now: datetime | None = None) -> str:
    """How long ago (or until) moment, in words: 'just now', '4 min ago', 'in 2 h 5 min', '3 d ago'."""
    parsed = _moment(moment)
    if parsed is None:
        return "never" if moment in (None, "") else str(moment)
    seconds = ((now or datetime.now(UTC)) - parsed).total_seconds()
    if abs(seconds) < 10:
        return "just now"
    if abs(seconds) >= 7 * 86400:
        return full_time(parsed)
    words = duration(abs(seconds))
    if abs(seconds) >= 60:
        words = words.rsplit(" ", 2)[0] if words.endswith(" s") and " min " in words else words
    return f"{words} ago" if seconds > 0 else f"in {words}"


def full_time(moment: datetime | str | None) -> str:
    """The full time in the server's local zone: 'Sat 28 Nov 2026, 14:23:49 UTC'."""
    parsed = _moment(moment)
    if parsed is None:
        return ""
    return parsed.astimezone().strftime("%a %d %b %Y, %H:%M:%S %Z")


def when(moment: datetime | str | None, now: datetime | None = None) -> str:
    """HTML for Markdown or HTML cells: the relative time, with the full local time on hover."""
    parsed = _moment(moment)
    if parsed is None:
        return escape(when_text(moment, now))
    return (
        f'<time datetime="{escape(parsed.isoformat())}" title="{escape(full_time(parsed))}">'
        f"{escape(when_text(parsed, now))}</time>"
    )


def column_types(columns: list[str], time_columns: tuple[str, ...]) -> list[str]:
    """A gr.Dataframe datatype list: 'html' for the columns holding when(...), so the hover shows the full time."""
    return ["html" if column in time_columns else "str" for column in columns]
