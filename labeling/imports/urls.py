"""URL-list imports, as in the lesson's download_images: one file of URLs per class."""

from __future__ import annotations

import csv
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import httpx

from context import Context
from labeling.imports.ingest import Candidate, ImportSummary, ProgressFn, Refused, import_candidates
from labeling.imports.safe_fetch import read_body_capped
from models.imagecheck import ImageRejected, RejectReason

USER_AGENT = "Loupe/1.0 (image import)"


class DownloadFailed(ImageRejected):
    """A URL that gave no image bytes."""

    def __init__(self, detail: str):
        super().__init__(RejectReason.DOWNLOAD_FAILED, detail)


def read_url_list(path: Path) -> list[str]:
    """The URLs in a text or CSV file: the first http(s)-looking field of each line."""
    urls = []
    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        for row in csv.reader(handle):
            fields = [f.strip() for f in row if f.strip()]
            if not fields or fields[0].startswith("#"):
                continue
            url = next((f for f in fields if "://" in f), None)
            if url is None and fields[0].lower() in {"url", "urls", "link"}:
                continue  # a CSV header
            urls.append(url or fields[0])
    return urls


def download(url: str, *, timeout_s: float, max_bytes: int, retries: int) -> bytes:
    """The body at url, within the time and byte caps, retrying failures that may pass."""
    if urlparse(url).scheme not in ("http", "https"):
        raise DownloadFailed(f"not an http(s) URL: {url!r}")
    last_error = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(0.5 * 2**attempt, 4))
        try:
            return _download_once(url, timeout_s, max_bytes)
        except _Retryable as error:
            last_error = str(error)
    raise DownloadFailed(f"{last_error} (after {retries + 1} tries)")


class _Retryable(Exception):
    pass


def _download_once(url: str, timeout_s: float, max_bytes: int) -> bytes:
    timeout = httpx.Timeout(timeout_s)
    try:
        with httpx.stream(
            "GET", url, timeout=timeout, follow_redirects=True, headers={"User-Agent": USER_AGENT}
        ) as response:
            if response.status_code >= 500:
                raise _Retryable(f"the server answered HTTP {response.status_code}")
            if response.status_code >= 400:
                raise DownloadFailed(f"the server answered HTTP {response.status_code}")
            return read_body_capped(response, max_bytes)
    except httpx.TimeoutException:
        raise _Retryable(f"no answer within {timeout_s:g} s") from None
    except httpx.TransportError as error:
        raise _Retryable(f"connection failed: {error}") from None


def _fetch(url: str, context: Context, timeout_s: float, retries: int, full_errors: bool) -> bytes | ImageRejected:
    """Bytes, or the rejection (exceptions cross the thread pool as values)."""
    try:
        return download(url, timeout_s=timeout_s, max_bytes=context.settings.max_image_bytes, retries=retries)
    except ImageRejected as rejection:
        return rejection
    except Exception as error:  # an unexpected failure is recorded, never fatal
        detail = traceback.format_exc() if full_errors else f"{type(error).__name__}: {error}"
        return DownloadFailed(detail)


def _raise_or_return(result: bytes | ImageRejected) -> bytes:
    if isinstance(result, ImageRejected):
        raise result
    return result


def import_url_lists(
    context: Context,
    files: list[Path],
    *,
    workers: int | None = None,
    timeout_s: float | None = None,
    retries: int | None = None,
    progress: ProgressFn | None = None,
    user_name: str | None = None,
) -> ImportSummary:
    """Download every URL of every list file (the file's name is the class) as one batch."""
    settings = context.settings
    workers = settings.url_workers if workers is None else workers
    timeout_s = settings.url_timeout_s if timeout_s is None else timeout_s
    retries = settings.url_retries if retries is None else retries
    jobs: list[tuple[str, str]] = []  # (label, url)
    refused: list[Refused] = []
    for path in files:
        path = Path(path)
        if not path.is_file():
            refused.append(Refused(str(path), RejectReason.DOWNLOAD_FAILED, "no such URL list file"))
            continue
        jobs += [(path.stem, url) for url in read_url_list(path)]

    def fetch(url: str) -> bytes | ImageRejected:
        return _fetch(url, context, timeout_s, retries, full_errors=workers == 0)

    def candidates() -> Iterator[Candidate | Refused]:
        yield from refused
        if workers == 0:
            results = map(fetch, (url for _, url in jobs))
        else:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="loupe-download")
            results = pool.map(fetch, [url for _, url in jobs])
        try:
            for (label, url), result in zip(jobs, results, strict=True):
                name = Path(urlparse(url).path).name or "download"
                yield Candidate(original_name=name, source=url, label=label, load=lambda r=result: _raise_or_return(r))
        finally:
            if workers != 0:
                pool.shutdown(cancel_futures=True)

    source = ", ".join(str(p) for p in files)
    return import_candidates(context, "urls", source, candidates(), len(jobs) + len(refused), progress, user_name)
