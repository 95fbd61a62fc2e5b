"""A real Label Studio for integration tests: `label-studio start` from its own virtual environment.

Label Studio pins its own Django, pydantic and numpy, so `make label-studio` installs it into .venv-ls
beside Loupe's .venv rather than into it. LOUPE_TEST_LABEL_STUDIO names another label-studio script.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EXECUTABLE = Path(os.environ.get("LOUPE_TEST_LABEL_STUDIO", ROOT / ".venv-ls" / "bin" / "label-studio"))
USER = "annotator@example.com"
PASSWORD = "label-studio-password"
CLASSIFY_CONFIG = (
    '<View><Image name="image" value="$image"/><Choices name="label" toName="image">{choices}</Choices></View>'
)


class LabelStudioFailed(Exception):
    """Label Studio answered an API call with an error."""


class LabelStudio:
    """A running Label Studio on a loopback port, with its own SQLite data folder, and its REST API."""

    def __init__(self, data_dir: Path, port: int):
        self.url = f"http://127.0.0.1:{port}"
        self.token = uuid.uuid4().hex[:40]
        self.log_path = data_dir / "label-studio.log"
        env = {
            **os.environ,
            "LABEL_STUDIO_BASE_DATA_DIR": str(data_dir),
            "LABEL_STUDIO_USERNAME": USER,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": self.token,
            "LABEL_STUDIO_HOST": self.url,
            # Loupe fetches uploads with the user token Label Studio gives its ML backends at /setup,
            # a "legacy" token that Label Studio 1.23 turns off unless asked.
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            # Label Studio refuses to call an ML backend on a loopback address unless told.
            "ML_BLOCK_LOCAL_IP": "false",
            "SSRF_PROTECTION_ENABLED": "false",
            "COLLECT_ANALYTICS": "false",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
        }
        self.log = open(self.log_path, "w")  # noqa: SIM115 — closed in stop()
        self.process = subprocess.Popen(
            [str(EXECUTABLE), "start", "--no-browser", "--port", str(port), "--internal-host", "127.0.0.1"],
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_until_up(self, timeout_s: float = 240) -> None:
        """Block until /health answers (the first start runs Label Studio's migrations)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited: {self.log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"Label Studio did not start in {timeout_s} s: {self.log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        """Stop Label Studio and its children."""
        try:
            os.killpg(self.process.pid, 15)
            self.process.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(self.process.pid, 9)
        self.log.close()

    # --- its REST API ---------------------------------------------------------------------------------

    def call(self, method: str, path: str, payload=None, *, raw: bytes | None = None, content_type: str = ""):
        """Label Studio's JSON answer to one API call, as its user."""
        headers = {"Authorization": f"Token {self.token}"}
        if payload is not None:
            raw, content_type = json.dumps(payload).encode(), "application/json"
        if content_type:
            headers["Content-Type"] = content_type
        request = urllib.request.Request(self.url + path, data=raw, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                body = response.read()
        except urllib.error.HTTPError as error:
            raise LabelStudioFailed(f"{method} {path}: HTTP {error.code} {error.read()[:2000]!r}") from None
        return json.loads(body) if body else None

    def create_project(self, title: str, choices: list[str]) -> dict:
        """A project with Label Studio's image-classification config over choices."""
        config = CLASSIFY_CONFIG.format(choices="".join(f'<Choice value="{c}"/>' for c in choices))
        return self.call("POST", "/api/projects", {"title": title, "label_config": config})

    def upload_images(self, project_id: int, files: dict[str, bytes]) -> list[dict]:
        """Upload image files as new tasks (Label Studio stores them under /data/upload/…); the new tasks."""
        boundary = uuid.uuid4().hex
        body = io.BytesIO()
        for name, data in files.items():
            body.write(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{name}"\r\n'.encode())
            body.write(b"Content-Type: image/png\r\n\r\n" + data + b"\r\n")
        body.write(f"--{boundary}--\r\n".encode())
        self.call(
            "POST",
            f"/api/projects/{project_id}/import",
            raw=body.getvalue(),
            content_type=f"multipart/form-data; boundary={boundary}",
        )
        return self.tasks(project_id)

    def tasks(self, project_id: int) -> list[dict]:
        """Every task of the project, oldest first."""
        found = self.call("GET", f"/api/tasks?project={project_id}&page_size=1000")
        return sorted(found["tasks"], key=lambda task: task["id"])

    def connect_ml_backend(self, project_id: int, url: str, token: str) -> dict:
        """Connect an ML backend with Basic auth (user "loupe", password token)."""
        return self.call(
            "POST",
            "/api/ml",
            {
                "url": url,
                "project": project_id,
                "title": "Loupe",
                "auth_method": "BASIC_AUTH",
                "basic_auth_user": "loupe",
                "basic_auth_pass": token,
            },
        )

    def retrieve_predictions(self, project_id: int) -> dict:
        """The Data Manager's "Retrieve Predictions" action on every task."""
        return self.call(
            "POST",
            f"/api/dm/actions?id=retrieve_tasks_predictions&project={project_id}",
            {"selectedItems": {"all": True, "excluded": []}},
        )

    def predictions(self, task_id: int) -> list[dict]:
        """The task's predictions."""
        return self.call("GET", f"/api/predictions?task={task_id}")

    def annotate(self, task_id: int, choice: str) -> dict:
        """Annotate the task with one choice, as the user."""
        result = [{"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [choice]}}]
        return self.call("POST", f"/api/tasks/{task_id}/annotations", {"result": result})

    def import_tasks(self, project_id: int, tasks: list[dict]) -> dict:
        """Import tasks given as JSON (with annotations and predictions, as an export holds them)."""
        return self.call("POST", f"/api/projects/{project_id}/import", tasks)

    def export(self, project_id: int) -> list[dict]:
        """The project's JSON export."""
        return self.call("GET", f"/api/projects/{project_id}/export?exportType=JSON")
