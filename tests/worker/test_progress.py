"""Progress updates reach the endpoint in the order the job made them, even when the network reorders work."""

from __future__ import annotations

import pytest
from runpod.serverless.modules import rp_http

from tools.worker_server import ProgressCollector
from worker.handler import Progress
from worker.settings import Settings

JOB = {"id": "job-progress-1"}


@pytest.fixture
def collector(monkeypatch):
    collector = ProgressCollector(slow_first_post_s=0.5)
    monkeypatch.setenv("RUNPOD_WEBHOOK_POST_OUTPUT", collector.url_template)
    # The SDK reads the env once, at import; this process imported it before the fixture ran.
    monkeypatch.setattr(rp_http, "JOB_DONE_URL", collector.url_template)
    yield collector
    collector.stop()


def _progress() -> Progress:
    """The job's Progress as the worker makes it: enabled by the settings' RUNPOD_WEBHOOK_POST_OUTPUT."""
    return Progress(JOB, enabled=Settings.from_env().progress_url is not None)


def _run_stages(progress: Progress) -> None:
    progress({"stage": "queued"})
    progress({"stage": "preprocess"})
    for step in (1, 2, 3):
        progress({"stage": "sampling", "step": step, "steps": 3})
    progress({"stage": "preprocess"})  # a preprocess node after the sampler does not move the stage back
    progress({"stage": "encode"})


def test_updates_arrive_in_order_when_the_first_post_is_slow(collector):
    with _progress() as progress:
        _run_stages(progress)
    # Leaving the block waited for the queued updates, so all of them are in.
    assert collector.for_job(JOB["id"]) == [
        {"stage": "queued"}, {"stage": "preprocess"}, {"stage": "sampling"},
        {"stage": "sampling", "step": 1, "steps": 3},  # step 2 is within the throttle interval of step 1
        {"stage": "sampling", "step": 3, "steps": 3},  # the last step always goes out
        {"stage": "encode"},
    ]
    assert all(post["status"] == "IN_PROGRESS" for _, post in collector.posts)


def test_an_unreachable_progress_url_does_not_fail_the_job(collector, monkeypatch):
    collector.stop()  # nothing listens there any more
    with _progress() as progress:
        _run_stages(progress)
    assert collector.posts == []


def test_without_a_progress_url_nothing_is_sent(collector, monkeypatch):
    monkeypatch.delenv("RUNPOD_WEBHOOK_POST_OUTPUT")
    with _progress() as progress:
        _run_stages(progress)
    assert collector.posts == []
