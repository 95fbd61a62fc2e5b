"""The one rule for label names. A label becomes a folder name on export (DEST/train/<label>/), so it must
be one safe path component, and it is shown in the UI, so it must be one line of visible text.

Every door that creates a label goes through `clean_label`:

- folder imports (the class sub-folder's name), zip imports (the class folder inside the zip), single
  files, the CLI's `import --label` and the Admin upload's label field: `labeling.imports.ingest.import_candidates`
  cleans each candidate's label before anything is stored (the Admin upload also checks its field up front);
- URL lists (the list file's stem is the class): the same `import_candidates`;
- relabel decisions: `api/review.py` and the Review tab (typed class, or a numbered class button) call it
  before `db.decisions.decide`; the Grid tab cleans the predicted class it relabels to. (An undo puts
  back the image's previous label, which already exists.)

`db/` never imports from `labeling/`, so `db.labels.get_or_create_label` does not check names itself: a
caller of db/ that skips these doors (a benchmark, an old database) can still hold a bad label. Export
therefore checks each stored name, exactly as stored, with `label_problem` before writing anything.
"""

from __future__ import annotations

import unicodedata

from models.imagecheck import ImageRejected, RejectReason

MAX_LABEL_LENGTH = 100  # characters; the review API's new_label field has the same cap
MAX_LABEL_BYTES = 255  # UTF-8 bytes: the longest file name ext4, APFS and NTFS all accept
SEPARATORS = {"/": "slash", "\\": "backslash", "\x00": "NUL character"}
ECHO_CHARACTERS = 40
# Refusals reach Gradio's toasts, which render HTML: the echoed label carries no markup characters.
INERT = str.maketrans({"<": "\\x3c", ">": "\\x3e", "&": "\\x26"})


class BadLabel(ImageRejected):
    """A name that cannot be a label; an ImageRejected(bad_label), so import and review callers catch it."""

    def __init__(self, detail: str):
        super().__init__(RejectReason.UNKNOWN_LABEL, detail)

    @property
    def message(self) -> str:
        """The sentence alone: it is read where a label was typed."""
        return self.detail


def echo(name: str) -> str:
    """name quoted for a message: cut to 40 characters, escapes for invisible characters, no HTML markup."""
    cut = name if len(name) <= ECHO_CHARACTERS else name[:ECHO_CHARACTERS] + "…"
    return repr(cut).translate(INERT)


def label_problem(name: str) -> str | None:
    """Why name, exactly as given, cannot be a label (a sentence), or None when it can."""
    if not name:
        return "a label needs at least one visible character"
    for character, what in SEPARATORS.items():
        if character in name:
            return f"the label {echo(name)} has a {what}; a label becomes a folder name, so it cannot have / or \\"
    hidden = next((ch for ch in name if not ch.isprintable()), None)
    if hidden is not None:
        what = unicodedata.name(hidden, unicodedata.category(hidden))
        return (
            f"the label {echo(name)} has an invisible or control character (U+{ord(hidden):04X} {what}); "
            "a label is one line of visible text"
        )
    if name in (".", ".."):
        return f"the label {echo(name)} is not allowed: '.' and '..' name folders, not classes"
    size = len(name.encode("utf-8"))
    if size > MAX_LABEL_BYTES:
        return (
            f"the label {echo(name)} is {size} bytes in UTF-8; the limit is {MAX_LABEL_BYTES} bytes, "
            "the longest folder name export can write"
        )
    if len(name) > MAX_LABEL_LENGTH:
        return f"the label {echo(name)} has {len(name)} characters; the limit is {MAX_LABEL_LENGTH}"
    return None


def clean_label(name: str) -> str:
    """The stored form of a label (NFC, surrounding whitespace removed), or BadLabel saying why it cannot be one."""
    # NFC first, so that the same class typed on macOS (decomposed) and elsewhere is one label.
    cleaned = unicodedata.normalize("NFC", name).strip()
    problem = label_problem(cleaned)
    if problem:
        raise BadLabel(problem)
    return cleaned


def label_for_import(field: str | None) -> str | None:
    """A label typed for a whole import: None when blank, else its clean form, else BadLabel before anything is read.

    Checked once up front (as well as per item), so a mistyped field is one message, not a rejection per image.
    """
    if not (field or "").strip():
        return None
    problem = label_problem(unicodedata.normalize("NFC", field).strip())
    if problem:
        raise BadLabel(f"Nothing imported: {problem}")
    return clean_label(field)
