"""GPU benchmark: the production workflow end to end through the worker, against stock ComfyUI in the same run.

    bash benchmarks/gpu/run_gpu_bench.sh [--tiny] [options]     # sets up (device) and runs this module

Phases (``--mode all`` runs main then variants), each written to OUT/bench.json and OUT/bench.md as it ends:
- models: random-weight files (full-size SDXL + ControlNet + LoRA, or tiny) under the workflow's model names;
- main: (1) the worker in a fresh process (worker_phase.py): boot to ready, cold first job, warm jobs with
  new seeds and new photos; (2) the same prompts through bare ComfyUI (stock 0.3.75 with the pack): the
  baseline ratio; (3) the gpu_anchor kit's stock graph (txt2img + Canny), the issue's reference figure;
- variants: the speed candidates of variants.py, one at a time, on bare ComfyUI, with the PSNR check.
Every job changes seed and photo (as real users do), so ComfyUI's cache reuses only what does not depend on
them (model loads, text encoding). A ``--budget-s`` deadline skips what would not finish in time.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO_ROOT))

from PIL import Image  # noqa: E402

from avatar_driver import paths  # noqa: E402
from avatar_driver.client import ComfyClient  # noqa: E402
from avatar_driver.contract import Workflow, latest, load_workflows  # noqa: E402
from avatar_driver.demo.tiny_models import TINY_PLUGIN, pin_manifest  # noqa: E402
from avatar_driver.process import ComfyProcess, free_port  # noqa: E402
from avatar_driver.runner import PromptRun  # noqa: E402
from benchmarks.gpu import measure, models, report  # noqa: E402
from benchmarks.gpu.variants import PSNR_MIN_DB, VARIANTS, Variant, speed_variants  # noqa: E402
from worker.schema import JobSchema  # noqa: E402

KIT_DIR = models.KIT_DIR
DECODED_NODE = "bench_decoded"  # variants add this output node on the VAE decode, for the PSNR check
JOB_DEADLINE_S = 900.0


class Clock:
    """Seconds left of the run's budget, counted from the shell's start (BENCH_STARTED, epoch seconds)."""

    def __init__(self, budget_s: float):
        self.started = float(os.environ.get("BENCH_STARTED") or time.time())
        self.budget_s = budget_s

    def left(self) -> float:
        return self.budget_s - (time.time() - self.started)

    def allows(self, estimate_s: float) -> bool:
        return self.left() > estimate_s


@dataclass
class Jobs:
    """Job inputs: a new seed and a new photo (JPEG quality) per job index; the other params fixed."""

    workflow: Workflow
    params: dict  # params set for every job (size, steps)
    photo_px: int
    _photo: Image.Image | None = None

    def photo(self) -> Image.Image:
        if self._photo is None:
            from skimage import data

            self._photo = Image.fromarray(data.astronaut()).resize((self.photo_px,) * 2, Image.LANCZOS)
        return self._photo

    def image(self, job: int, rerun: bool = False) -> str:
        """Base64 JPEG; ``rerun`` gives the same pixels in other bytes (a comment), so no cache can answer."""
        buffer = io.BytesIO()
        self.photo().save(buffer, "JPEG", quality=92 - job % 7, **({"comment": b"rerun"} if rerun else {}))
        return base64.b64encode(buffer.getvalue()).decode("ascii")

    def job_input(self, job: int, extra: Callable[[int, dict], dict] | None = None, rerun: bool = False) -> dict:
        job_input = {"image": self.image(job, rerun), **self.params, "seed": 1000 + job}
        if extra is not None:
            defaults = {**self.workflow.defaults(), **job_input}
            changes = clamp(self.workflow, extra(job, defaults))
            if "speed" in changes:  # the run's own --steps/--size must not override what the speed preset sets
                for name in self.workflow.speeds.get(changes["speed"]).params:
                    job_input.pop(name, None)
            job_input.update(changes)
        return job_input


def clamp(workflow: Workflow, params: dict) -> dict:
    """Numeric params kept inside the params file's minimum/maximum (the tiny run has few steps to cut)."""
    out = {}
    for name, value in params.items():
        spec = workflow.params.get(name, {})
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = max(spec.get("minimum", value), min(spec.get("maximum", value), value))
        out[name] = value
    return out


@dataclass
class Env:
    """Everything the phases share."""

    args: argparse.Namespace
    out: Path
    work: Path
    workflow: Workflow
    schema: JobSchema
    jobs: Jobs
    model_paths: Path
    base_args: list[str]
    plugins: list[Path]
    poller: measure.MemoryPoller
    clock: Clock
    results: dict = field(default_factory=dict)

    def save(self) -> None:
        (self.out / "bench.json").write_text(json.dumps(self.results, indent=1, default=str) + "\n")
        (self.out / "bench.md").write_text(report.markdown(self.results))


# ---------------------------------------------------------------- set-up


def comfy_base_args(tiny: bool) -> list[str]:
    """Flags every ComfyUI of the run gets: --cpu without a GPU; an empty front-end root where the image lacks
    the frontend package (the API does not need it)."""
    args = [] if shutil.which("nvidia-smi") and not tiny else ["--cpu"]
    if find_spec("comfyui_frontend_package") is None:
        empty = Path(tempfile.gettempdir()) / "bench_web_empty"
        empty.mkdir(exist_ok=True)
        args += ["--front-end-root", str(empty)]
    return args


def gpu_info() -> str | None:
    if not shutil.which("nvidia-smi"):
        return None
    return subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
                          capture_output=True, text=True).stdout.strip()


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def filesystem_of(path: Path) -> str | None:
    """The filesystem type holding ``path`` (tmpfs models never leave memory: a dropped page cache does not matter)."""
    try:
        mounts = [line.split()[1:3] for line in Path("/proc/mounts").read_text().splitlines()]
    except OSError:
        return None
    target = str(path.resolve())
    best = max((m for m in mounts if target == m[0] or target.startswith(m[0].rstrip("/") + "/")),
               key=lambda m: len(m[0]), default=None)
    return best[1] if best else None


def drop_page_cache() -> bool:
    """So the worker's cold start reads the models from disk, as a new container would (device machine only)."""
    try:
        os.sync()
        Path("/proc/sys/vm/drop_caches").write_text("1\n")
        return True
    except OSError:
        return False


# ---------------------------------------------------------------- bare ComfyUI


@dataclass
class Bare:
    """A stock ComfyUI (with the pack) that the benchmark drives like a minimal API client."""

    env: Env
    flags: tuple[str, ...] = ()
    log_name: str = "comfyui_bare.log"

    def __post_init__(self) -> None:
        self.process = ComfyProcess(workdir=self.env.work / "bare_comfy", plugins=self.env.plugins,
                                    model_paths_config=self.env.model_paths,
                                    extra_args=self.env.base_args + list(self.flags),
                                    log_path=self.env.out / self.log_name)
        self.client = ComfyClient(self.process.url)

    def start(self) -> float:
        with open(self.process.log_path, "ab") as log:
            log.write(f"\n===== ComfyUI {' '.join(self.process.extra_args)} =====\n".encode())
        started = time.monotonic()
        self.process.start()
        self.env.poller.track(self.process.pid)
        self.process.wait_ready(300)
        booted = round(time.monotonic() - started, 2)
        if "comfyui" not in self.env.results["meta"]:
            stats = self.client.system_stats()
            self.env.results["meta"]["comfyui"] = {
                "version": stats["system"].get("comfyui_version"), "torch": stats["system"].get("pytorch_version"),
                "device": stats["devices"][0].get("name"), "vram_total_mib": stats["devices"][0].get("vram_total", 0) >> 20}
        return booted

    def stop(self) -> None:
        self.process.stop()

    def prompt(self, job_input: dict, transform: Callable[[dict], dict] | None, decoded: bool) -> dict:
        """The prompt the worker would queue for this job input, optionally changed and with a decoded-image output."""
        request = self.env.schema.parse(job_input)
        prompt = self.env.workflow.prompt(request.image, request.params, request.style, request.speed).graph
        if transform is not None:
            prompt = transform(prompt)
        if decoded:
            prompt = with_decoded_output(prompt)
        return prompt

    def run(self, prompt: dict, output_node: str) -> dict:
        """One prompt: wall time, the stage timings, the sampler's it/s, the output image."""
        steps: list[tuple[float, int]] = []
        sampler_nodes = self.env.workflow.sampler_nodes

        def on_progress(event: dict) -> None:
            if event.get("step") is not None and event.get("node") in sampler_nodes:
                steps.append((time.monotonic(), int(event["step"])))

        run = PromptRun(self.client, prompt, output_node, sampler_nodes, alive=self.process.alive,
                        on_progress=on_progress)
        started = time.monotonic()
        outcome = run.execute(started + min(JOB_DEADLINE_S, max(30.0, self.env.clock.left())))
        wall = time.monotonic() - started
        image = outcome.output["ethmumbai_images"][0]["base64"]
        return {"wall_s": round(wall, 3), "timings": outcome.timings, "it_per_s": measure.rate(steps),
                "image": image}


def with_decoded_output(prompt: dict) -> dict:
    """Add a base64 output on the (single) VAEDecode node: the SDXL image before compositing, for PSNR."""
    decoders = [nid for nid, node in prompt.items() if node["class_type"] == "VAEDecode"]
    if len(decoders) != 1:
        raise ValueError(f"expected one VAEDecode node, found {decoders}")
    return {**prompt, DECODED_NODE: {"class_type": "EthMumbaiSaveImageBase64",
                                     "inputs": {"images": [decoders[0], 0], "format": "png", "quality": 95}}}


def summarize(runs: list[dict], steps: int | None) -> dict:
    """Median wall time, stage timings and sampler rate of warm runs."""
    sampling = measure.median([r["timings"].get("sampling") for r in runs])
    return {
        "runs_s": [r["wall_s"] for r in runs],
        "median_s": measure.median([r["wall_s"] for r in runs]),
        "timings_median_s": {k: measure.median([r["timings"].get(k) for r in runs])
                             for k in ("queue", "preprocess", "sampling", "encode")},
        "it_per_s": measure.median([r.get("it_per_s") for r in runs]),
        "it_per_s_from_sampling_span": round(steps / sampling, 3) if steps and sampling else None,
    }


# ---------------------------------------------------------------- main phase


def other_speeds(workflow: Workflow) -> list[str]:
    return workflow.speeds.others() if workflow.speeds else []


def resolved_steps(env: Env, job_input: dict) -> int | None:
    """The steps a job input runs: its own, else its speed preset's, else the default."""
    job = env.schema.parse(job_input)
    return env.workflow.resolve(job.params, job.style, job.speed).get("steps")


def worker_phase(env: Env) -> dict:
    """The worker in a fresh process, timed from its spawn; jobs 0..N (0 = cold) with the default speed, then on the
    same warm worker jobs 0..N of each other speed preset (its job 0 loads what only it needs, turbo's LoRA)."""
    n = env.args.warm_runs
    spec_path, result_path = env.work / "worker_spec.json", env.work / "worker_result.json"
    inputs = [env.jobs.job_input(i) for i in range(n + 1)]
    for speed in other_speeds(env.workflow):
        inputs += [env.jobs.job_input(i, lambda job, params, chosen=speed: {"speed": chosen}) for i in range(n + 1)]
    spec_path.write_text(json.dumps({"jobs": inputs, "keep_images": list(range(n + 1)),
                                     "comfy_log": str(env.out / "comfyui_worker.log")}))
    result_path.unlink(missing_ok=True)
    # The worker finds models through MODEL_LOCATIONS, checked against the manifest's sizes: pinned to the random
    # files' own (hashing ~9 GB takes seconds; done before the worker's clock starts).
    manifest = pin_manifest(env.args.models, env.work / "models_manifest.yaml")
    child_env = {**os.environ, "EXTRA_MODEL_PATHS": str(env.model_paths),
                 "MODEL_LOCATIONS": str(env.args.models), "MODELS_MANIFEST": str(manifest),
                 "COMFYUI_PLUGINS": os.pathsep.join(str(p) for p in env.plugins if p != paths.PACK_DIR),
                 "COMFY_WORKDIR": str(env.work / "worker_comfy"), "COMFYUI_ARGS": " ".join(env.base_args),
                 "JOB_TIMEOUT": str(JOB_DEADLINE_S), "WARMUP": "0", "COMFY_BOOT_TIMEOUT": "300"}
    page_cache_dropped = drop_page_cache() if env.args.drop_page_cache else False
    spawned, mono0 = time.time(), time.monotonic()
    # Own process group: past the deadline the worker and its ComfyUI are stopped together.
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.gpu.worker_phase", str(spec_path), str(result_path)],
                            cwd=REPO_ROOT, env=child_env, start_new_session=True)
    env.poller.track(proc.pid)
    try:
        proc.wait(timeout=max(60.0, env.clock.left() - 60))
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)
    got = json.loads(result_path.read_text()) if result_path.is_file() else {}
    everything = got.get("jobs", [])
    jobs = everything[:n + 1]  # the default speed's
    summary = {"page_cache_dropped": page_cache_dropped, "exit_code": proc.returncode,
               "import_s": round(got["imported"] - got["started"], 2) if "imported" in got else None,
               "boot_to_ready_s": round(got["ready"] - spawned, 2) if "ready" in got else None}
    errors = [j["output"]["error"] for j in jobs if "error" in j["output"]]
    if errors or len(jobs) < n + 1:
        summary["error"] = errors[0] if errors else f"only {len(jobs)} of {n + 1} jobs finished"
    if not jobs:
        return summary
    runs = [worker_run(j) for j in jobs]
    warm = runs[1:]
    steps = resolved_steps(env, inputs[0])

    def to_mono(epoch: float) -> float:
        return mono0 + (epoch - spawned)

    summary.update({
        "cold_first_s": runs[0]["wall_s"], "cold_timings_s": runs[0]["timings"],
        "start_to_first_result_s": round(jobs[0]["end"] - spawned, 2),
        "steps": steps, **summarize(warm, steps),
        "peak_memory": env.poller.peak(mono0, to_mono(jobs[-1]["end"])),
        "peak_memory_warm": env.poller.peak(to_mono(jobs[1]["start"]), to_mono(jobs[-1]["end"])) if warm else None,
        "image_mean_std": measure.image_stats(measure.decode_image(runs[-1]["image"])) if runs[-1]["image"] else None,
    })
    summary["_images"] = [r["image"] for r in runs]
    summary["speeds"] = speed_summaries(env, everything[n + 1:], inputs[n + 1:])
    return summary


def worker_run(job: dict) -> dict:
    """One job record of worker_phase.py as a run: wall time, the handler's timings, the image if kept."""
    return {"wall_s": round(job["end"] - job["start"], 3), "timings": job["output"].get("timings", {}),
            "image": job.get("image")}


def speed_summaries(env: Env, jobs: list[dict], inputs: list[dict]) -> dict:
    """Per other speed preset, from the worker's jobs after the default speed's: first job, warm figures."""
    n = env.args.warm_runs
    out = {}
    for k, speed in enumerate(other_speeds(env.workflow)):
        part = jobs[k * (n + 1):(k + 1) * (n + 1)]
        if not part:
            out[speed] = {"skipped": "not reached (an earlier job failed or the deadline came)"}
            continue
        errors = [j["output"]["error"] for j in part if "error" in j["output"]]
        steps = resolved_steps(env, inputs[k * (n + 1)])
        runs = [worker_run(j) for j in part]
        out[speed] = {"first_s": runs[0]["wall_s"], "steps": steps, **summarize(runs[1:], steps),
                      **({"error": errors[0]} if errors else {})}
    return out


def bare_phase(env: Env, bare: Bare) -> dict:
    """The same job inputs as the worker's, as prompts straight to a stock ComfyUI with the pack."""
    mono0 = time.monotonic()
    summary: dict = {"boot_to_ready_s": bare.start()}
    runs = []
    for i in range(env.args.warm_runs + 1):
        runs.append(bare.run(bare.prompt(env.jobs.job_input(i), None, decoded=False), env.workflow.output_node))
    warm = runs[1:]
    summary.update({"cold_first_s": runs[0]["wall_s"], "cold_timings_s": runs[0]["timings"],
                    **summarize(warm, resolved_steps(env, env.jobs.job_input(0))),
                    "peak_memory": env.poller.peak(mono0),
                    "image_mean_std": measure.image_stats(measure.decode_image(runs[-1]["image"]))})
    summary["_images"] = [r["image"] for r in runs]
    return summary


def anchor_phase(env: Env) -> dict:
    """The gpu_anchor kit's stock graph (txt2img + Canny ControlNet + LoRA) on stock ComfyUI, as the kit runs it."""
    workdir = env.work / "anchor"
    (workdir / "custom_nodes").mkdir(parents=True, exist_ok=True)
    for plugin in env.plugins:
        if plugin != paths.PACK_DIR and not (workdir / "custom_nodes" / plugin.name).exists():
            (workdir / "custom_nodes" / plugin.name).symlink_to(plugin)  # the tiny model class
    json_out = env.work / "anchor.json"
    size, steps = env.jobs.params.get("size", 1024), env.jobs.params.get("steps", 20)
    cmd = [sys.executable, str(KIT_DIR / "run_anchor.py"), "--comfy", str(paths.comfyui_dir()),
           "--models", str(env.args.raw), "--arch", env.args.arch, "--width", str(size), "--height", str(size),
           "--steps", str(steps), "--runs", str(env.args.anchor_runs), "--port", str(free_port()),
           "--workdir", str(workdir), "--json-out", str(json_out)]
    mono0 = time.monotonic()
    with open(env.out / "anchor.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        env.poller.track(proc.pid)
        try:
            proc.wait(timeout=max(60.0, env.clock.left() - 30))
        except subprocess.TimeoutExpired:
            proc.terminate()  # the kit stops its ComfyUI on SIGTERM
            proc.wait(30)
    result = json.loads(json_out.read_text()) if json_out.is_file() else {"error": f"exit code {proc.returncode}"}
    result["peak_memory"] = env.poller.peak(mono0)
    result["graph"] = "gpu_anchor kit: CheckpointLoaderSimple, LoraLoader, CLIPTextEncode x2, LoadImage, Canny, " \
                      "ControlNetApplyAdvanced, EmptyLatentImage, KSampler dpmpp_2m karras cfg 5, VAEDecode, SaveImage"
    return result


def main_phase(env: Env, bare: Bare) -> None:
    main = env.results.setdefault("main", {})
    for name, run in (("worker", lambda: worker_phase(env)), ("bare", lambda: bare_phase(env, bare))):
        estimate = phase_estimate(main.get("worker") or {})
        if not env.clock.allows(estimate):
            main[name] = {"skipped": f"not enough time left (needs ~{estimate:.0f} s, {env.clock.left():.0f} s left)"}
            continue
        print(f"--- main: {name} ({env.clock.left():.0f} s of budget left)", flush=True)
        try:
            main[name] = run()
        except Exception as err:  # keep what the other phases measure
            main[name] = {"error": f"{type(err).__name__}: {err}"}
        env.save()
    worker_images = main["worker"].pop("_images", None)
    bare_images = main["bare"].pop("_images", None)
    if worker_images and bare_images:
        pairs = [(w, b) for w, b in zip(worker_images, bare_images, strict=False) if w and b]
        main["worker_vs_bare_min_psnr_db"] = min(
            measure.psnr(measure.decode_image(w), measure.decode_image(b)) for w, b in pairs)
    main["ratios"] = ratios(main)
    env.save()
    estimate = 2 * (main["bare"].get("boot_to_ready_s") or 30) + (env.args.anchor_runs + 2) * (
        main["bare"].get("median_s") or 10)
    if env.args.anchor_runs and not (KIT_DIR / "run_anchor.py").is_file():
        main["anchor"] = {"skipped": f"no {KIT_DIR}/run_anchor.py (run benchmarks/gpu/prepare_carry.sh)"}
    elif env.args.anchor_runs and env.clock.allows(estimate):
        print(f"--- main: stock graph (gpu_anchor kit) ({env.clock.left():.0f} s left)", flush=True)
        try:
            main["anchor"] = anchor_phase(env)
        except Exception as err:
            main["anchor"] = {"error": f"{type(err).__name__}: {err}"}
        main["ratios"] = ratios(main)
    elif env.args.anchor_runs:
        main["anchor"] = {"skipped": f"not enough time left (needs ~{estimate:.0f} s, {env.clock.left():.0f} s left)"}
    env.save()


def phase_estimate(measured: dict) -> float:
    """Seconds a boot, a cold job and the warm jobs took in a measured phase (0 before any: always try)."""
    return sum(measured.get(k) or 0 for k in ("boot_to_ready_s", "cold_first_s")) + sum(measured.get("runs_s") or [])


def ratios(main: dict) -> dict:
    worker, bare, anchor = (main.get(k) or {} for k in ("worker", "bare", "anchor"))

    def ratio(a, b):
        return round(a / b, 3) if a and b else None

    return {
        "worker_warm_over_bare_warm": ratio(worker.get("median_s"), bare.get("median_s")),
        "worker_warm_over_stock_graph_warm": ratio(worker.get("median_s"), anchor.get("warm_median_s")),
        "bare_warm_over_stock_graph_warm": ratio(bare.get("median_s"), anchor.get("warm_median_s")),
        "worker_sampler_it_s_over_stock_graph": ratio(worker.get("it_per_s_from_sampling_span"), anchor.get("it_per_s")),
    }


# ---------------------------------------------------------------- variants


def measure_config(env: Env, bare: Bare, variant: Variant | None) -> dict:
    """Job 0 (first after the change: loads, compiles), then jobs 1..K; the decoded image of job 1 kept."""
    transform = variant.transform if variant else None
    job_params = variant.job_params if variant else None
    mono0 = time.monotonic()
    first = bare.run(bare.prompt(env.jobs.job_input(0, job_params), transform, decoded=True), DECODED_NODE)
    runs = [bare.run(bare.prompt(env.jobs.job_input(i, job_params), transform, decoded=True), DECODED_NODE)
            for i in range(1, env.args.variant_runs + 1)]
    steps = resolved_steps(env, env.jobs.job_input(1, job_params))
    return {"first_s": first["wall_s"], **summarize(runs, steps), "peak_memory": env.poller.peak(mono0),
            "_image": runs[0]["image"]}


def variant_estimate(variant: Variant, base: dict, boot_s: float, jobs: int) -> float:
    """Seconds a variant should take, from the baseline's figures, with a margin."""
    per_job = (base.get("median_s") or 10) * 1.5
    restart = boot_s + 2 * per_job if variant.kind == "flags" else 0.0
    return restart + jobs * per_job + variant.first_job_extra_s


def variants_phase(env: Env, bare: Bare) -> None:
    out = env.results.setdefault("variants", {"psnr_min_db": PSNR_MIN_DB, "runs_per_variant": env.args.variant_runs})
    bare_main = env.results.get("main", {}).get("bare") or {}
    estimate = 1.5 * (env.args.variant_runs + 2) * (bare_main.get("median_s") or 0) + (
        0 if bare.process.alive() else bare_main.get("boot_to_ready_s") or 0)
    if not env.clock.allows(estimate):
        out["skipped"] = f"not enough time left (needs ~{estimate:.0f} s, {env.clock.left():.0f} s left)"
        return
    print(f"--- variants: baseline ({env.clock.left():.0f} s left)", flush=True)
    try:
        if not bare.process.alive():
            out["baseline_boot_s"] = bare.start()
        base = measure_config(env, bare, None)
        rerun = bare.run(bare.prompt(env.jobs.job_input(1, rerun=True), None, decoded=True), DECODED_NODE)
    except Exception as err:  # no baseline, nothing to compare with
        out["skipped"] = f"baseline failed: {type(err).__name__}: {str(err)[:500]}"
        return
    base["repeat_psnr_db"] = measure.psnr(measure.decode_image(base["_image"]), measure.decode_image(rerun["image"]))
    base["spread"] = measure.spread(base["runs_s"])
    out["baseline"] = {k: v for k, v in base.items() if not k.startswith("_")}
    env.save()
    boot_s = env.results.get("main", {}).get("bare", {}).get("boot_to_ready_s") or out.get("baseline_boot_s") or 30
    candidates = speed_variants(env.workflow.speeds) + VARIANTS  # the presets first, in the budget
    wanted = [v for v in candidates if not env.args.only or v.name in env.args.only]
    for variant in sorted(wanted, key=lambda v: v.kind != "graph"):  # graph changes first: no restart
        record = {"name": variant.name, "kind": variant.kind, "change": variant.change,
                  "prediction": variant.prediction, "numerics": variant.numerics, "proposal": variant.proposal,
                  "counterfactual": variant.counterfactual}
        out.setdefault("results", []).append(record)
        estimate = variant_estimate(variant, base, boot_s, env.args.variant_runs + 1)
        if variant.needs_cuda and not shutil.which("nvidia-smi"):
            record["status"] = "skipped: needs CUDA"
        elif not env.clock.allows(estimate + 20):
            record["status"] = f"skipped: not enough time left (needs ~{estimate:.0f} s, {env.clock.left():.0f} s left)"
        else:
            print(f"--- variant {variant.name} ({env.clock.left():.0f} s left, needs ~{estimate:.0f} s)", flush=True)
            bare = run_variant(env, bare, variant, base, record)
        env.save()
    bare.stop()


def run_variant(env: Env, bare: Bare, variant: Variant, base: dict, record: dict) -> Bare:
    """Measure one variant into ``record``; returns the server to go on with (a flags variant gets its own)."""
    server = bare
    try:
        if variant.kind == "flags":
            bare.stop()
            server = Bare(env, flags=variant.flags)
            record["boot_to_ready_s"] = server.start()
        got = measure_config(env, server, variant)
        image = got.pop("_image")
        record.update(status="measured", **got)
        record["speedup"] = round(base["median_s"] / got["median_s"], 3) if got["median_s"] else None
        base_sampling, sampling = base["timings_median_s"]["sampling"], got["timings_median_s"]["sampling"]
        record["sampler_speedup"] = round(base_sampling / sampling, 3) if base_sampling and sampling else None
        if not variant.counterfactual:
            record["psnr_db"] = measure.psnr(measure.decode_image(base["_image"]), measure.decode_image(image))
            if variant.numerics:
                record["psnr_ok"] = record["psnr_db"] >= PSNR_MIN_DB
    except Exception as err:
        record["status"] = f"failed: {type(err).__name__}: {str(err)[:500]}"
    if variant.kind == "flags":
        server.stop()
        server = Bare(env)  # later flag variants start their own; a graph variant never follows one
    return server


# ---------------------------------------------------------------- entry point


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("all", "main", "variants"), default="all")
    ap.add_argument("--out", type=Path, required=True, help="results folder (bench.json, bench.md, logs)")
    ap.add_argument("--raw", type=Path, required=True, help="folder of the generated random model files")
    ap.add_argument("--models", type=Path, required=True, help="folder the workflow's model names are linked into")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a new temp folder)")
    ap.add_argument("--tiny", action="store_true", help="tiny SDXL-shaped models and the tiny_sdxl test plugin (CPU)")
    ap.add_argument("--size", type=int, default=None, help="the workflow's size param (default: its default)")
    ap.add_argument("--steps", type=int, default=None, help="the workflow's steps param (default: its default)")
    ap.add_argument("--photo-px", type=int, default=1536, help="side of the input photo (JPEG)")
    ap.add_argument("--warm-runs", type=int, default=5, help="warm jobs after the cold one (main phase)")
    ap.add_argument("--variant-runs", type=int, default=3, help="timed jobs per variant after its first job")
    ap.add_argument("--anchor-runs", type=int, default=3, help="warm runs of the kit's stock graph (0: skip it)")
    ap.add_argument("--only", nargs="*", default=None, help="variant names to run (default: all, in order)")
    ap.add_argument("--budget-s", type=float, default=560.0,
                    help="seconds from BENCH_STARTED after which nothing new starts (default 560)")
    ap.add_argument("--drop-page-cache", action="store_true",
                    help="drop the page cache before the worker's cold start (device machine only)")
    args = ap.parse_args(argv)
    args.arch = "tiny" if args.tiny else "sdxl"
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="gpu_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    clock = Clock(args.budget_s)
    workflow = latest(load_workflows())
    params = {name: value for name, value in (("size", args.size), ("steps", args.steps))
              if value is not None and name in workflow.params}
    results: dict = {"meta": {
        "date_utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M"), "mode": args.mode, "tiny": args.tiny,
        "machine": platform.node(), "cpu_count": os.cpu_count(), "gpu": gpu_info(), "python": platform.python_version(),
        "commit": git_commit(), "workflow": f"{workflow.version} ({workflow.semver})",
        "params": {**{k: v for k, v in workflow.defaults().items() if k in ("size", "steps", "cfg", "denoise")},
                   **params},
        "warm_runs": args.warm_runs, "photo_px": args.photo_px, "argv": sys.argv[1:],
    }}
    results["models"] = models.generate(args.raw, args.arch, paths.comfyui_dir())
    results["models"]["files"] = models.link_models(workflow.model_files(), args.raw, args.arch, args.models)
    results["models"]["filesystem"] = filesystem_of(args.raw)
    model_paths = models.write_model_paths(args.models, set(workflow.model_files().values()),
                                           work / "extra_model_paths.yaml")
    plugins = [paths.PACK_DIR] + ([TINY_PLUGIN] if args.tiny else [])
    env = Env(args, args.out, work, workflow, JobSchema(load_workflows()), Jobs(workflow, params, args.photo_px),
              model_paths, comfy_base_args(args.tiny), plugins, measure.MemoryPoller().start(), clock, results)
    results["meta"]["comfy_args"] = env.base_args
    results["meta"]["memory_unit"] = env.poller.unit
    env.save()
    bare = Bare(env)
    try:
        if args.mode in ("all", "main"):
            main_phase(env, bare)
        if args.mode in ("all", "variants"):
            variants_phase(env, bare)
    finally:
        bare.stop()
        env.poller.stop()
        results["meta"]["elapsed_s"] = round(time.time() - clock.started, 1)
        env.save()
    print(report.markdown(results), flush=True)


if __name__ == "__main__":
    main()
