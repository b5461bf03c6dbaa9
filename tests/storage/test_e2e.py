"""Storage end to end: the real worker (runpod local API, real ComfyUI, tiny models) against moto_server.

Reuses the worker tests' server helper, tiny models, env and jobs; adds the STORAGE_* env and a models
manifest that pins the tiny files (the worker turns the cache off for a model without a pinned sha256).
"""

from __future__ import annotations

import base64
import io
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import requests
import websocket
from PIL import Image

from avatar_driver.demo.tiny_models import pin_manifest
from tests.worker.conftest import avatar_job
from tools.images import astronaut, b64, encode
from tools.worker_server import start_worker
from worker.storage import ResultStore, StorageConfig

KEY_ID = "e2e-key-id"
SECRET = f"e2e-secret-{uuid.uuid4().hex}"
USER = "e2e-user"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, worker_env, worker_models, moto):
    """A worker with storage on a fresh bucket, and a store on the same bucket to look inside it."""
    workdir = tmp_path_factory.mktemp("storage-worker")
    config = StorageConfig(bucket=moto.new_bucket(), endpoint_url=moto.url, access_key_id=KEY_ID,
                           secret_access_key=SECRET, prefix="e2e")
    env = {**worker_env, "STORAGE_BUCKET": config.bucket, "STORAGE_ENDPOINT_URL": config.endpoint_url,
           "STORAGE_ACCESS_KEY_ID": KEY_ID, "STORAGE_SECRET_ACCESS_KEY": SECRET, "STORAGE_PREFIX": "e2e",
           "MODELS_MANIFEST": str(pin_manifest(worker_models["models_dir"], workdir / "manifest.yaml"))}
    server = start_worker(workdir / "worker", env)
    yield server, ResultStore(config)
    server.stop()


@contextmanager
def queue_changes(server) -> Iterator[list[dict]]:
    """ComfyUI's ``status`` broadcasts seen while the block runs: ComfyUI sends one to every socket whenever its
    queue changes (a prompt put, started, done). The worker deletes each prompt's /history entry (it holds the
    photo), so this is how a test sees that a job queued nothing."""
    ws = websocket.create_connection(f"ws://127.0.0.1:{server.comfy_port}/ws?clientId=observer-{uuid.uuid4().hex}",
                                     timeout=10)
    changes: list[dict] = []
    try:
        _drain(ws)  # the greeting status sent to a new socket
        yield changes
        changes.extend(event for event in _drain(ws) if event["type"] == "status")
    finally:
        ws.close()
    assert server.comfy_queue() == ([], [])


def _drain(ws, quiet_s: float = 1.0) -> list[dict]:
    """Every text message until the socket has been quiet for ``quiet_s``."""
    ws.settimeout(quiet_s)
    events = []
    while True:
        try:
            message = ws.recv()
        except websocket.WebSocketTimeoutException:
            return events
        if isinstance(message, str):
            events.append(json.loads(message))


def test_url_result_is_served_and_an_identical_request_is_cached_without_comfyui(stack):
    server, store = stack
    job = avatar_job(seed=11, user=USER, **{"return": "both"})

    with queue_changes(server) as changes:
        first = server.succeed(job)
    assert first["cached"] is False
    assert changes, "the observer saw no queue change for a job that ran"  # the control
    png = base64.b64decode(first["image"])
    served = requests.get(first["url"], timeout=30)
    assert served.status_code == 200 and served.content == png
    assert Image.open(io.BytesIO(served.content)).size == (first["width"], first["height"])

    with queue_changes(server) as changes:
        again = server.succeed(job)
        # Same photo as lossless WebP, URL only: still a hit.
        webp = avatar_job(seed=11, user=USER, image=b64(encode(astronaut(), "WEBP", lossless=True)),
                          **{"return": "url"})
        by_url = server.succeed(webp)
    assert changes == [], "a cache hit queued a prompt in ComfyUI"
    assert again["cached"] is True
    assert base64.b64decode(again["image"]) == png
    assert (again["width"], again["height"], again["seed"]) == (first["width"], first["height"], 11)
    assert requests.get(again["url"], timeout=30).content == png
    assert by_url["cached"] is True and "image" not in by_url
    assert requests.get(by_url["url"], timeout=30).content == png

    history = store.history(USER)
    assert len(history) == 3 and all(requests.get(obj.url, timeout=30).content == png for obj in history)
    assert store.history(USER, limit=1)[0].key == history[0].key


def test_bad_credentials_still_return_the_image_with_a_storage_error(stack, moto):
    server, _ = stack
    with moto.enforce_auth():  # moto now refuses the worker's key id, which no IAM user owns
        out = server.succeed(avatar_job(seed=12, user=USER, **{"return": "both"}))

    assert out["cached"] is False and "url" not in out
    assert Image.open(io.BytesIO(base64.b64decode(out["image"]))).size == (out["width"], out["height"])
    error = out["storage_error"]
    assert error["code"] == "STORAGE_ERROR"
    assert "storage rejected the credentials (InvalidAccessKeyId)" in error["message"]
    assert "STORAGE_ACCESS_KEY_ID" in error["message"]
    for text in (error["message"], server.log()):
        assert SECRET not in text and KEY_ID not in text
