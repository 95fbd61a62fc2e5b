"""Datasets in other tools' formats, read into import candidates (then `ingest.import_candidates`, as every import).

- Label Studio exports: JSON (tasks with `data` and `annotations`) and JSON-MIN (one flat dict per task).
- CSV lists: `path_or_url,label[,split]`, header optional (also fastai's and Loupe's `name,label,is_valid`).
- Hugging Face `imagefolder` trees: `metadata.jsonl` or `metadata.csv` at the root or in split folders.
- Class folders under split folders (`train/<class>/…`, `valid/<class>/…`): Loupe's "folders" export, fastai's
  and torchvision's layout.

An image reference is an http(s) URL (fetched like classify-url: private addresses refused unless allowed),
a path relative to the dataset file's folder (it must stay inside it), or Label Studio's
`/data/local-files/?d=REL` (REL under the files root). Labels and splits are checked per item when imported
(`clean_label`, `split_from_name`), so a bad one refuses that item with its reason and nothing else.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from urllib.parse import parse_qs, unquote, urlparse

from labeling.imports.ingest import Candidate, Refused, _is_ignored_name, _read_capped, folder_candidates
from labeling.imports.labels import BadLabel, echo
from labeling.imports.safe_fetch import fetch_image_url
from labeling.imports.split import SPLIT_NAMES
from models.imagecheck import ImageRejected, RejectReason
from settings import Settings

LABELSTUDIO = "labelstudio"
CSV_LIST = "csv"
IMAGEFOLDER = "imagefolder"
SPLIT_FOLDERS = "split_folders"
# The import batch's kind for each; split folders are a folder import.
FORMAT_KINDS = {LABELSTUDIO: "labelstudio", CSV_LIST: "csv", IMAGEFOLDER: "imagefolder"}

METADATA_FILES = ("metadata.jsonl", "metadata.csv")  # the first present in a folder is read, as datasets does
LABEL_COLUMNS = ("label", "labels", "class", "category")
PATH_COLUMNS = ("path_or_url", "path", "url", "image", "image_url", "file_name", "filename", "file", "name")
LS_LOCAL_FILES = "/data/local-files/"
LS_UPLOADS = "/data/upload/"
LS_IMAGE_FIELDS = ("image", "img", "image_url", "url")
# JSON-MIN puts each control's answer under the control's name beside the task's data and these fields.
LS_MIN_META = {"id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time", "agreement", "split"}
LS_MIN_CHOICE_FIELDS = ("label", "choice", "choices", "class", "category")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp")
SHOWN_CHARACTERS = 300
TRUE_WORDS = {"true", "1", "yes"}
FALSE_WORDS = {"false", "0", "no", ""}


@dataclass(frozen=True)
class References:
    """How a dataset file's image references are read: byte cap, URL fetching, Label Studio's files root."""

    max_bytes: int
    url_timeout_s: float = 10.0
    allow_private_urls: bool = False
    files_root: Path | None = None  # where /data/local-files/?d=REL starts; None: the JSON file's folder

    @classmethod
    def from_settings(cls, settings: Settings, files_root: Path | None = None) -> References:
        """The references rule of this Loupe instance's settings."""
        return cls(settings.max_image_bytes, settings.url_timeout_s, settings.allow_private_urls, files_root)


def detect_format(path: Path) -> str | None:
    """Which format path is in (LABELSTUDIO, CSV_LIST, IMAGEFOLDER, SPLIT_FOLDERS), or None for Loupe's own kinds."""
    if path.is_file():
        suffix = path.suffix.lower()
        return LABELSTUDIO if suffix == ".json" else CSV_LIST if suffix == ".csv" else None
    if not path.is_dir():
        return None
    if _metadata_files(path):
        return IMAGEFOLDER
    return SPLIT_FOLDERS if _split_folders(path) else None


def batch_kind(path: Path) -> str | None:
    """The import batch kind for a dataset at path, or None when it is not in one of these formats."""
    return FORMAT_KINDS.get(detect_format(Path(path)) or "")


def format_candidates(
    path: Path, fmt: str, references: References, default_label: str | None = None
) -> list[Candidate | Refused]:
    """The items of the dataset at path in format fmt; unlabeled ones get default_label."""
    readers: dict[str, Callable[[Path, References], list[Candidate | Refused]]] = {
        LABELSTUDIO: labelstudio_candidates,
        CSV_LIST: csv_candidates,
        IMAGEFOLDER: imagefolder_candidates,
        SPLIT_FOLDERS: split_folder_candidates,
    }
    found = readers[fmt](Path(path), references)
    if default_label is not None:
        for item in found:
            if isinstance(item, Candidate) and item.label is None:
                item.label = default_label
    return found


# --- image references --------------------------------------------------------------------


def shown(value: object) -> str:
    """A value from a dataset file as a refusal names it: invisible characters escaped (PostgreSQL text
    cannot hold NUL), at most SHOWN_CHARACTERS long."""
    text = str(value)
    text = text if text.isprintable() else repr(text)[1:-1]
    return text if len(text) <= SHOWN_CHARACTERS else text[:SHOWN_CHARACTERS] + "…"


def item_candidate(
    reference: object, base: Path, references: References, item: str, label: object, split: object
) -> Candidate | Refused:
    """A candidate for one row of a dataset file (its image reference, label and split as written), or why it
    is refused: a label that is not one class, or a reference that cannot be read."""
    try:
        label = _label_value(label)
    except ImageRejected as rejection:
        return Refused(item, rejection.reason, rejection.detail)
    reference = reference if isinstance(reference, str) else ""
    return reference_candidate(reference, base, references, item, label, _split_value(split))


def reference_candidate(
    reference: str, base: Path, references: References, item: str, label: str | None, split: str | None
) -> Candidate | Refused:
    """A candidate for the image reference (URL, relative path, Label Studio local file), or why it is refused.

    base: the folder relative paths start from; item: how the reference is named in a refusal.
    """
    reference = reference.strip()
    if not reference:
        return Refused(item, RejectReason.MISSING_FILE, "no image path or URL is given")
    if not reference.isprintable():
        return Refused(item, RejectReason.MISSING_FILE, "the image path or URL has an invisible or control character")
    parsed = urlparse(reference)
    if parsed.scheme in ("http", "https"):
        name = PurePosixPath(unquote(parsed.path)).name or "download"

        def download(url: str = reference) -> bytes:
            return fetch_image_url(
                url,
                timeout_s=references.url_timeout_s,
                max_bytes=references.max_bytes,
                allow_private=references.allow_private_urls,
            )

        return Candidate(name, reference, label, download, split)
    if parsed.path.startswith(LS_UPLOADS):
        return Refused(
            item,
            RejectReason.MISSING_FILE,
            "a file uploaded into Label Studio lives inside Label Studio: import this project through the Label "
            "Studio connection, or export it from Label Studio with its files and import that",
        )
    if parsed.path.startswith(LS_LOCAL_FILES):
        relative = parse_qs(parsed.query).get("d", [""])[0]
        root = references.files_root if references.files_root is not None else base
        return _file_candidate(relative, Path(root), references, item, label, split, what="the files root")
    if len(parsed.scheme) > 1:  # one letter is a Windows drive (C:\…), judged as a path below
        return Refused(
            item,
            RejectReason.UNSAFE_URL,
            f"{parsed.scheme}: references are not read; use http(s) URLs or paths relative to the file",
        )
    return _file_candidate(reference, base, references, item, label, split, what="the dataset file's folder")


def _file_candidate(
    relative: str, base: Path, references: References, item: str, label: str | None, split: str | None, what: str
) -> Candidate | Refused:
    """A file at relative under base, refused when it would leave base (absolute, '..', a link outside)."""
    posix = relative.replace("\\", "/")
    if not posix:
        return Refused(item, RejectReason.MISSING_FILE, "no image path is given")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return Refused(item, RejectReason.UNSAFE_PATH, f"an absolute path; paths are read relative to {what}")
    if ".." in PurePosixPath(posix).parts:
        return Refused(item, RejectReason.UNSAFE_PATH, f"a '..' path, which would leave {what}")
    base = base.resolve()
    path = base / posix
    try:
        inside, present = path.resolve().is_relative_to(base), path.is_file()
    except (OSError, ValueError) as error:  # a NUL character, a name too long for the file system
        return Refused(item, RejectReason.MISSING_FILE, f"the path cannot be opened: {error}")
    if not inside:
        return Refused(item, RejectReason.UNSAFE_PATH, f"a symbolic link that points outside {what}")
    if not present:
        return Refused(item, RejectReason.MISSING_FILE, f"no such file: {path}")
    return Candidate(path.name, str(path), label, lambda: _read_capped(path, references.max_bytes), split)


def _label_value(value: object) -> str | None:
    """A label as written in a dataset file: text, or a number (a class index); None when blank.

    Raises BadLabel for a list or an object: Loupe keeps one label per image.
    """
    if value is None:
        return None
    if isinstance(value, list | dict):
        shown = json.dumps(value, ensure_ascii=False)
        raise BadLabel(f"the label is {echo(shown)}, not one class; Loupe keeps one label per image")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    text = str(value)
    return text if text.strip() else None


def _split_value(value: object) -> str | None:
    """A split as written in a dataset file, None when blank (then the content hash decides)."""
    if value is None:
        return None
    text = str(value)
    return text if text.strip() else None


# --- Label Studio --------------------------------------------------------------------------


def labelstudio_candidates(path: Path, references: References) -> list[Candidate | Refused]:
    """A Label Studio JSON or JSON-MIN export (told apart by shape: full tasks have a `data` dict)."""
    try:
        tasks = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        return [Refused(str(path), RejectReason.NOT_AN_IMAGE, f"not a readable Label Studio JSON export: {error}")]
    if isinstance(tasks, dict):
        tasks = [tasks]
    if not isinstance(tasks, list) or not all(isinstance(task, dict) for task in tasks):
        return [Refused(str(path), RejectReason.NOT_AN_IMAGE, "not a Label Studio export: expected a list of tasks")]
    full = any(isinstance(task.get("data"), dict) for task in tasks)
    found: list[Candidate | Refused] = []
    for index, task in enumerate(tasks, start=1):
        item = f"{path.name} task {shown(task.get('id', index))}"
        data = task.get("data") if full else task
        if not isinstance(data, dict):
            found.append(Refused(item, RejectReason.MISSING_FILE, "the task has no data"))
            continue
        image_field = _ls_image_field(data)
        if image_field is None:
            found.append(Refused(item, RejectReason.MISSING_FILE, "the task names no image (data.image)"))
            continue
        label = _ls_newest_choice(task) if full else _ls_min_choice(task, image_field)
        reference = data[image_field]
        found.append(
            item_candidate(reference, path.parent, references, f"{item}: {shown(reference)}", label, data.get("split"))
        )
    return found


def _ls_image_field(data: dict) -> str | None:
    """The data field that holds the image: `image` (or a usual name), else the first image-looking string."""
    for name in LS_IMAGE_FIELDS:
        if isinstance(data.get(name), str):
            return name
    for name, value in data.items():
        if isinstance(value, str) and (
            value.startswith(("http://", "https://", LS_LOCAL_FILES, LS_UPLOADS))
            or value.lower().endswith(IMAGE_SUFFIXES)
        ):
            return name
    return None


def newest_annotation(task: dict) -> dict | None:
    """A Label Studio task's newest annotation that was not cancelled, or None."""
    annotations = [a for a in _list(task.get("annotations")) if isinstance(a, dict) and not a.get("was_cancelled")]
    if not annotations:
        return None
    return max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), _int(a.get("id"))))


def annotation_choice(annotation: dict, from_name: str | None = None) -> object:
    """The first choice of an annotation's Choices result (of the from_name tag, when given); None if none."""
    for result in _list(annotation.get("result")):
        if not isinstance(result, dict) or result.get("type") != "choices":
            continue
        if from_name is not None and result.get("from_name") not in (None, from_name):
            continue
        choice = _first_choice(result.get("value"))
        if choice is not None:
            return choice
    return None


def _ls_newest_choice(task: dict) -> object:
    """The first choice of the newest annotation that was not cancelled; None when there is none."""
    newest = newest_annotation(task)
    return annotation_choice(newest) if newest is not None else None


def _ls_min_choice(row: dict, image_field: str) -> object:
    """A JSON-MIN row's answer: the field named like a Choices control (label, choice, …), else one holding
    {"choices": […]} (several chosen); None when the task was not annotated."""
    names = [name for name in LS_MIN_CHOICE_FIELDS if name in row and name != image_field]
    names += [n for n, v in row.items() if isinstance(v, dict) and "choices" in v and n not in LS_MIN_META]
    for name in names:
        value = row[name]
        return _first_choice(value) if isinstance(value, dict) else value
    return None


def _first_choice(value: object) -> object:
    """The first of a Choices value's {"choices": [...]}, or None."""
    choices = _list(value.get("choices")) if isinstance(value, dict) else []
    return choices[0] if choices else None


def _list(value: object) -> list:
    """value when it is a list, else [] (an export edited by hand may hold anything where a list belongs)."""
    return value if isinstance(value, list) else []


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


# --- CSV lists -----------------------------------------------------------------------------


def csv_candidates(path: Path, references: References) -> list[Candidate | Refused]:
    """`path_or_url,label[,split]` rows; a header row may name the columns (path/url/image/file_name/name,
    label, split or is_valid, original_name)."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            reader = csv.reader(handle)
            rows = [(reader.line_num, row) for row in reader if any(field.strip() for field in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        return [Refused(str(path), RejectReason.NOT_AN_IMAGE, f"not a readable CSV file: {error}")]
    rows = [(line, row) for line, row in rows if not row[0].lstrip().startswith("#")]
    if not rows:
        return []
    first = [name.strip().lower() for name in rows[0][1]]
    if _is_header(first):
        rows = rows[1:]
        columns = {name: index for index, name in reversed(list(enumerate(first)))}
    else:
        columns = {"path_or_url": 0, "label": 1, "split": 2}
    path_column = next(columns[name] for name in PATH_COLUMNS if name in columns)
    label_column = next((columns[name] for name in LABEL_COLUMNS if name in columns), None)
    found: list[Candidate | Refused] = []
    for line, row in rows:
        cell = dict(enumerate(row))
        reference = cell.get(path_column, "")
        item = f"{path.name} line {line}: {shown(reference)}"
        split = cell.get(columns["split"]) if "split" in columns else None
        if "is_valid" in columns:  # fastai's cleaned.csv and Loupe's csv export
            flag = cell.get(columns["is_valid"], "").strip().lower()
            if flag not in TRUE_WORDS | FALSE_WORDS:
                found.append(Refused(item, RejectReason.BAD_SPLIT, f"is_valid is {echo(flag)}, not True or False"))
                continue
            split = "valid" if flag in TRUE_WORDS else "train"
        label = cell.get(label_column) if label_column is not None else None
        candidate = item_candidate(reference, path.parent, references, item, label, split)
        original = cell.get(columns.get("original_name", -1), "").strip()
        if isinstance(candidate, Candidate) and original:
            candidate.original_name = shown(original)
        found.append(candidate)
    return found


def _is_header(fields: list[str]) -> bool:
    """Whether a CSV's first row names its columns: it names a path column and is not itself a row of data."""
    looks_like_data = "://" in fields[0] or fields[0].endswith(IMAGE_SUFFIXES)
    return not looks_like_data and any(name in PATH_COLUMNS for name in fields)


# --- Hugging Face imagefolder --------------------------------------------------------------


def _metadata_files(root: Path) -> list[tuple[Path, str | None]]:
    """(metadata file, the split its folder names or None) at root and in root's split folders."""
    found = []
    for folder, split in [(root, None)] + [(root / name, name) for name in _subfolder_names(root)]:
        if split is not None and split.lower() not in SPLIT_NAMES:
            continue
        metadata = next((folder / name for name in METADATA_FILES if (folder / name).is_file()), None)
        if metadata is not None:
            found.append((metadata, split))
    return found


def _subfolder_names(root: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not _is_ignored_name(e.name))


def imagefolder_candidates(root: Path, references: References) -> list[Candidate | Refused]:
    """The rows of each metadata file: `file_name` relative to the metadata's folder, the label column, and the
    split from a `split` column, else the split folder, else the first folder of file_name when it is a split."""
    found: list[Candidate | Refused] = []
    for metadata, folder_split in _metadata_files(root):
        for line, row in _metadata_rows(metadata):
            item = f"{metadata.relative_to(root).as_posix()} line {line}"
            if isinstance(row, Refused):
                found.append(Refused(item, row.reason, row.detail))
                continue
            file_name = str(row.get("file_name") or "")
            first_folder = PurePosixPath(file_name.replace("\\", "/")).parts[:1]
            path_split = first_folder[0] if first_folder and first_folder[0].lower() in SPLIT_NAMES else None
            split = _split_value(row.get("split")) or folder_split or path_split
            label_column = next((name for name in LABEL_COLUMNS if name in row), None)
            label = row[label_column] if label_column else None
            found.append(
                item_candidate(file_name, metadata.parent, references, f"{item}: {shown(file_name)}", label, split)
            )
    return found


def _metadata_rows(metadata: Path) -> Iterator[tuple[int, dict | Refused]]:
    """(line number, row) of a metadata.jsonl or metadata.csv; a line that is not a JSON object is a Refused."""
    try:
        if metadata.suffix == ".csv":
            with open(metadata, newline="", encoding="utf-8-sig") as handle:
                rows = list(csv.DictReader(handle))
            yield from enumerate(rows, start=2)
            return
        lines = metadata.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        yield 0, Refused(str(metadata), RejectReason.NOT_AN_IMAGE, f"the metadata file cannot be read: {error}")
        return
    for line, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            row = json.loads(text)
        except (ValueError, RecursionError):
            row = None
        if not isinstance(row, dict):
            yield line, Refused("", RejectReason.MISSING_FILE, "the line is not a JSON object, so it names no image")
        else:
            yield line, row


# --- class folders under split folders -------------------------------------------------------


def _split_folders(root: Path) -> list[str]:
    """root's split folders when root holds only split folders (train among them), each holding only class
    folders: DEST/train/<class>/…, DEST/valid/<class>/…; else []. Loose files beside them (an export's
    decisions.csv) are left alone."""
    names = _subfolder_names(root)
    if "train" not in names or any(name.lower() not in SPLIT_NAMES for name in names):
        return []
    for name in names:
        entries = [e for e in os.scandir(root / name) if not _is_ignored_name(e.name)]
        if not entries or any(not e.is_dir() for e in entries):
            return []
    return names


def split_folder_candidates(root: Path, references: References) -> list[Candidate | Refused]:
    """Each split folder imported like a folder of class folders, with that split."""
    found: list[Candidate | Refused] = []
    for name in _split_folders(root):
        for item in folder_candidates(root / name, references.max_bytes):
            if isinstance(item, Candidate):
                item.split = name
            found.append(item)
    return found
