"""The Gradio pages as mounted on the app, and the rules for every door Gradio opens on them.

A mount is more than the events Loupe wrote: Gradio adds its queue, upload, file, config, login,
monitoring, proxy and history routes, and a file cache. Mounted (rather than launched) Blocks skip
Gradio's own check of client-supplied file paths, and both pages shared one cache that either page's
file route served. Here each page gets:

- its own folder under data/web/ for uploads and cached copies, and the Admin tab's components a
  folder of their own inside the review one, so a file route can be gated by role;
- a check in front of every event's preprocessing that refuses any file path a client sends that is
  not an upload to this page (so a new event is covered without a line of its own);
- errors hidden from clients except Loupe's own gr.Error / gr.Warning sentences;
- a queue that sleeps when idle (ui/quiet_queue.py);
- for /review, sessions kept in the database and checked on every request (ui/sessions.py).

`WebDoors` is what api/guard.py's middleware asks before a request reaches any route: which
framework routes are closed, who may fetch which cached file, who may upload, and how many body bytes
each route may read.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from http.cookies import SimpleCookie
from pathlib import Path

import gradio as gr

from api.guard import ENVELOPE_BYTES, api_body_limit
from api.refusals import install_refusal_handler
from context import Context
from db.sessions import SessionLimits
from db.users import UserRow, get_user
from errors import LoupeError, NotAuthenticated, NotFound, PermissionDenied
from labeling.review import ADMIN, holds_role
from limits import RateLimited, RequestRate
from ui.quiet_queue import quiet
from ui.refusals import show_refusals_everywhere
from ui.sessions import SessionTokens

API_PREFIX = "/gradio_api"
# Framework routes Loupe's pages never use: closed on every mount (404) rather than left to Gradio's
# defaults — a URL proxy, a screen-recording upload, monitoring, run history, dev reload, the vibe
# editor, deep links, MCP, media streams and custom-component files.
CLOSED_ROUTES = (
    f"{API_PREFIX}/proxy=",
    f"{API_PREFIX}/process_recording",
    f"{API_PREFIX}/run-history",
    f"{API_PREFIX}/runs",
    f"{API_PREFIX}/dev/",
    f"{API_PREFIX}/vibe-edit",
    f"{API_PREFIX}/undo-vibe-edit",
    f"{API_PREFIX}/vibe-code",
    f"{API_PREFIX}/deep_link",
    f"{API_PREFIX}/mcp",
    f"{API_PREFIX}/stream/",
    f"{API_PREFIX}/custom_component/",
    f"{API_PREFIX}/monitoring",
    "/monitoring",
)
FILE_ROUTES = (f"{API_PREFIX}/file=", f"{API_PREFIX}/file/")
UPLOAD_ROUTE = f"{API_PREFIX}/upload"


class WebCache:
    """One page's folder of uploads and cached copies, kept within an age, a byte and a file budget."""

    def __init__(self, folder: Path, max_age_s: float, max_bytes: int, max_files: int):
        self.folder = folder.resolve()
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_age_s, self.max_bytes, self.max_files = max_age_s, max_bytes, max_files
        self._lock = threading.Lock()

    def _files(self) -> list[tuple[float, int, Path]]:
        found = []
        for root, _dirs, names in os.walk(self.folder):
            for name in names:
                path = Path(root) / name
                try:
                    stat = path.stat()
                except FileNotFoundError:
                    continue
                found.append((stat.st_mtime, stat.st_size, path))
        return sorted(found)

    def sweep(self) -> int:
        """Delete files past the age limit, then the oldest until within the byte and file budgets."""
        with self._lock:
            files = self._files()
            now, removed = time.time(), 0
            total = sum(size for _, size, _ in files)
            count = len(files)
            for mtime, size, path in files:
                if now - mtime <= self.max_age_s and total <= self.max_bytes and count <= self.max_files:
                    break
                path.unlink(missing_ok=True)
                total, count, removed = total - size, count - 1, removed + 1
            for root, dirs, _names in os.walk(self.folder, topdown=False):
                for name in dirs:
                    try:
                        (Path(root) / name).rmdir()  # empty hash folders Gradio made per file
                    except OSError:
                        pass
            return removed

    def usage(self) -> tuple[int, int]:
        """(bytes, files) held now."""
        files = self._files()
        return sum(size for _, size, _ in files), len(files)

    def holds(self, path: Path) -> bool:
        """Whether path (resolved) lies inside this cache."""
        return path == self.folder or self.folder in path.parents


@dataclass
class PageMount:
    """One mounted Gradio page: its URL prefix, its Blocks and Gradio app, and its file folders.

    uploads: what clients uploaded (the only files an event accepts); copies: files the page's outputs
    copied for the browser; admin_copies: the Admin tab's copies (exports, charts), for admins only.
    """

    prefix: str  # "" for the page at /
    blocks: gr.Blocks
    gradio_app: object = None
    uploads: WebCache | None = None
    copies: WebCache | None = None
    admin_copies: WebCache | None = None
    tokens: SessionTokens | None = None

    def caches(self) -> list[WebCache]:
        """Every folder this page writes."""
        return [c for c in (self.uploads, self.copies, self.admin_copies) if c is not None]

    def owns(self, path: str) -> bool:
        """Whether a request path is this mount's (the page at / owns what no other mount does)."""
        return not self.prefix or path == self.prefix or path.startswith(self.prefix + "/")

    def user_name(self, scope) -> str | None:
        """The logged-in user of a request to this mount, from Gradio's session cookie; else None."""
        if self.tokens is None:
            return None
        cookies = SimpleCookie()
        for name, value in scope.get("headers", []):
            if name == b"cookie":
                try:
                    cookies.load(value.decode("latin-1"))
                except Exception:  # noqa: BLE001 — a malformed cookie header is no session
                    return None
        cookie_id = self.gradio_app.cookie_id
        for key in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}"):
            if key in cookies:
                return self.tokens.get(cookies[key].value)
        return None


class ClientPathRefused(gr.Error):
    """A client sent a file path that is not one of its uploads to this page."""


def refuse_client_paths(blocks: gr.Blocks, cache: WebCache) -> None:
    """Check every event's inputs before Gradio preprocesses them: a file may only be an upload here.

    Gradio's own check (processing_utils._check_allowed) returns at once for Blocks that were mounted
    rather than launched; and its upload folder is shared by every page. This wraps Blocks.preprocess_data,
    which every event of the page passes through, whatever its components.
    """
    preprocess = blocks.preprocess_data

    def check(value) -> None:
        if isinstance(value, dict):
            path = value.get("path")
            if isinstance(path, str):
                resolved = Path(path).resolve() if path else None
                if resolved is None or not cache.holds(resolved) or not resolved.is_file():
                    raise ClientPathRefused("Files can only come from an upload to this page; upload the file again.")
            url = value.get("url")
            if isinstance(url, str) and url.startswith("data:"):
                raise ClientPathRefused("Send files as uploads, not as data URLs.")
            for item in value.values():
                check(item)
        elif isinstance(value, list | tuple):
            for item in value:
                check(item)

    async def checked_preprocess(block_fn, inputs, state, explicit_call=False):
        check(inputs)
        return await preprocess(block_fn, inputs, state, explicit_call)

    blocks.preprocess_data = checked_preprocess


def _point_caches_at(blocks_or_tab, folder: Path) -> None:
    """Every component under blocks_or_tab copies its files into folder."""
    for block in _descendants(blocks_or_tab):
        block.GRADIO_CACHE = str(folder)


def _descendants(root) -> list:
    found, stack = [], [root]
    while stack:
        block = stack.pop()
        found.append(block)
        stack.extend(getattr(block, "children", []) or [])
    return found


def _gradio_app(app, prefix: str):
    for route in app.routes:
        if getattr(route, "path", None) == (prefix or ""):
            return route.app
    raise RuntimeError(f"no Gradio app mounted at {prefix or '/'}")


def mount_page(app, mount: PageMount, context: Context, *, auth=None, admin_root=None, **options):
    """gr.mount_gradio_app with Loupe's door rules: own cache, checked inputs, hidden errors, quiet queue."""
    settings = context.settings
    web = settings.data_dir / "web" / (mount.prefix.strip("/") or "public")
    budget = {
        "max_age_s": settings.web_cache_max_age_s,
        "max_bytes": settings.web_cache_max_bytes,
        "max_files": settings.web_cache_max_files,
    }
    mount.uploads, mount.copies = WebCache(web / "uploads", **budget), WebCache(web / "copies", **budget)
    blocks = mount.blocks
    _point_caches_at(blocks, mount.copies.folder)
    if admin_root is not None:
        mount.admin_copies = WebCache(web / "admin-copies", **budget)
        _point_caches_at(admin_root, mount.admin_copies.folder)
    refuse_client_paths(blocks, mount.uploads)
    show_refusals_everywhere(blocks)
    quiet(blocks)
    # Gradio's file route serves uploads and these folders; WebDoors decides who may ask (by role).
    served = [str(cache.folder) for cache in (mount.copies, mount.admin_copies) if cache is not None]
    app = gr.mount_gradio_app(
        app,
        blocks,
        path=mount.prefix or "/",
        auth=auth,
        show_error=False,  # unexpected errors (paths, SQL) stay in the log; gr.Error sentences still show
        enable_monitoring=False,
        run_history=False,
        max_file_size=settings.max_image_bytes if admin_root is None else settings.max_zip_bytes,
        allowed_paths=served,
        **options,
    )
    mount.gradio_app = _gradio_app(app, mount.prefix)
    mount.gradio_app.uploaded_file_dir = str(mount.uploads.folder)
    install_refusal_handler(mount.gradio_app)  # its login route refuses too many tries (429)
    if auth is not None:
        limits = SessionLimits(idle_s=settings.session_idle_s, max_s=settings.session_max_s)
        mount.tokens = SessionTokens(context.database, limits)
        mount.gradio_app.tokens = mount.tokens
    return app


class WebDoors:
    """The middleware's questions about the Gradio mounts: closed routes, file and upload rights, body caps."""

    def __init__(self, context: Context, mounts: list[PageMount], upload_rate: RequestRate):
        self.context = context
        self.mounts = mounts  # the page at / last: it owns whatever the others do not
        self.upload_rate = upload_rate
        settings = context.settings
        self.default_max_bytes = settings.max_request_bytes
        self.image_max_bytes = settings.max_image_bytes + ENVELOPE_BYTES
        self.zip_max_bytes = settings.max_zip_bytes + ENVELOPE_BYTES

    def _mount(self, path: str) -> tuple[PageMount | None, str]:
        if path.startswith(("/api/", "/docs")) or path in ("/openapi.json", "/redoc"):
            return None, path  # Loupe's REST routes
        for mount in self.mounts:
            if mount.owns(path):
                return mount, path[len(mount.prefix) :]
        return None, path

    def _user(self, mount: PageMount, scope) -> UserRow | None:
        name = mount.user_name(scope)
        user = get_user(self.context.database, name) if name else None
        return user if user and not user.disabled else None

    def refusal(self, scope) -> LoupeError | None:
        """The refusal when a request must not reach its route; None when it may."""
        mount, sub = self._mount(scope["path"])
        if mount is None:
            return None
        if sub.startswith(CLOSED_ROUTES):
            return NotFound("not_found: this page does not offer that")
        if sub.startswith(FILE_ROUTES):
            return self._file_refusal(mount, sub, scope)
        if sub.rstrip("/") == UPLOAD_ROUTE:
            return self._upload_refusal(mount, scope)
        return None

    def _file_refusal(self, mount: PageMount, sub: str, scope) -> LoupeError | None:
        route = next(r for r in FILE_ROUTES if sub.startswith(r))
        target = sub[len(route) :]
        if "://" in target:
            return PermissionDenied("forbidden: this server does not fetch URLs for clients")
        resolved = Path(target).resolve()
        if mount.admin_copies is not None and mount.admin_copies.holds(resolved):
            user = self._user(mount, scope)
            return None if holds_role(user, ADMIN) else PermissionDenied("forbidden: this file is for admins")
        if mount.uploads.holds(resolved) or mount.copies.holds(resolved):
            if mount.tokens is not None and self._user(mount, scope) is None:
                return NotAuthenticated("not_authenticated: log in first")
            return None
        return PermissionDenied("forbidden: only this page's own uploads and copies are served")

    def _upload_refusal(self, mount: PageMount, scope) -> LoupeError | None:
        if mount.admin_copies is not None:  # the review page: only the Admin tab uploads
            user = self._user(mount, scope)
            return None if holds_role(user, ADMIN) else PermissionDenied("forbidden: uploads here need the admin role")
        address = scope["client"][0] if scope.get("client") else None
        try:
            self.upload_rate.take(address)
        except RateLimited as limited:
            return limited
        if mount.uploads.usage()[0] >= mount.uploads.max_bytes:
            mount.uploads.sweep()  # oldest uploads go first, so a flood cannot fill the disk
        return None

    def body_limit(self, scope) -> int:
        """How many body bytes a request may send: an image for uploads and predict, a zip for admin uploads."""
        mount, sub = self._mount(scope["path"])
        if mount is None:
            return api_body_limit(scope["path"], self.context.settings)
        if sub.rstrip("/") == UPLOAD_ROUTE:
            return self.zip_max_bytes if mount.admin_copies is not None else self.image_max_bytes
        return self.default_max_bytes

    def sweep(self) -> None:
        """Clean every mount's caches (age and budget)."""
        for mount in self.mounts:
            for cache in mount.caches():
                cache.sweep()


class Sweeper:
    """A daemon thread that sweeps the web caches every interval_s until stopped."""

    def __init__(self, doors: WebDoors, interval_s: float):
        self.doors, self.interval_s = doors, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="loupe-web-cache-sweeper", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.doors.sweep()

    def start(self) -> None:
        """Sweep once now, then every interval."""
        self.doors.sweep()
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current sweep."""
        self._stop.set()
