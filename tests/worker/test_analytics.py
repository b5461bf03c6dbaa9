"""Analytics: one event per job, written by the real worker to a real moto S3 server and to its log, read back by
``python -m worker.analytics`` into a summary and a chart."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys

import pytest
from PIL import Image

from avatar_driver.demo.tiny_models import pin_manifest
from avatar_driver.paths import REPO_ROOT
from tests.storage.conftest import start_moto
from tests.worker.conftest import PHOTO, avatar_job
from tools.worker_server import start_worker
from worker.analytics import percentile, summarize


def _event(day: str, status: str = "COMPLETED", code: str | None = None, cached: bool = False, **timings) -> dict:
    return {"event": "job", "time": f"{day}T10:00:00.000+00:00", "job_id": "j", "status": status,
            "error_code": code, "workflow_version": "v1", "style": None, "size": 256, "cached": cached,
            "gpu": "cpu", "timings": timings}


def test_summary_counts_rates_and_percentiles():
    events = [
        _event("2026-12-01", sampling=1.0, total=2.0),
        _event("2026-12-01", sampling=3.0, total=4.0),
        _event("2026-12-02", cached=True, sampling=0.0, total=0.5),
        _event("2026-12-02", status="FAILED", code="NO_FACE_DETECTED", total=0.2),
    ]
    summary = summarize(events)
    assert summary["per_day"] == {"2026-12-01": {"jobs": 2, "failed": 0}, "2026-12-02": {"jobs": 2, "failed": 1}}
    # A cached job ran no stage: it counts for the total only.
    assert summary["stages"]["sampling"] == {"p50": 2.0, "p95": 2.9, "n": 2}
    assert summary["stages"]["total"]["n"] == 3
    assert summary["error_rate"] == {"NO_FACE_DETECTED": 0.25} and summary["failed_rate"] == 0.25
    assert summary["cache_hit_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert percentile([5.0], 95) == 5.0


@pytest.fixture(scope="module")
def analytics_worker(tmp_path_factory, worker_env, worker_models):
    tmp = tmp_path_factory.mktemp("analytics_worker")
    moto = start_moto(tmp)
    bucket = moto.new_bucket()
    storage_env = {"STORAGE_BUCKET": bucket, "STORAGE_ENDPOINT_URL": moto.url, "STORAGE_REGION": "us-east-1",
                   "STORAGE_ACCESS_KEY_ID": "test-key-id", "STORAGE_SECRET_ACCESS_KEY": "test-secret"}
    env = {**worker_env, **storage_env,
           "MODELS_MANIFEST": str(pin_manifest(worker_models["models_dir"], tmp / "models.yaml"))}
    server = start_worker(tmp / "worker", env)
    yield server, moto, bucket, storage_env
    server.stop()
    moto.stop()


def _analytics(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "worker.analytics", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=120)


def test_events_of_real_jobs_give_the_summary_and_chart(analytics_worker, tmp_path):
    server, moto, bucket, storage_env = analytics_worker
    server.succeed(avatar_job(seed=41))
    server.succeed(avatar_job(seed=42))
    assert server.succeed(avatar_job(seed=41))["cached"] is True
    gif = base64.b64encode(b"GIF89a" + bytes(64)).decode()
    assert server.fail({**avatar_job(), "image": gif})[0] == "UNSUPPORTED_IMAGE"
    assert server.fail({**avatar_job(), "no_such_field": 1})[0] == "INVALID_INPUT"

    # One object per job under its UTC day, each one JSON line.
    keys = [o["Key"] for o in moto.client().list_objects_v2(Bucket=bucket)["Contents"] if "/events/" in o["Key"]]
    assert len(keys) == 5 and all("/events/day=" in k and k.endswith(".jsonl") for k in keys)

    done = _analytics(["--since", "1d", "--out", str(tmp_path / "bucket")], storage_env)
    assert done.returncode == 0, done.stderr
    summary = json.loads((tmp_path / "bucket" / "summary.json").read_text())
    assert summary["jobs"] == 5 and list(summary["per_day"].values()) == [{"jobs": 5, "failed": 2}]
    assert summary["error_rate"] == {"UNSUPPORTED_IMAGE": 0.2, "INVALID_INPUT": 0.2}
    assert summary["cache_hit_rate"] == pytest.approx(1 / 3, abs=1e-4)
    assert summary["stages"]["sampling"]["n"] == 2 and summary["stages"]["total"]["n"] == 3
    assert summary["stages"]["sampling"]["p95"] >= summary["stages"]["sampling"]["p50"] > 0
    assert "error rate: 40.0% of jobs" in done.stdout and "cache hit rate: 33.3%" in done.stdout
    with Image.open(tmp_path / "bucket" / "analytics.png") as chart:
        assert chart.format == "PNG" and chart.size == (1200, 450)

    # The worker's log holds the same records, one JSON line per job, and never the photo.
    log = server.log()
    assert PHOTO[:200] not in log and gif not in log
    from_log = _analytics(["--since", "1d", "--log", str(server.log_path), "--out", str(tmp_path / "log")], {})
    assert from_log.returncode == 0, from_log.stderr
    assert json.loads((tmp_path / "log" / "summary.json").read_text()) == summary


def test_without_storage_the_command_says_where_else_to_read(tmp_path):
    done = _analytics(["--out", str(tmp_path)], {"STORAGE_BUCKET": ""})
    assert done.returncode == 2 and "--log" in done.stderr
