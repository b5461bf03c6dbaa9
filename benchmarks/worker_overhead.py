"""What the worker adds on top of ComfyUI: the same prompt end to end through the worker vs. straight to ComfyUI.

    .venv/bin/python benchmarks/worker_overhead.py [--pairs 8] [--size 512] [--steps 4]

One worker (``worker/start.sh --rp_serve_api``, the runpod SDK's local API) boots its ComfyUI with the tiny test
models (real SDXL cannot run on a CPU box). Each pair runs one job through the worker's ``/runsync`` and the
very prompt the worker builds for it straight on that same ComfyUI (``POST /prompt``, websocket until done,
``/history``), alternating which goes first. Every run gets a photo no run has used (one pixel differs), so
ComfyUI's output cache never short-cuts either side. Times are client wall clock, request to decoded result.

Target: worker overhead (median of the paired differences) under max(5 % of direct, 50 ms). Also reported:
the same difference on the time *outside* ComfyUI's execution (wall clock minus execution, from the worker's
timings and the history's timestamps), which the run-to-run noise of the sampling does not blur.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import requests  # noqa: E402

from avatar_driver.contract import latest, load_workflows  # noqa: E402
from avatar_driver.demo.tiny_models import TINY_PLUGIN, pin_manifest, write_workflow_models  # noqa: E402
from avatar_driver.process import gpu_names  # noqa: E402
from tools.comfy import run_prompt  # noqa: E402
from tools.images import astronaut, b64, encode  # noqa: E402
from tools.worker_server import start_worker  # noqa: E402
from worker.schema import JobSchema  # noqa: E402


def unique_photos(count: int) -> list[str]:
    """The astronaut, each copy with one pixel changed: same work, never a cache hit."""
    photos = []
    for index in range(count):
        pixels = astronaut().copy()
        pixels[0, index % 512, :] = (index * 37) % 256
        pixels[1, index // 512, 0] ^= 1
        photos.append(b64(encode(pixels)))
    return photos


def via_worker(server, job: dict) -> tuple[float, float]:
    """(wall clock, ComfyUI execution) of one job through the worker's /runsync."""
    started = time.perf_counter()
    body = requests.post(f"{server.url}/runsync", json={"input": job}, timeout=600).json()
    elapsed = time.perf_counter() - started
    assert body["status"] == "COMPLETED", body.get("error")
    timings = body["output"]["timings"]
    return elapsed, timings["preprocess"] + timings["sampling"] + timings["encode"]


def direct(server, prompt: dict, output_node: str) -> tuple[float, float]:
    """(wall clock, ComfyUI execution) of the same prompt posted straight to ComfyUI."""
    started = time.perf_counter()
    entry = run_prompt(server.comfy_url, prompt)
    elapsed = time.perf_counter() - started
    assert entry["outputs"][output_node]["ethmumbai_images"], entry.get("status")
    stamps = {kind: data["timestamp"] for kind, data in entry["status"]["messages"]}
    requests.post(f"{server.comfy_url}/history", json={"clear": True}, timeout=30)  # not timed
    return elapsed, (stamps["execution_success"] - stamps["execution_start"]) / 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()

    workflows = load_workflows()
    workflow = latest(workflows)
    schema = JobSchema(workflows)
    photos = unique_photos(2 * args.pairs + 1)
    with tempfile.TemporaryDirectory(prefix="worker-overhead-") as tmp:
        models = write_workflow_models(Path(tmp) / "models")
        manifest = pin_manifest(models["models_dir"], Path(tmp) / "models_manifest.yaml")
        server = start_worker(Path(tmp) / "worker", {"COMFYUI_PLUGINS": str(TINY_PLUGIN), "WARMUP": "1",
                                                     "MODEL_LOCATIONS": str(models["models_dir"]),
                                                     "MODELS_MANIFEST": str(manifest),
                                                     **({} if gpu_names() else {"COMFYUI_ARGS": "--cpu"})})
        try:
            params = {"size": args.size, "steps": args.steps}
            via_worker(server, {"image": photos[-1], **params})  # settle: first full-size run on both paths
            worker_s, direct_s = [], []
            for pair in range(args.pairs):
                job = {"image": photos[2 * pair], **params}
                request = schema.parse({"image": photos[2 * pair + 1], **params})
                prompt = workflow.build(request.image, request.params)
                for side in ("worker", "direct") if pair % 2 == 0 else ("direct", "worker"):
                    if side == "worker":
                        worker_s.append(via_worker(server, job))
                    else:
                        direct_s.append(direct(server, prompt, workflow.output_node))
        finally:
            server.stop()

    diffs = [w[0] - d[0] for w, d in zip(worker_s, direct_s, strict=True)]
    overhead, direct_median = statistics.median(diffs), statistics.median(d[0] for d in direct_s)
    # Time outside ComfyUI's own execution: insensitive to how long the (noisy) sampling took in each run.
    outside = statistics.median(w[0] - w[1] for w in worker_s) - statistics.median(d[0] - d[1] for d in direct_s)
    budget = max(0.05 * direct_median, 0.050)
    report = {
        "pairs": args.pairs, "size": args.size, "steps": args.steps,
        "worker_median_s": round(statistics.median(w[0] for w in worker_s), 4),
        "direct_median_s": round(direct_median, 4),
        "overhead_median_s": round(overhead, 4), "overhead_pct": round(100 * overhead / direct_median, 2),
        "overhead_iqr_s": [round(float(q), 4) for q in np.percentile(diffs, [25, 75])],
        "outside_execution_overhead_s": round(outside, 4),
        "budget_s": round(budget, 4), "within_target": overhead < budget,
        "worker_s": [round(w[0], 4) for w in worker_s], "direct_s": [round(d[0], 4) for d in direct_s],
    }
    print(json.dumps(report, indent=2))
    return 0 if report["within_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
