"""Getting images in: folders, zips, uploads and URL lists all end in `import_candidates`."""

from __future__ import annotations

import os
import stat
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from context import Context
from db import images as image_db
from db import imports as import_db
from db.store import content_hash
from labeling.imports.labels import clean_label  # also imported from here by api/review.py and ui/review_tab.py
from labeling.imports.split import assign_split, split_from_name
from models.imagecheck import ImageRejected, RejectReason, check_image_bytes

if TYPE_CHECKING:
    from labeling.imports.formats import References

ProgressFn = Callable[[int, int], None]  # (items done, items in all)
IGNORED_NAMES = {"__MACOSX", ".DS_Store", "Thumbs.db"}


@dataclass
class Candidate:
    """One item to import: how to get its bytes, where it came from, its label and split if any."""

    original_name: str
    source: str
    label: str | None
    load: Callable[[], bytes]
    split: str | None = None  # as the dataset file names it (checked by split_from_name); None: from the hash


@dataclass
class Refused:
    """An item refused before its bytes were read (an unsafe zip entry, a bad label)."""

    item: str
    reason: RejectReason
    detail: str


@dataclass
class ImportSummary:
    """What an import did: counts, and every refused item with its reason."""

    batch_id: int
    added: int = 0
    duplicates: int = 0
    rejected: list[Refused] = field(default_factory=list)

    def as_text(self) -> str:
        """One line of counts, then a line per rejection."""
        lines = [f"added {self.added}, duplicates {self.duplicates}, rejected {len(self.rejected)}"]
        lines += [f"  rejected {r.item}: {r.reason.value} — {r.detail}" for r in self.rejected]
        return "\n".join(lines)


def import_candidates(
    context: Context,
    kind: str,
    source: str,
    candidates: Iterable[Candidate | Refused],
    total: int,
    progress: ProgressFn | None = None,
    user_name: str | None = None,
) -> ImportSummary:
    """Verify, store and record each candidate; refused ones are recorded with their reason."""
    database = context.database
    summary = ImportSummary(batch_id=import_db.start_batch(database, kind, source, user_name))
    for done, candidate in enumerate(candidates, start=1):
        outcome = candidate if isinstance(candidate, Refused) else _import_one(context, summary.batch_id, candidate)
        if isinstance(outcome, Refused):
            import_db.record_rejection(database, summary.batch_id, outcome.item, outcome.reason.value, outcome.detail)
            summary.rejected.append(outcome)
        elif outcome:
            summary.added += 1
        else:
            summary.duplicates += 1
        if progress:
            progress(done, total)
    import_db.count_added(database, summary.batch_id, added=summary.added, duplicates=summary.duplicates)
    import_db.finish_batch(database, summary.batch_id)
    return summary


def _import_one(context: Context, batch_id: int, candidate: Candidate) -> bool | Refused:
    """True when stored, False when a duplicate, Refused with the reason otherwise."""
    settings = context.settings
    try:
        label = clean_label(candidate.label) if candidate.label is not None else None
        given_split = split_from_name(candidate.split) if candidate.split is not None else None
        data = candidate.load()
        checked = check_image_bytes(data, max_bytes=settings.max_image_bytes, max_pixels=settings.max_image_pixels)
    except ImageRejected as rejection:
        return Refused(candidate.source, rejection.reason, rejection.detail)
    digest = content_hash(data)
    if image_db.find_by_hash(context.database, digest) is not None:
        return False
    stored_path, thumb_path = context.store.save(digest, checked.extension, data)
    new_image = image_db.NewImage(
        content_hash=digest,
        stored_path=stored_path,
        thumb_path=thumb_path,
        original_name=candidate.original_name,
        source=candidate.source,
        format=checked.format,
        byte_size=len(data),
        width=checked.width,
        height=checked.height,
        label=label,
        split=given_split or assign_split(digest, seed=settings.split_seed, valid_pct=settings.valid_pct),
        batch_id=batch_id,
    )
    _, created = image_db.add_image(context.database, new_image)
    return created


# --- folders ---------------------------------------------------------------------------


def _read_capped(path: Path, max_bytes: int) -> bytes:
    size = path.stat().st_size
    if size > max_bytes:
        raise ImageRejected(RejectReason.TOO_LARGE, f"the file is {size:,} bytes; the limit is {max_bytes:,}")
    return path.read_bytes()


def folder_candidates(root: Path, max_bytes: int, default_label: str | None = None) -> list[Candidate | Refused]:
    """Files under root; a file inside root/<class>/ gets that class as its label."""
    root = root.resolve()
    found: list[Candidate | Refused] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not _is_ignored_name(d))
        for filename in sorted(filenames):
            if _is_ignored_name(filename):
                continue
            path = Path(dirpath) / filename
            relative = path.relative_to(root)
            if path.is_symlink() and not path.resolve().is_relative_to(root):
                found.append(
                    Refused(str(path), RejectReason.UNSAFE_PATH, "a symbolic link that points outside the folder")
                )
                continue
            if zipfile.is_zipfile(path):
                detail = "a zip inside a folder is not opened; import the zip by its own path"
                found.append(Refused(str(path), RejectReason.NOT_AN_IMAGE, detail))
                continue
            label = relative.parts[0] if len(relative.parts) > 1 else default_label
            found.append(
                Candidate(
                    original_name=filename,
                    source=str(path),
                    label=label,
                    load=lambda path=path: _read_capped(path, max_bytes),
                )
            )
    return found


# --- zips ------------------------------------------------------------------------------


def _is_ignored_name(name: str) -> bool:
    """Operating-system clutter and hidden files, which are skipped rather than rejected."""
    return name in IGNORED_NAMES or (name.startswith(".") and name not in (".", ".."))


def _unsafe_entry_reason(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "an absolute path inside the zip"
    if ".." in PurePosixPath(name.replace("\\", "/")).parts:
        return "a '..' path inside the zip (zip-slip)"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "a symbolic link inside the zip"
    return None


def _read_zip_entry(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    if info.file_size > max_bytes:
        raise ImageRejected(
            RejectReason.TOO_LARGE, f"the entry is {info.file_size:,} bytes; the limit is {max_bytes:,}"
        )
    try:
        with archive.open(info) as entry:
            data = entry.read(max_bytes + 1)  # the header's size can lie
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        raise ImageRejected(RejectReason.TRUNCATED, f"the zip entry cannot be read: {error}") from None
    if len(data) > max_bytes:
        raise ImageRejected(RejectReason.TOO_LARGE, f"the entry is over the limit of {max_bytes:,} bytes")
    return data


def zip_candidates(path: Path, max_bytes: int, default_label: str | None = None) -> list[Candidate | Refused]:
    """Entries of a zip laid out like a folder import; unsafe entries are refused."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        return [Refused(str(path), RejectReason.NOT_AN_IMAGE, f"not a readable zip file: {error}")]
    entries = [
        info
        for info in archive.infolist()
        if not info.is_dir() and not any(_is_ignored_name(part) for part in PurePosixPath(info.filename).parts)
    ]
    safe_parts = [PurePosixPath(i.filename).parts for i in entries if _unsafe_entry_reason(i) is None]
    # A zip of a folder wraps the class folders in that folder's name: look inside it.
    wrapped = (
        bool(safe_parts)
        and all(len(p) > 1 and p[0] == safe_parts[0][0] for p in safe_parts)
        and any(len(p) > 2 for p in safe_parts)
    )
    strip = 1 if wrapped else 0
    found: list[Candidate | Refused] = []
    for info in entries:
        item = f"{path.name}:{info.filename}"
        unsafe = _unsafe_entry_reason(info)
        if unsafe:
            found.append(Refused(item, RejectReason.UNSAFE_PATH, unsafe))
            continue
        parts = PurePosixPath(info.filename).parts[strip:]
        label = parts[0] if len(parts) > 1 else default_label
        found.append(
            Candidate(
                original_name=parts[-1],
                source=item,
                label=label,
                load=lambda info=info: _read_zip_entry(archive, info, max_bytes),
            )
        )
    return found


def path_candidates(
    path: Path, max_bytes: int, default_label: str | None = None, references: References | None = None
) -> list[Candidate | Refused]:
    """A dataset in another tool's format (formats.detect_format), a folder, a zip or a single image file."""
    # formats builds on this module's Candidate and Refused, so it is imported here, not at the top.
    from labeling.imports import formats

    path = Path(path)
    fmt = formats.detect_format(path)
    if fmt is not None:
        references = references or formats.References(max_bytes=max_bytes)
        return formats.format_candidates(path, fmt, references, default_label)
    if path.is_dir():
        return folder_candidates(path, max_bytes, default_label)
    if not path.exists():
        return [Refused(str(path), RejectReason.NOT_AN_IMAGE, "no such file or folder")]
    if zipfile.is_zipfile(path):
        return zip_candidates(path, max_bytes, default_label)
    return [Candidate(path.name, str(path), default_label, lambda: _read_capped(path, max_bytes))]


def import_paths(
    context: Context,
    paths: Iterable[Path],
    *,
    kind: str = "folder",
    label: str | None = None,
    progress: ProgressFn | None = None,
    user_name: str | None = None,
    files_root: Path | None = None,
) -> ImportSummary:
    """Import folders, zips, image files and datasets in other tools' formats as one batch.

    The batch's kind is the format's ("labelstudio", "csv", "imagefolder") when every path is in that one.
    files_root: where Label Studio's /data/local-files/?d=… paths start (default: the JSON file's folder).
    """
    from labeling.imports import formats

    paths = [Path(p) for p in paths]
    references = formats.References.from_settings(context.settings, files_root)
    candidates: list[Candidate | Refused] = []
    for path in paths:
        candidates += path_candidates(path, context.settings.max_image_bytes, label, references)
    kinds = {formats.batch_kind(path) for path in paths}
    if len(kinds) == 1 and None not in kinds:
        kind = kinds.pop()
    source = ", ".join(str(p) for p in paths)
    return import_candidates(context, kind, source, candidates, len(candidates), progress, user_name)
