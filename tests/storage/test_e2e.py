"""Storage end to end: the real worker (runpod local API, real ComfyUI, tiny models) against moto_server.

Reuses the worker tests' server helper, env and jobs; only the STORAGE_* env is added here.
"""

from __future__ import annotations

import base64
import io
import uuid

import pytest
import requests
from PIL import Image

from tests.nodes.images import astronaut, b64, encode
from tests.worker.conftest import avatar_job, worker_env  # noqa: F401 (worker_env is a fixture)
from tests.worker.server import start_worker
from worker.storage import ResultStore, StorageConfig

KEY_ID = "e2e-key-id"
SECRET = f"e2e-secret-{uuid.uuid4().hex}"
USER = "e2e-user"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, worker_env, moto):  # noqa: F811 (the imported fixture)
    """A worker with storage on a fresh bucket, and a store on the same bucket to look inside it."""
    config = StorageConfig(bucket=moto.new_bucket(), endpoint_url=moto.url, access_key_id=KEY_ID,
                           secret_access_key=SECRET, prefix="e2e")
    env = {**worker_env, "STORAGE_BUCKET": config.bucket, "STORAGE_ENDPOINT_URL": config.endpoint_url,
           "STORAGE_ACCESS_KEY_ID": KEY_ID, "STORAGE_SECRET_ACCESS_KEY": SECRET, "STORAGE_PREFIX": "e2e"}
    server = start_worker(tmp_path_factory.mktemp("storage-worker"), env)
    yield server, ResultStore(config)
    server.stop()


def prompts_run(server) -> int:
    running, pending = server.comfy_queue()
    assert not running and not pending
    return len(server.comfy_history())


def test_url_result_is_served_and_an_identical_request_is_cached_without_comfyui(stack):
    server, store = stack
    job = avatar_job(seed=11, user=USER, **{"return": "both"})
    before = prompts_run(server)

    first = server.succeed(job)
    assert first["cached"] is False
    assert prompts_run(server) == before + 1
    png = base64.b64decode(first["image"])
    served = requests.get(first["url"], timeout=30)
    assert served.status_code == 200 and served.content == png
    assert Image.open(io.BytesIO(served.content)).size == (first["width"], first["height"])

    again = server.succeed(job)
    assert again["cached"] is True
    assert base64.b64decode(again["image"]) == png
    assert (again["width"], again["height"], again["seed"]) == (first["width"], first["height"], 11)
    assert requests.get(again["url"], timeout=30).content == png
    # Same photo as lossless WebP, URL only: still a hit.
    webp = avatar_job(seed=11, user=USER, image=b64(encode(astronaut(), "WEBP", lossless=True)),
                      **{"return": "url"})
    by_url = server.succeed(webp)
    assert by_url["cached"] is True and "image" not in by_url
    assert requests.get(by_url["url"], timeout=30).content == png
    assert prompts_run(server) == before + 1, "a cache hit queued a prompt in ComfyUI"

    history = store.history(USER)
    assert len(history) == 3 and all(requests.get(obj.url, timeout=30).content == png for obj in history)
    assert store.history(USER, limit=1)[0].key == history[0].key


def test_bad_credentials_still_return_the_image_with_a_storage_error(stack, moto):
    server, _ = stack
    before = prompts_run(server)
    with moto.enforce_auth():  # moto now refuses the worker's key id, which no IAM user owns
        out = server.succeed(avatar_job(seed=12, user=USER, **{"return": "both"}))

    assert out["cached"] is False and "url" not in out
    assert prompts_run(server) == before + 1
    assert Image.open(io.BytesIO(base64.b64decode(out["image"]))).size == (out["width"], out["height"])
    error = out["storage_error"]
    assert error["code"] == "STORAGE_ERROR"
    assert "storage rejected the credentials (InvalidAccessKeyId)" in error["message"]
    assert "STORAGE_ACCESS_KEY_ID" in error["message"]
    for text in (error["message"], server.log()):
        assert SECRET not in text and KEY_ID not in text
