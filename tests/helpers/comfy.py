"""Shared helpers for tests that talk to a real ComfyUI server."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path

import requests
import websocket

from avatar_driver.process import ComfyProcess


def start_comfy(workdir: Path, plugins: list[Path] | None = None, model_paths_config: Path | None = None,
                boot_timeout: float = 180.0) -> ComfyProcess:
    """Boot ComfyUI on a free port with its log in ``workdir/comfyui.log``; wait until it answers."""
    kwargs = {"workdir": workdir, "log_path": workdir / "comfyui.log"}
    if plugins is not None:
        kwargs["plugins"] = plugins
    if model_paths_config is not None:
        kwargs["model_paths_config"] = model_paths_config
    proc = ComfyProcess(**kwargs)
    proc.start()
    try:
        proc.wait_ready(boot_timeout)
    except Exception:
        print(proc.log_path.read_text(errors="replace")[-5000:])
        raise
    return proc


def run_prompt(base_url: str, prompt: dict, timeout: float = 300.0) -> dict:
    """Queue an API-format prompt, wait on the websocket until it finishes, return its /history entry.

    The returned dict is the history entry (``outputs``, ``status``), or ``{"node_errors": ...,
    "error": ...}`` when ComfyUI refused the prompt at validation.
    """
    client_id = uuid.uuid4().hex
    ws = websocket.create_connection(f"ws://{base_url.split('://', 1)[1]}/ws?clientId={client_id}", timeout=timeout)
    try:
        resp = requests.post(f"{base_url}/prompt", json={"prompt": prompt, "client_id": client_id}, timeout=30)
        body = resp.json()
        if resp.status_code != 200:
            return {"error": body.get("error"), "node_errors": body.get("node_errors", {})}
        prompt_id = body["prompt_id"]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            message = ws.recv()
            if not isinstance(message, str):
                continue  # binary preview frames
            event = json.loads(message)
            data = event.get("data", {})
            if data.get("prompt_id") != prompt_id:
                continue
            if event["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                break
            if event["type"] == "executing" and data.get("node") is None:
                break
        else:
            raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")
    finally:
        ws.close()
    # ComfyUI sends execution_error before it files the prompt in /history: wait for the entry.
    while True:
        history = requests.get(f"{base_url}/history/{prompt_id}", timeout=30).json()
        if prompt_id in history or time.monotonic() > deadline:
            return history[prompt_id]
        time.sleep(0.05)
