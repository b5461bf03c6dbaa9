"""Start a real ComfyUI for a script or a test, and run one prompt on it through the driver's client."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from avatar_driver.client import ComfyClient, PromptRejected
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
    "error": ...}`` when ComfyUI refused the prompt at validation. When it refused some output nodes and ran the
    others (the face crop reports as an output node), the entry of what ran, with the refusals' ``node_errors``. Built on the driver's client, but not on its
    ``PromptRun``: tests need the raw history entry (failed runs included) and a prompt ComfyUI partly accepted
    left queued, which PromptRun turns into errors and deletes.
    """
    client = ComfyClient(base_url)
    client_id, prompt_id = uuid.uuid4().hex, uuid.uuid4().hex
    events = client.events(client_id)
    events.connect(timeout)
    refused: dict = {}
    try:
        try:
            client.queue_prompt(prompt, prompt_id, client_id)
        except PromptRejected as rejected:
            if not rejected.queued:
                return {"error": rejected.error, "node_errors": rejected.node_errors}
            refused = rejected.node_errors
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            event = events.receive(left)
            data = (event or {}).get("data", {})
            if data.get("prompt_id") != prompt_id:
                continue
            if event["type"] in ("execution_success", "execution_error", "execution_interrupted"):
                break
            if event["type"] == "executing" and data.get("node") is None:
                break
        else:
            raise TimeoutError(f"prompt {prompt_id} did not finish in {timeout} s")
    finally:
        events.close()
    # ComfyUI sends execution_error before it files the prompt in /history: wait for the entry.
    while (entry := client.history(prompt_id)) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return {**entry, "node_errors": refused} if refused else entry
