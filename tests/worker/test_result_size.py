"""A result over the payload limit with no storage configured is OUTPUT_TOO_LARGE (its own worker: the limit is env)."""

from __future__ import annotations

import pytest

from tests.worker.conftest import avatar_job
from tools.worker_server import start_worker


@pytest.fixture(scope="module")
def small_limit_worker(tmp_path_factory, worker_env):
    server = start_worker(tmp_path_factory.mktemp("small_limit"), {**worker_env, "MAX_RESULT_BYTES": "2000"})
    yield server
    server.stop()


def test_oversized_result_without_storage_is_output_too_large(small_limit_worker):
    code, message = small_limit_worker.fail(avatar_job())
    assert code == "OUTPUT_TOO_LARGE" and "STORAGE_BUCKET" in message
    code, message = small_limit_worker.fail({**avatar_job(), "return": "url"})
    assert code == "INVALID_INPUT" and "storage" in message
