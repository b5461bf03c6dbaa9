"""The one client for a ComfyUI server: readiness and info probes, the prompt endpoints and its websocket events.

Nothing here logs request or response bodies: prompts carry the user's photo as base64.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

import requests
import websocket

HTTP_TIMEOUT = 30.0
OBJECT_INFO_TIMEOUT = 120.0  # /object_info builds every node's definition: slow on a busy CPU


class ComfyUnavailable(RuntimeError):
    """ComfyUI did not answer (connection refused/reset, or a timeout): the process is gone or hung."""


@dataclass
class PromptRejected(Exception):
    """POST /prompt answered with an error or with node_errors (always a failure here)."""

    error: dict
    node_errors: dict
    queued: bool = False  # ComfyUI queues a prompt whose other outputs are valid; it must be taken back


class SocketDropped(Exception):
    """The websocket closed under us; events may have been missed."""


class ComfyClient:
    def __init__(self, base_url: str):
        self.base_url = base_url.rstrip("/")
        self.http = requests.Session()

    def _call(self, method: str, path: str, timeout: float = HTTP_TIMEOUT, **kwargs) -> requests.Response:
        try:
            return self.http.request(method, f"{self.base_url}{path}", timeout=timeout, **kwargs)
        except requests.RequestException as err:  # refused, reset or timed out: gone or hung
            raise ComfyUnavailable(f"ComfyUI at {self.base_url} is not answering: {type(err).__name__}") from None

    def ready(self, timeout: float = 2.0) -> bool:
        """Does ComfyUI answer HTTP within ``timeout`` s (the probe of boot and crash recovery)?"""
        try:
            return self._call("GET", "/system_stats", timeout=timeout).ok
        except ComfyUnavailable:
            return False

    def system_stats(self, timeout: float = HTTP_TIMEOUT) -> dict:
        """Versions (``system.comfyui_version``, ``pytorch_version``) and devices."""
        return self._call("GET", "/system_stats", timeout=timeout).json()

    def object_info(self) -> dict:
        """Every loaded node class → its definition (inputs, outputs, category)."""
        return self._call("GET", "/object_info", timeout=OBJECT_INFO_TIMEOUT).json()

    def queue_prompt(self, prompt: dict, prompt_id: str, client_id: str) -> None:
        """Queue ``prompt`` under our own ``prompt_id`` so it can be found even if this answer is lost."""
        resp = self._call("POST", "/prompt", json={"prompt": prompt, "prompt_id": prompt_id, "client_id": client_id})
        body = resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
        if resp.status_code != 200 or body.get("node_errors"):
            raise PromptRejected(body.get("error") or {"message": f"HTTP {resp.status_code}"},
                                 body.get("node_errors") or {}, queued=resp.status_code == 200)

    def history(self, prompt_id: str) -> dict | None:
        """The finished prompt's history entry, or None while it is queued or running."""
        return self._call("GET", f"/history/{prompt_id}").json().get(prompt_id)

    def delete_history(self, prompt_id: str) -> None:
        self._call("POST", "/history", json={"delete": [prompt_id]})

    def dequeue(self, prompt_id: str) -> None:
        """Remove a prompt that has not started yet (no-op if it is running or gone)."""
        self._call("POST", "/queue", json={"delete": [prompt_id]})

    def interrupt(self, prompt_id: str) -> None:
        """Interrupt ``prompt_id`` if it is the one running (ComfyUI ignores it otherwise)."""
        self._call("POST", "/interrupt", json={"prompt_id": prompt_id})

    def free(self) -> None:
        """Drop cached node outputs (they hold the last photos) and unload models."""
        self._call("POST", "/free", json={"free_memory": True})

    def model_files(self, folder: str) -> set[str]:
        """The files ComfyUI has in a model folder (``GET /models/<folder>``; empty for a folder it does not know)."""
        resp = self._call("GET", f"/models/{folder}")
        return set(resp.json()) if resp.status_code == 200 else set()

    def node_types(self) -> set[str]:
        """Every node class this ComfyUI has loaded (a custom node that failed to import is missing here)."""
        return set(self.object_info())

    def queue_ids(self) -> tuple[list[str], list[str]]:
        """(running, pending) prompt ids."""
        body = self._call("GET", "/queue").json()
        return [item[1] for item in body["queue_running"]], [item[1] for item in body["queue_pending"]]

    def events(self, client_id: str) -> EventStream:
        return EventStream(f"ws://{self.base_url.split('://', 1)[1]}/ws?clientId={client_id}")


class EventStream:
    """ComfyUI's websocket for one client id, reconnectable (ComfyUI keys its events by client id)."""

    def __init__(self, url: str):
        self.url = url
        self._ws: websocket.WebSocket | None = None

    def connect(self, timeout: float = 10.0) -> None:
        self.close()
        try:
            self._ws = websocket.create_connection(self.url, timeout=timeout, enable_multithread=True)
        except (OSError, websocket.WebSocketException) as err:
            raise ComfyUnavailable(f"websocket connect failed: {type(err).__name__}") from None

    def reconnect(self, attempts: int = 5, delay: float = 0.5) -> None:
        for attempt in range(attempts):
            try:
                self.connect()
                return
            except ComfyUnavailable:
                if attempt == attempts - 1:
                    raise
                time.sleep(delay)

    def receive(self, timeout: float) -> dict | None:
        """The next JSON event, or None if none came within ``timeout`` s. Binary frames (previews) are skipped."""
        if self._ws is None:
            raise SocketDropped("not connected")
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            self._ws.settimeout(left)
            try:
                message = self._ws.recv()
            except websocket.WebSocketTimeoutException:
                return None
            except (OSError, websocket.WebSocketException) as err:
                self.close()
                raise SocketDropped(type(err).__name__) from None
            if isinstance(message, str) and message:
                return json.loads(message)
            if message == "":  # recv() gives "" when the peer closed the connection
                self.close()
                raise SocketDropped("closed by ComfyUI")
        return None

    def close(self) -> None:
        if self._ws is not None:
            try:
                self._ws.close(timeout=1)
            except (OSError, websocket.WebSocketException):
                pass
            self._ws = None
