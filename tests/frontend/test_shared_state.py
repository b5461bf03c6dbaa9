"""REDIS_URL: two `next start` instances (as on Vercel, where any request may land on either) share one rate limit,
counted atomically, against a real redis-server. (Local job state shared through Redis: test_e2e.py, with a worker.)"""

from __future__ import annotations

import base64
import io
import subprocess
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack

import requests
from PIL import Image

from avatar_driver.process import free_port
from tests.frontend.conftest import next_server


def _png_base64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (124, 77, 255)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _two_instances(stack: ExitStack, redis_url: str, tmp_path, limit: str) -> list[str]:
    """Both point at a port where nothing listens: an accepted job answers 502 there, a refused one 429."""
    endpoint = f"http://127.0.0.1:{free_port()}"
    env = {"REDIS_URL": redis_url, "JOB_RATE_LIMIT": limit, "LOCAL_WORKER_BOOT_S": "0"}
    return [stack.enter_context(next_server(endpoint, tmp_path / f"next-{name}.log", env=env)) for name in "ab"]


def _redis(redis_url: str, *command: str) -> str:
    return subprocess.run(["redis-cli", "-u", redis_url, *command], capture_output=True, text=True,
                          check=True).stdout.strip()


def test_two_instances_share_one_limit(frontend_build, redis_url, tmp_path):
    _redis(redis_url, "FLUSHALL")
    photo = {"image": _png_base64()}
    with ExitStack() as stack:
        a, b = _two_instances(stack, redis_url, tmp_path, "3/3600")
        statuses = [requests.post(f"{app}/api/jobs", json=photo, timeout=30).status_code for app in (a, b, a, b, a)]
        refused = requests.post(f"{b}/api/jobs", json=photo, timeout=30)
    assert statuses == [502, 502, 502, 429, 429]
    assert refused.status_code == 429 and 3500 < int(refused.headers["Retry-After"]) <= 3600
    # Kept by a digest of the client's address, never the address.
    keys = _redis(redis_url, "KEYS", "ethmumbai:starts:*").split()
    assert len(keys) == 1 and "127.0.0.1" not in keys[0]
    assert _redis(redis_url, "ZCARD", keys[0]) == "3"


def test_concurrent_starts_on_both_instances_never_pass_the_limit(frontend_build, redis_url, tmp_path):
    """Twelve jobs at once, split over the two instances: exactly the limit's four get through (the count is one
    Lua script in Redis, with no read-then-write window between instances)."""
    _redis(redis_url, "FLUSHALL")
    photo = {"image": _png_base64()}
    with ExitStack() as stack:
        apps = _two_instances(stack, redis_url, tmp_path, "4/3600")
        with ThreadPoolExecutor(12) as pool:
            statuses = list(pool.map(lambda n: requests.post(f"{apps[n % 2]}/api/jobs", json=photo,
                                                              timeout=60).status_code, range(12)))
    assert sorted(statuses) == [429] * 8 + [502] * 4


def test_an_unreachable_redis_is_a_coded_error_and_the_page_stays_up(frontend_build, tmp_path):
    endpoint = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "next.log"
    with next_server(endpoint, log, env={"REDIS_URL": f"redis://127.0.0.1:{free_port()}"}) as app:
        response = requests.post(f"{app}/api/jobs", json={"image": _png_base64()}, timeout=60)
        page = requests.get(app, timeout=30)
    assert response.status_code == 503 and response.json()["error"]["code"] == "STATE_UNAVAILABLE"
    assert page.ok
    assert "shared state (Redis) failed" in log.read_text()
