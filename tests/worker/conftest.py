"""The worker's shared local API server (real runpod SDK server, real ComfyUI, tiny models) and job helpers."""

from __future__ import annotations

import os

import pytest

from avatar_driver.contract import latest, load_workflows
from avatar_driver.paths import REPO_ROOT
from tools.images import astronaut, b64, encode
from tools.worker_server import start_worker

WORKFLOW = latest(load_workflows())


def fast_params(**overrides) -> dict:
    """Small and quick, within the params file's bounds: CI runs on 2 CPU cores."""
    params = {}
    if "size" in WORKFLOW.params:
        params["size"] = max(WORKFLOW.params["size"].get("minimum", 0), 256)
    if "steps" in WORKFLOW.params:
        params["steps"] = max(WORKFLOW.params["steps"].get("minimum", 1), 2)
    return {**params, **overrides}


PHOTO = b64(encode(astronaut()))  # 512x512 PNG with one face


def avatar_job(**overrides) -> dict:
    return {"image": PHOTO, **fast_params(**overrides)}


INJECT_OOM_PLUGIN = REPO_ROOT / "tests" / "plugins" / "inject_oom"
INJECT_OOM_FILE = "inject-oom"  # beside the worker's ComfyUI work dir: while it exists, the next sampler run fails


@pytest.fixture(scope="session")
def worker_server(tmp_path_factory, worker_env):
    """One worker for the session: warm-up on, progress collected; tests that break it must leave it working.

    ``RUNPOD_LOG_LEVEL=DEBUG`` is what would make the SDK print job outputs: the privacy test proves it does not.
    The inject_oom plugin does nothing until a test creates ``INJECT_OOM_FILE``.
    """
    tmp = tmp_path_factory.mktemp("worker")
    env = {**worker_env, "WARMUP": "1", "RUNPOD_LOG_LEVEL": "DEBUG",
           "COMFYUI_PLUGINS": os.pathsep.join([worker_env["COMFYUI_PLUGINS"], str(INJECT_OOM_PLUGIN)]),
           "ETHMUMBAI_INJECT_OOM_FILE": str(tmp / INJECT_OOM_FILE)}
    server = start_worker(tmp, env, collect_progress=True)
    yield server
    server.stop()
