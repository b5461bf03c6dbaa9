"""The worker as a RunPod container runs it, in a fresh process: import, boot, then jobs through the handler.

    python -m benchmarks.gpu.worker_phase SPEC.json RESULT.json

Started by bench.py, which times it from the moment it spawns this process, so "boot to ready" and
"start to first result" include the Python start and the worker's imports (runpod, pydantic, boto3, ...),
as a container start would. Each job goes through ``worker.handler.make_handler``'s coroutine, the one RunPod's SDK
calls (schema, workflow build, ComfyUI supervision, prompt run, output), not through ComfyUI directly.

SPEC: ``{"jobs": [job input, ...], "keep_images": [job index, ...], "comfy_log": path}``.
RESULT: epoch times of import end and readiness, and per job its start/end, the handler's output without
the image (kept, as base64, only for ``keep_images``).
"""

from __future__ import annotations

import time

STARTED = time.time()

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))


def write(path: Path, obj: dict) -> None:
    path.write_text(json.dumps(obj))


def main() -> None:
    spec_path, result_path = Path(sys.argv[1]), Path(sys.argv[2])
    spec = json.loads(spec_path.read_text())
    logging.basicConfig(level=os.environ.get("WORKER_LOG_LEVEL", "INFO"),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from worker import handler

    result: dict = {"started": STARTED, "imported": time.time(), "jobs": []}
    worker = handler.Worker.from_settings(handler.Settings.from_env())
    worker.supervisor.process.log_path = Path(spec["comfy_log"])
    handle = handler.make_handler(worker)  # what handler.main() gives runpod.serverless.start
    try:
        worker.boot()
        result["ready"] = time.time()
        write(result_path, result)  # written after every step: a run stopped at its deadline keeps its figures
        for index, job_input in enumerate(spec["jobs"]):
            begun = time.time()
            output = asyncio.run(handle({"id": f"bench-{index}", "input": job_input}))
            record = {"start": begun, "end": time.time(), "output": {k: v for k, v in output.items() if k != "image"}}
            if index in spec["keep_images"] and "image" in output:
                record["image"] = output["image"]
            result["jobs"].append(record)
            write(result_path, result)
            if "error" in output:
                break
    finally:
        worker.supervisor.stop()
        result["stopped"] = time.time()
        write(result_path, result)


if __name__ == "__main__":
    main()
