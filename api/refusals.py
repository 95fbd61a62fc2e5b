"""The one translation of refusals into HTTP answers: a LoupeError becomes its status and {"detail": sentence}.

Installed on the FastAPI app and on every mounted Gradio app (its login and upload routes are its own),
and used by api/guard.py for refusals made before any route runs. No route catches a refusal itself.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from errors import LoupeError


def refusal_response(error: LoupeError) -> JSONResponse:
    """The answer to a refusal: its HTTP status, its sentence as `detail`, and its headers."""
    return JSONResponse({"detail": error.message}, status_code=error.status, headers=error.headers())


async def _answer_refusal(_request: Request, error: LoupeError) -> JSONResponse:
    return refusal_response(error)


def install_refusal_handler(app: FastAPI) -> None:
    """Make app answer every LoupeError its routes raise with refusal_response."""
    app.add_exception_handler(LoupeError, _answer_refusal)
