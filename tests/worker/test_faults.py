"""Faults with real causes on the shared worker: deadline exceeded, ComfyUI killed mid-job, a model file missing,
CUDA out of memory raised inside a node.

After each, ComfyUI's queue and history are empty again and the next valid job succeeds.
"""

from __future__ import annotations

import json
import threading

from avatar_driver.errors import RETRYABLE
from tests.helpers.waiting import wait_until
from tests.worker.conftest import INJECT_OOM_FILE, WORKFLOW, avatar_job

COMFY_INTERRUPTED = "Processing interrupted"  # ComfyUI 0.3.75's log line (execution.py) for an interrupted prompt


def _slow_job(seed: int) -> dict:
    """Many steps at a larger size: seconds on a CPU even with the tiny model."""
    params = {}
    if "steps" in WORKFLOW.params:
        params["steps"] = min(WORKFLOW.params["steps"].get("maximum", 40), 40)
    if "size" in WORKFLOW.params:
        params["size"] = min(WORKFLOW.params["size"].get("maximum", 768), 768)
    return avatar_job(seed=seed, **params)


def test_deadline_exceeded_interrupts_and_frees(worker_server):
    interrupts = worker_server.log().count(COMFY_INTERRUPTED)
    code, message = worker_server.fail({**_slow_job(seed=501), "timeout": 1.0})
    assert code == "TIMEOUT", message
    # The prompt was stopped, not left to finish: ComfyUI logs the interrupt the worker sent.
    wait_until(lambda: worker_server.log().count(COMFY_INTERRUPTED) > interrupts, 30, "ComfyUI's interrupt")
    # The interrupted prompt leaves ComfyUI's queue and its history entry is deleted once ComfyUI files it.
    wait_until(lambda: worker_server.comfy_queue() == ([], []), 30, "the queue to empty")
    wait_until(lambda: worker_server.comfy_history() == {}, 10, "the history to be deleted")
    worker_server.succeed(avatar_job(seed=502))


def test_comfyui_killed_mid_job_is_comfy_crashed_then_restarted(worker_server):
    comfy = worker_server.comfy_process()
    result = {}
    job = threading.Thread(target=lambda: result.update(worker_server.runsync(_slow_job(seed=601))))
    job.start()
    wait_until(lambda: worker_server.comfy_queue()[0], 60, "the prompt to start running")
    comfy.kill()
    job.join(120)
    assert result["status"] == "FAILED"
    assert '"COMFY_CRASHED"' in result["error"]
    # The worker restarts ComfyUI on its own; the next job waits for it and succeeds.
    worker_server.succeed(avatar_job(seed=602))
    assert worker_server.comfy_process().pid != comfy.pid


def test_a_missing_required_model_names_the_file_and_the_fetch_command(worker_server, worker_models):
    name, folder = next((n, f) for n, f in WORKFLOW.model_files().items() if f == "checkpoints")
    path = worker_models["models_dir"] / folder / name
    hidden = path.with_name(path.name + ".hidden")
    path.rename(hidden)
    try:
        code, message = worker_server.fail(avatar_job(seed=701))
    finally:
        hidden.rename(path)
    assert code == "MODEL_MISSING", message
    assert name in message and "fetch_models.py" in message
    worker_server.succeed(avatar_job(seed=702))


def test_out_of_memory_inside_a_node_is_retryable_and_memory_is_freed_before_the_next_job(worker_server):
    trigger = worker_server.workdir.parent / INJECT_OOM_FILE
    trigger.touch()  # the inject_oom test plugin makes the next KSampler run raise torch.cuda.OutOfMemoryError
    body = worker_server.runsync(avatar_job(seed=801))
    error = json.loads(body["error"])
    assert error["code"] == "GPU_OUT_OF_MEMORY", error
    assert not trigger.exists(), "raised by the real KSampler node"
    assert "GPU_OUT_OF_MEMORY" in RETRYABLE
    log = worker_server.log()
    # ComfyUI handled it as a real one, and its log line names the job it belongs to.
    (oom,) = [json.loads(line) for line in log.splitlines() if "Got an OOM, unloading all loaded models." in line]
    assert oom["logger"] == "comfyui" and oom["job_id"] == body["id"]
    freed = log.rindex("freed ComfyUI's memory after an out-of-memory error")
    worker_server.succeed(avatar_job(seed=802))
    assert worker_server.log().index('"status": "COMPLETED"', freed) > freed  # the next job ran after the free
