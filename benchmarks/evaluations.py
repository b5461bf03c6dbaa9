"""Model evaluations per avatar, per speed preset: counted, not inferred, on the tiny models through real ComfyUI.

    .venv/bin/python benchmarks/evaluations.py [--size 512] [--repeat 2]

ComfyUI boots with the tiny demo models under the workflow's own file names and the benchmark-only plugin
``benchmarks/eval_counter`` (it wraps the UNet's ``apply_model``, the ControlNet's forward and the sampler, and
serves the counts). Each speed preset of the latest workflow's params file runs the production graph on the same
photo; the figures are the evaluations of one job (UNet and ControlNet, per batch row: cfg > 1 costs two per step)
and the sampler's wall time as a ratio to ``quality`` in the same run (the CPU is shared: ratios, not seconds,
and the median of ``--repeat`` runs).

Targets (issue 17): UNet + ControlNet evaluations of ``fast`` at most 60 % of ``quality``'s, ``turbo`` at most
20 %. Exit status 1 if a preset present misses its target.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

import requests  # noqa: E402

from avatar_driver import paths  # noqa: E402
from avatar_driver.contract import Workflow, latest, load_workflows  # noqa: E402
from avatar_driver.demo.tiny_models import TINY_PLUGIN, write_workflow_models  # noqa: E402
from tools.comfy import run_prompt, start_comfy  # noqa: E402
from tools.images import astronaut, b64, encode  # noqa: E402

COUNTER_PLUGIN = Path(__file__).resolve().parent / "eval_counter"
COUNTS_ROUTE = "/ethmumbai_bench/evaluations"
TARGETS = {"fast": 0.60, "turbo": 0.20}  # evaluations as a fraction of quality's (issue 17)


def count_job(comfy_url: str, workflow: Workflow, image: str, params: dict, speed: str) -> dict:
    """The evaluations and sampler seconds of one job with the job's own ``params`` and the ``speed`` preset."""
    requests.post(comfy_url + COUNTS_ROUTE, timeout=30).raise_for_status()
    entry = run_prompt(comfy_url, workflow.prompt(image, params, speed=speed).graph)
    assert entry.get("status", {}).get("status_str") == "success", entry
    return requests.get(comfy_url + COUNTS_ROUTE, timeout=30).json()


def measure(size: int = 512, repeat: int = 1, seed: int = 0, workdir: Path | None = None) -> dict:
    """Per speed preset: UNet/ControlNet evaluations per job, and ratios to ``quality``; see the module doc."""
    workflow = latest(load_workflows())
    speeds = list(workflow.speeds.presets)
    image = b64(encode(astronaut()))
    with tempfile.TemporaryDirectory(prefix="evaluations-", dir=workdir) as tmp:
        models = write_workflow_models(Path(tmp) / "models")
        comfy = start_comfy(Path(tmp), [paths.PACK_DIR, TINY_PLUGIN, COUNTER_PLUGIN], models["model_paths_config"])
        try:
            runs = {speed: [] for speed in speeds}
            for index in range(repeat):
                for speed in speeds:  # interleaved, so load drift on the shared CPU hits every preset alike
                    params = {"size": size, "seed": seed + index}
                    runs[speed].append(count_job(comfy.url, workflow, image, params, speed))
        finally:
            comfy.stop()
    report = {"size": size, "repeat": repeat, "presets": {}}
    for speed in speeds:
        counts = runs[speed][0]
        assert all({k: v for k, v in run.items() if k != "sampler_s"} == {k: v for k, v in counts.items()
                                                                        if k != "sampler_s"} for run in runs[speed])
        report["presets"][speed] = {
            "params": dict(workflow.speeds.get(speed).params),
            "unet_evaluations": counts["unet"], "unet_calls": counts["unet_calls"],
            "controlnet_evaluations": counts["controlnet"], "controlnet_calls": counts["controlnet_calls"],
            "evaluations": counts["unet"] + counts["controlnet"],
            "sampler_s_median": round(statistics.median(run["sampler_s"] for run in runs[speed]), 3),
        }
    base = report["presets"]["quality"]
    for speed, row in report["presets"].items():
        row["evaluations_ratio"] = round(row["evaluations"] / base["evaluations"], 3)
        row["sampler_time_ratio"] = round(row["sampler_s_median"] / base["sampler_s_median"], 3)
        if speed in TARGETS:
            row["target_ratio"] = TARGETS[speed]
            row["within_target"] = row["evaluations_ratio"] <= TARGETS[speed]
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    report = measure(args.size, args.repeat)
    print(json.dumps(report, indent=2))
    return 0 if all(row.get("within_target", True) for row in report["presets"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
