"""The middleware in front of every route and page: door rules and body caps before any handler runs.

- Framework routes the pages do not use are closed, and Gradio's file and upload routes are gated by
  who is asking (ui/mounts.py's WebDoors says which).
- Each request may send a body of at most its route's cap, counted on the bytes actually read, so a
  chunked body without Content-Length is cut off too (413).
- The client's address is put in limits.client_address for code that Gradio calls without the request
  (the login check).

Plain ASGI rather than Starlette's BaseHTTPMiddleware: that one cost a third of /api/predict's
throughput in bench/http_load.py.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from api.refusals import refusal_response
from limits import client_address
from settings import Settings

ENVELOPE_BYTES = 1024 * 1024  # multipart headers and form fields around an uploaded file


def api_body_limit(path: str, settings: Settings) -> int:
    """The body cap of Loupe's own routes: an image for /api/predict, every selected task for Label
    Studio's predict, the default for the rest."""
    path = path.rstrip("/")
    if path == "/api/predict":
        return settings.max_image_bytes + ENVELOPE_BYTES
    if path == "/api/label-studio/predict":
        return settings.label_studio_max_request_bytes
    return settings.max_request_bytes


class ApiDoors:
    """The doors of an app without Gradio pages (the predict-only process): the routes' body caps, nothing
    closed (every route there is Loupe's own)."""

    def __init__(self, settings: Settings):
        self.settings = settings

    def refusal(self, scope) -> None:
        """No route of such an app is closed."""
        return None

    def body_limit(self, scope) -> int:
        """api_body_limit for the request's path."""
        return api_body_limit(scope["path"], self.settings)


class BodyTooLarge(HTTPException):
    """The request body passed its route's cap while being read."""

    def __init__(self, limit: int):
        super().__init__(413, f"too_large: the request body is over the limit here of {limit:,} bytes")


def _json(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status)


class RequestGuard:
    """ASGI middleware asking doors (ui.mounts.WebDoors, or ApiDoors) about every HTTP request before the app
    sees it."""

    def __init__(self, app, *, doors):
        self.app = app
        self.doors = doors

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        address_token = client_address.set(scope["client"][0] if scope.get("client") else None)
        try:
            refusal = self.doors.refusal(scope)
            if refusal is not None:
                return await refusal_response(refusal)(scope, receive, send)
            limit = self.doors.body_limit(scope)
            declared = dict(scope["headers"]).get(b"content-length", b"")
            if declared.isdigit() and int(declared) > limit:
                detail = f"too_large: the request is {int(declared):,} bytes; the limit here is {limit:,}"
                return await _json(413, detail)(scope, receive, send)
            await self._call_counting(scope, receive, send, limit)
        finally:
            client_address.reset(address_token)

    async def _call_counting(self, scope, receive, send, limit: int) -> None:
        received = 0
        started = False

        async def counting_receive():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def noting_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, noting_send)
        except BodyTooLarge as too_large:  # a handler that did not turn it into its 413 itself
            if not started:
                await _json(413, too_large.detail)(scope, receive, send)
