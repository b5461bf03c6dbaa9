"""The worker with S3 storage (a real moto S3 server): URL results, the result cache, oversized results as URLs."""

from __future__ import annotations

import base64

import pytest
import requests

from avatar_driver.demo.tiny_models import pin_manifest
from tests.storage.conftest import start_moto
from tests.worker.conftest import avatar_job
from tools.worker_server import start_worker


@pytest.fixture(scope="module")
def storage_worker(tmp_path_factory, worker_env, worker_models):
    tmp = tmp_path_factory.mktemp("storage_worker")
    moto = start_moto(tmp)
    bucket = moto.new_bucket()
    env = {**worker_env, "STORAGE_BUCKET": bucket, "STORAGE_ENDPOINT_URL": moto.url, "STORAGE_REGION": "us-east-1",
           "STORAGE_ACCESS_KEY_ID": "test-key-id", "STORAGE_SECRET_ACCESS_KEY": "test-secret",
           "MAX_RESULT_BYTES": "2000", "MODELS_MANIFEST": str(pin_manifest(worker_models["models_dir"], tmp / "models.yaml"))}
    server = start_worker(tmp / "worker", env)
    yield server, moto, bucket
    server.stop()
    moto.stop()


def _download(url: str) -> bytes:
    resp = requests.get(url, timeout=30)
    assert resp.status_code == 200
    return resp.content


def test_url_result_then_the_same_job_is_a_cache_hit(storage_worker):
    server, moto, bucket = storage_worker
    job = {**avatar_job(seed=31), "return": "url", "user": "alice"}
    first = server.succeed(job)
    assert "image" not in first and first["cached"] is False
    png = _download(first["url"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"

    again = server.succeed({**job, "return": "both"})  # "both", but any image is over this worker's limit
    assert again["cached"] is True and again["timings"]["sampling"] == 0
    assert "image" not in again and _download(again["url"]) == png
    assert (again["width"], again["height"], again["seed"]) == (first["width"], first["height"], 31)
    # The face report is kept with the cache entry: a hit answers with the fields of the run that filled it.
    assert first["faces_found"] == 1 and len(first["face_box"]) == 4
    assert (again["faces_found"], again["face_box"]) == (first["faces_found"], first["face_box"])
    # Both results are in alice's history; the cache entry is stored once.
    keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket)["Contents"]]
    assert sum("/alice/" in k for k in keys) == 2 and sum(k.endswith(".png") and "/cache/" in k for k in keys) == 1


def test_oversized_base64_result_comes_as_a_url(storage_worker):
    server, _, _ = storage_worker
    out = server.succeed(avatar_job(seed=32))  # return=base64, but the PNG is over MAX_RESULT_BYTES
    assert "image" not in out and out["cached"] is False
    assert _download(out["url"])[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_refused_image_fails_before_any_prompt(storage_worker):
    """With storage, the cache key decodes the photo first: a bad upload fails there, with the pack's code."""
    server, _, _ = storage_worker
    code, _ = server.fail({**avatar_job(), "image": base64.b64encode(b"GIF89a" + bytes(64)).decode()})
    assert code == "UNSUPPORTED_IMAGE"
