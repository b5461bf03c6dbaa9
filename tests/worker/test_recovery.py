"""Recovery, with the worker serving a RunPod queue through the SDK's production loop (``RunPodQueue``), because
the local API has no cancel and drops a result's ``stopPod``: RunPod's cancel stops the prompt and frees ComfyUI
for the next job, and ComfyUI crashing three jobs in a row asks RunPod to replace the worker."""

from __future__ import annotations

import json

import pytest
import requests

from tests.helpers.waiting import wait_until
from tests.worker.conftest import WORKFLOW, avatar_job
from tools.worker_server import RunPodQueue, start_worker

COMFY_INTERRUPTED = "Processing interrupted"  # ComfyUI 0.3.75's log line (execution.py) for an interrupted prompt


def _slow_job(seed: int) -> dict:
    """Many steps at a larger size: seconds on a CPU even with the tiny model, so there is time to act mid-job."""
    return avatar_job(seed=seed, steps=WORKFLOW.params["steps"].get("maximum", 40),
                      size=min(WORKFLOW.params["size"].get("maximum", 768), 768))


@pytest.fixture(scope="module")
def queue_worker(tmp_path_factory, worker_env):
    server = start_worker(tmp_path_factory.mktemp("queue_worker"), worker_env, platform=RunPodQueue())
    yield server
    server.stop()


def _error_code(result: dict) -> str:
    return json.loads(result["error"])["code"]


def _prompt_running(server) -> bool:
    """A prompt is executing; False while ComfyUI is down (restarting after a crash)."""
    try:
        return bool(server.comfy_queue()[0])
    except requests.RequestException:
        return False


def test_a_cancelled_job_stops_its_prompt_and_frees_comfyui_for_the_next(queue_worker):
    platform = queue_worker.platform
    interrupts = queue_worker.log().count(COMFY_INTERRUPTED)
    cancelled = platform.submit(_slow_job(seed=901))
    wait_until(lambda: _prompt_running(queue_worker), 120, "the prompt to start running")
    platform.stop(cancelled)  # what RunPod sends on /cancel or at the endpoint's execution timeout
    # ComfyUI stopped the prompt (its own log line) instead of running it to the end, and let go of it.
    wait_until(lambda: queue_worker.log().count(COMFY_INTERRUPTED) > interrupts, 60, "ComfyUI's interrupt")
    wait_until(lambda: queue_worker.comfy_queue() == ([], []), 30, "ComfyUI's queue to empty")
    wait_until(lambda: queue_worker.comfy_history() == {}, 30, "the cancelled prompt's history to be deleted")
    assert "Job stopped." in queue_worker.log()  # the SDK cancelled the handler's task
    following = platform.submit(avatar_job(seed=902))
    assert platform.wait_result(following).get("output", {}).get("width"), platform.results[following]
    assert cancelled not in platform.results  # RunPod reports a cancelled job itself


def test_three_comfyui_crashes_in_a_row_ask_runpod_to_replace_the_worker(queue_worker):
    platform = queue_worker.platform

    def crash() -> dict:
        job = platform.submit(_slow_job(seed=911))
        wait_until(lambda: _prompt_running(queue_worker), 180, "the prompt to start running")
        queue_worker.comfy_process().kill()
        result = platform.wait_result(job)
        assert _error_code(result) == "COMFY_CRASHED", result
        return result

    first = crash()
    assert platform.wait_result(platform.submit(avatar_job(seed=912))).get("output")  # a success resets the count
    second, third, fourth = crash(), crash(), crash()
    assert [r.get("stopPod") for r in (first, second, third)] == [None, None, None]
    assert fourth.get("stopPod") is True, fourth  # the SDK's refresh_worker: RunPod replaces this worker
    assert "asking RunPod to replace this worker" in queue_worker.log()
