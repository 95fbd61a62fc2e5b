"""Helpers that knock on a running app's doors as an outsider would: its events from its own config,
its Gradio routes, a logged-in browser session. Shared by tests/test_doors.py and bench/bad_inputs.py."""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx
from PIL import Image

FILE_META = {"_type": "gradio.FileData"}


@dataclass(frozen=True)
class Event:
    """One event of a mounted page, as its config describes it."""

    mount: str  # "" or "/review"
    fn_index: int
    api_name: str | None
    input_types: tuple[str, ...]

    @property
    def takes_files(self) -> bool:
        """Whether one of its inputs is a file component."""
        return any(kind in ("image", "file", "gallery", "video", "audio", "model3d") for kind in self.input_types)


def login(base: str, user: str, password: str, **client_options) -> httpx.Client:
    """An httpx client holding a /review session cookie, as a browser would after the login form."""
    client = httpx.Client(base_url=base, timeout=60, **client_options)
    client.post("/review/login", data={"username": user, "password": password}).raise_for_status()
    return client


def events(client: httpx.Client, mount: str) -> list[Event]:
    """Every event of the page mounted at mount, from the page's own /config."""
    config = client.get(f"{mount}/config").raise_for_status().json()
    kinds = {component["id"]: component["type"] for component in config["components"]}
    found = []
    for index, dependency in enumerate(config["dependencies"]):
        found.append(
            Event(
                mount,
                dependency.get("id", index),
                dependency.get("api_name"),
                tuple(kinds.get(i, "?") for i in dependency["inputs"]),
            )
        )
    return found


def run_event(client: httpx.Client, event: Event, data: list, timeout: float = 60) -> dict:
    """Send one event through the queue (as the browser does) and return its process_completed message."""
    session = uuid.uuid4().hex[:10]
    joined = client.post(
        f"{event.mount}/gradio_api/queue/join",
        json={"data": data, "fn_index": event.fn_index, "session_hash": session, "event_data": None},
        timeout=timeout,
    )
    if joined.status_code != 200:
        return {"success": False, "status": joined.status_code, "error": joined.text}
    event_id = joined.json()["event_id"]
    with client.stream(
        "GET", f"{event.mount}/gradio_api/queue/data", params={"session_hash": session}, timeout=timeout
    ) as stream:
        for line in stream.iter_lines():
            if not line.startswith("data:"):
                continue
            message = json.loads(line[5:])
            if message.get("event_id") == event_id and message.get("msg") == "process_completed":
                output = message.get("output") or {}
                return {"success": message.get("success"), "error": output.get("error"), "output": output}
    return {"success": False, "error": "the stream ended without an answer"}


def client_path(path: Path | str) -> dict:
    """A FileData naming a file on the server, as an attacker sends it."""
    return {"path": str(path), "orig_name": Path(path).name, "meta": FILE_META}


def upload(client: httpx.Client, mount: str, name: str, data: bytes) -> httpx.Response:
    """POST one file to a page's Gradio upload route."""
    return client.post(f"{mount}/gradio_api/upload", files={"files": (name, data)})


def uploaded(client: httpx.Client, mount: str, name: str, data: bytes) -> dict:
    """Upload a file and return the FileData an event takes for it."""
    response = upload(client, mount, name, data).raise_for_status()
    return {"path": response.json()[0], "orig_name": name, "meta": FILE_META}


def animated_gif(frames: int = 300, side: int = 1000) -> bytes:
    """A small file that is expensive to convert: many frames of a large, nearly empty canvas."""
    images = [Image.new("P", (side, side), i % 2) for i in range(frames)]
    buffer = io.BytesIO()
    images[0].save(buffer, "GIF", save_all=True, append_images=images[1:], optimize=False)
    return buffer.getvalue()


def large_png(side: int = 8000) -> bytes:
    """side × side pixels, above the default 40-Mpixel limit, in a small one-bit file."""
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, "PNG")
    return buffer.getvalue()


def files_holding(root: Path, secret: bytes) -> list[Path]:
    """Files under root whose bytes equal secret (a leaked copy)."""
    return [p for p in root.rglob("*") if p.is_file() and p.stat().st_size == len(secret) and p.read_bytes() == secret]
