"""User-controlled text (labels, file names, user names) shown literally in Gradio Markdown and messages."""

from __future__ import annotations

import html
import re

# Markdown and HTML metacharacters; CommonMark (and Gradio's renderer) reads a backslash before any
# of them as that character, plain.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>#|&!()~])")
# A line break would end the sentence, heading or bold span the text sits in (file names may have one).
LINE_BREAKS = re.compile(r"[\r\n\v\f\x1c-\x1e\x85\u2028\u2029]+")
SHORT_TEXT = 40


def md_text(value) -> str:
    """value as Markdown that shows exactly its characters: no emphasis, links, HTML or headings."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", LINE_BREAKS.sub(" ", str(value)))


def html_text(value) -> str:
    """value as HTML text, for gr.Info, gr.Warning and gr.Error, whose messages Gradio renders as HTML."""
    # Quotes stay: text is never inside an attribute, and Gradio API clients read these messages raw.
    return html.escape(str(value), quote=False)


def short_text(value, limit: int = SHORT_TEXT) -> str:
    """value cut to limit characters with an ellipsis, for buttons where a 255-byte label would not fit."""
    text = str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"
