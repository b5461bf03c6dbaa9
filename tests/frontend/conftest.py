"""The built Next.js app, served by `next start` on a free loopback port (tests/frontend only)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, sync_playwright

from avatar_driver.paths import REPO_ROOT
from avatar_driver.process import free_port

FRONTEND_DIR = REPO_ROOT / "frontend"
ARTIFACTS_DIR = REPO_ROOT / "artifacts" / "frontend"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Distinctive, so finding it anywhere the browser can see proves a leak.
FAKE_API_KEY = "rpa_TESTKEY_e2e_7f3c9b1d_must_never_reach_the_browser"
NEXT_ENV = {"NEXT_TELEMETRY_DISABLED": "1"}
# Every instance a test starts shares it, as instances behind one deployment must (frontend/lib/server/jobToken.ts).
JOB_TOKEN_SECRET = "test-job-token-secret-0123456789abcdef"


def job_token(job_id: str) -> str:
    """The token the app answers a job's creator with, which reading or cancelling that job needs (X-Job-Token)."""
    digest = hmac.new(JOB_TOKEN_SECRET.encode(), f"job:{job_id}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def owner(job_id: str) -> dict[str, str]:
    return {"X-Job-Token": job_token(job_id)}


@pytest.fixture(scope="session")
def frontend_build() -> Path:
    """`npm run build` once per session (deps come from `npm ci`, run by setup, never by a test)."""
    if not (FRONTEND_DIR / "node_modules" / ".bin" / "next").exists():
        pytest.fail("frontend dependencies missing: run `npm ci --prefix frontend` (scripts/setup.sh does)")
    # The key is in the build env too: a client bundle that inlined it would fail test_static_assets_have_no_api_key.
    env = {**os.environ, **NEXT_ENV, "RUNPOD_API_KEY": FAKE_API_KEY}
    result = subprocess.run(["npm", "run", "build"], cwd=FRONTEND_DIR, env=env, capture_output=True, text=True,
                            timeout=900)
    if result.returncode != 0:
        pytest.fail(f"npm run build failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return FRONTEND_DIR / ".next"


@contextmanager
def next_server(endpoint_url: str, log_path: Path, port: int | None = None, api_key: str = FAKE_API_KEY,
                job_params: dict | None = None, boot_timeout: float = 60.0,
                env: dict[str, str] | None = None) -> Iterator[str]:
    """`next start` on loopback with the RunPod env (and ``env``) set; yields its base URL, stops it afterwards."""
    port = port or free_port()
    env = {**os.environ, **NEXT_ENV, "RUNPOD_ENDPOINT_URL": endpoint_url, "RUNPOD_API_KEY": api_key,
           "AVATAR_JOB_PARAMS": json.dumps(job_params or {}), "JOB_TOKEN_SECRET": JOB_TOKEN_SECRET, **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen([str(FRONTEND_DIR / "node_modules" / ".bin" / "next"), "start",
                                 "-H", "127.0.0.1", "-p", str(port)],
                                cwd=FRONTEND_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + boot_timeout
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"next start exited ({proc.returncode}):\n{log_path.read_text()[-3000:]}")
                try:
                    if requests.get(url, timeout=2).ok:
                        break
                except requests.RequestException:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"next start did not answer in {boot_timeout:.0f} s")
                time.sleep(0.2)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@pytest.fixture(scope="session")
def offline_app(frontend_build, tmp_path_factory) -> Iterator[str]:
    """The app pointed at a loopback port where nothing listens: for checks that never reach a worker. No start-up
    grace: the absent worker counts as unavailable at once, not as one warming up."""
    with next_server(f"http://127.0.0.1:{free_port()}", tmp_path_factory.mktemp("next") / "next.log",
                     env={"LOCAL_WORKER_BOOT_S": "0"}) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A real redis-server (Debian's) on a free loopback port, in memory only; stopped after the session."""
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True).stdout.strip() != "PONG":
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("redis-server did not start")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
