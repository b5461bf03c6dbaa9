"""RunPod serverless handler: one typed job in, one avatar (or one coded error) out.

``python -m worker.handler`` boots ComfyUI and serves RunPod jobs; ``--rp_serve_api`` serves the
same handler on a local HTTP API (``/runsync``, ``/run``, ``/status``). Env: worker/settings.py.
"""

from __future__ import annotations

import os

# The SDK's DEBUG level prints every job's output (base64 images): never the default here.
os.environ.setdefault("RUNPOD_LOG_LEVEL", "INFO")

import asyncio  # noqa: E402
import base64  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import queue  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from pathlib import Path  # noqa: E402

import runpod  # noqa: E402
from runpod.http_client import AsyncClientSession  # noqa: E402
from runpod.serverless.modules import rp_http  # noqa: E402
from runpod.serverless.modules.rp_http import _handle_result  # noqa: E402
from runpod.serverless.modules.rp_logger import RunPodLogger  # noqa: E402

from avatar_driver.client import ComfyUnavailable, PromptRejected  # noqa: E402
from avatar_driver.contract import (  # noqa: E402
    FACE_CROP_CLASS,
    FaceReport,
    JobWarning,
    Prompt,
    Workflow,
    latest,
    load_workflows,
    pinned_hashes,
)
from avatar_driver.demo.tiny_models import TINY_PLUGIN  # noqa: E402
from avatar_driver.errors import (  # noqa: E402
    CACHE_DISABLED,
    COMFY_CRASHED,
    COMFY_EXECUTION,
    DEMO_MODELS,
    GPU_OUT_OF_MEMORY,
    OUTPUT_TOO_LARGE,
    STORAGE_ERROR,
    WorkerError,
    clean_message,
    rejection_error,
)
from avatar_driver.process import ComfyBootError  # noqa: E402
from avatar_driver.runner import PromptRun  # noqa: E402
from custom_nodes.ethmumbai.core.errors import INVALID_INPUT, CodedError  # noqa: E402
from worker import logs  # noqa: E402
from worker.analytics import EventSink, job_event  # noqa: E402
from worker.readiness import BootRefused, check_device, check_models, model_links  # noqa: E402
from worker.schema import JobRequest, JobSchema  # noqa: E402
from worker.settings import Settings, SettingsError  # noqa: E402
from worker.storage import ResultStore, StorageError, StoredObject  # noqa: E402
from worker.supervisor import Supervisor, model_links_dir, model_paths_config  # noqa: E402

log = logging.getLogger("worker")
PROGRESS_INTERVAL_S = 0.25  # sampling steps are forwarded at most this often
PROGRESS_FLUSH_S = 2.0  # how long a finished job waits for its last progress updates to go out
STAGES = ("queued", "preprocess", "sampling", "encode", "upload")  # progress stages, in order


class Progress:
    """Forwards stage changes and (throttled) sampling steps to the endpoint's progress URL, in order.

    Payloads follow docs/ARCHITECTURE.md: ``{"stage"}``, plus ``step``/``steps`` while sampling. Only
    sent where the SDK has somewhere to send them (``enabled``: ``RUNPOD_WEBHOOK_POST_OUTPUT`` is set, the platform
    or a local collector); without it the SDK would log a failed POST per update.
    """

    def __init__(self, job: dict, enabled: bool, token: str | None = None):
        self.job = job
        self.enabled = enabled
        # The collector's per-job secret (job input progress_token), added to the progress URL.
        url = rp_http.JOB_DONE_URL  # read when the job starts: the SDK module holds the live value
        self._url = url if token is None else f"{url}&token={token}"
        self._stage: str | None = None
        self._last_step_at = 0.0
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._sender: threading.Thread | None = None

    def __call__(self, event: dict) -> None:
        stage = event.get("stage")
        if stage not in STAGES:
            return
        if self._stage is None or STAGES.index(stage) > STAGES.index(self._stage):
            self._stage = stage  # forward only: a preprocess node may run after the sampler (e.g. the mask)
            self._send({"stage": stage})
        if stage == "sampling" and event.get("step") is not None:
            now = time.monotonic()
            if now - self._last_step_at >= PROGRESS_INTERVAL_S or event["step"] == event.get("steps"):
                self._last_step_at = now
                self._send({"stage": stage, "step": int(event["step"]), "steps": int(event["steps"])})

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        # Let the queued updates go out first, so the last one does not land after the job's result.
        if self._sender is not None:
            self._outbox.put(None)
            self._sender.join(PROGRESS_FLUSH_S)

    def _send(self, payload: dict) -> None:
        if not self.enabled:
            return
        if self._sender is None:
            self._sender = threading.Thread(target=self._deliver, name="job-progress", daemon=True)
            self._sender.start()
        self._outbox.put(payload)

    def _deliver(self) -> None:
        # One sender per job posting one update after another. The SDK's progress_update starts a thread per
        # update, and those race: clients saw "preprocess" arrive before "queued".
        async def post_in_order() -> None:
            async with AsyncClientSession() as session:
                while (payload := self._outbox.get()) is not None:
                    try:
                        # The SDK's send_result, with this job's URL: it adds the job id and &isStream.
                        await _handle_result(session, {"status": "IN_PROGRESS", "output": payload}, self.job,
                                             self._url, "Progress sent.")
                    except Exception as err:  # a lost update must not stop the ones after it, nor the job
                        log.warning("job %s: progress update not sent: %s", self.job["id"], err)

        asyncio.run(post_in_order())


class Worker:
    def __init__(self, supervisor: Supervisor, workflows: dict[str, Workflow], store: ResultStore | None,
                 settings: Settings, running: logs.RunningJobs):
        self.supervisor = supervisor
        self.running = running  # names the job on ComfyUI's log lines
        self.models = model_links(settings, workflows, model_links_dir(settings))
        self._cancels: dict[str, threading.Event] = {}  # job id -> set when RunPod cancels it
        self._crashes = 0  # jobs in a row that failed because ComfyUI crashed or would not restart
        self._crashes_lock = threading.Lock()
        self.workflows = workflows
        self.schema = JobSchema(workflows)
        self.store = store
        self.settings = settings
        self.events = EventSink(store)
        self.gpu: str | None = None  # ComfyUI's device, named in each job's event
        # The result cache keys on the sha256 of every model a job loads; read once, used only where there is a store.
        self.pinned = pinned_hashes() if store is not None else {}
        # A worker whose ComfyUI loads the tiny demo model class runs the demo models, and says so in every job.
        self.demo = TINY_PLUGIN.resolve() in {Path(p).resolve() for p in supervisor.process.plugins}
        if self.demo:
            log.warning("TINY-MODEL DEMO: this worker runs random tiny models; every job says so (%s)", DEMO_MODELS)

    @classmethod
    def from_settings(cls, settings: Settings) -> Worker:
        store = ResultStore(settings.storage) if settings.storage else None
        running = logs.RunningJobs()
        return cls(Supervisor.from_settings(settings, running.comfy_line), load_workflows(), store, settings, running)

    def boot(self) -> None:
        """Raises BootRefused (no GPU, a required model missing) before ComfyUI starts, ComfyBootError after."""
        check_device(self.settings)
        check_models(self.models, self.workflows)
        self.models.write_config(model_paths_config(self.settings))
        self.supervisor.ready()
        self.gpu = self.supervisor.device_name()
        self.check_nodes()
        if self.settings.warmup:
            self.warm_up()

    def check_nodes(self) -> None:
        """Say at boot, not at the first job, when a workflow needs a node this ComfyUI lacks (its jobs will fail
        with COMFY_VALIDATION). The worker stays up: other workflow versions may still run."""
        loaded = self.supervisor.client.node_types()
        for version, workflow in self.workflows.items():
            if missing := sorted(workflow.node_types - loaded):
                log.error("workflow %s cannot run: ComfyUI has no node %s; a custom node pack is not installed or "
                          "failed to import (see ComfyUI's start-up log above)", version, ", ".join(missing))

    def warm_up(self) -> None:
        """Run the latest workflow once on a plain generated picture at its smallest size and fewest steps."""
        workflow = latest(self.workflows)
        params = {name: workflow.params[name]["minimum"] for name in ("size", "steps")
                  if "minimum" in workflow.params.get(name, {})}
        started = time.monotonic()
        try:
            prompt = workflow.prompt(_warmup_image(), params, installed=self._installed(workflow),
                                     overrides={FACE_CROP_CLASS: {"on_no_face": "center_crop"}})
            for warning in prompt.warnings:
                log.warning("warm-up: %s: %s", warning.code, warning.message)
            self._execute(workflow, prompt.graph, started + self.settings.job_timeout)
            log.info("warm-up finished in %.1f s", time.monotonic() - started)
        except CodedError as err:  # a failed warm-up is worth a log line, not a dead worker
            log.warning("warm-up failed: %s", err)

    def run(self, job: dict) -> dict:
        """The handler's body: never raises, so one bad job never takes the worker down."""
        started = time.monotonic()
        job_id = str(job.get("id", "?"))
        request: JobRequest | None = None
        result: dict | None = None
        code: str | None = None
        self.running.add(job_id)
        self._cancels[job_id] = threading.Event()
        try:
            request = self.schema.parse(job.get("input"))
            result = self._run(job, request, started)
            return result
        except CodedError as err:  # the pack's (a refused photo) and the driver's alike
            code = err.code
            return self._count_crashes(failure(err), code)
        except Exception:
            log.exception("job %s: unexpected worker error", job_id)
            code = COMFY_EXECUTION
            return failure(WorkerError(code, "unexpected worker error; see the worker log"))
        finally:
            if code is None:
                self._count_crashes({}, None)
            self.running.remove(job_id)
            self._cancels.pop(job_id, None)
            self.supervisor.process.clear_io_dirs()
            self.events.emit(job_event(
                job_id, workflow_version=request.workflow.version if request else None,
                style=request.style if request else None,
                size=request.workflow.resolve(request.params, request.style, request.speed).get("size")
                if request else None,
                timings=result["timings"] if result else {"total": time.monotonic() - started},
                cached=bool(result and result["cached"]), error_code=code, gpu=self.gpu))

    def _run(self, job: dict, request: JobRequest, started: float) -> dict:
        if request.return_mode != "base64" and self.store is None:
            raise WorkerError(INVALID_INPUT, f"return={request.return_mode!r} needs storage, which this endpoint "
                                             "does not have configured (STORAGE_BUCKET); use return='base64'")
        timeout = min(request.timeout or self.settings.job_timeout, self.settings.job_timeout)
        with Progress(job, self.settings.progress_url is not None, request.progress_token) as progress:
            workflow = request.workflow
            prompt = workflow.prompt(request.image, request.params, request.style, request.speed,
                                     self._installed(workflow))
            warnings = [*prompt.warnings, *self._demo_warnings()]
            cache_key = self._cache_key(request, prompt, warnings)
            hit = self._cache_get(cache_key)
            if hit is not None:
                image = {"base64": base64.b64encode(hit.data).decode("ascii"), "format": hit.metadata["format"],
                         "width": int(hit.metadata["width"]), "height": int(hit.metadata["height"])}
                timings = {"queue": 0.0, "preprocess": 0.0, "sampling": 0.0, "encode": 0.0}
                # Kept with the entry by _store; an entry written before faces were reported has none.
                face = FaceReport.from_ui(hit.metadata["face"]) if "face" in hit.metadata else None
            else:
                outcome = self._execute(workflow, prompt.graph, started + timeout, progress,
                                        self._cancels.get(str(job.get("id", "?"))))
                image, timings = outcome.output["ethmumbai_images"][0], outcome.timings
                face = workflow.face_report(outcome.reports)
            result = {
                "image": image["base64"], "format": image["format"], "width": image["width"], "height": image["height"],
                "seed": prompt.params.get("seed"), "workflow_version": workflow.version,
                "timings": timings, "cached": hit is not None,
            }
            if face is not None:  # the faces in the photo, the one used, and e.g. LOW_RESOLUTION_FACE
                result |= {"faces_found": face.faces_found, "face_box": face.face_box}
                warnings.extend(face.warnings)
            result["warnings"] = [warning.as_output() for warning in warnings]
            if self.store is not None:
                progress({"stage": "upload"})
                self._store(job, request, result, cache_key if hit is None else None, face)
            if request.return_mode == "url" and "url" in result:
                del result["image"]
            result["timings"]["total"] = round(time.monotonic() - started, 3)
            return self._fit(result)

    def _installed(self, workflow: Workflow) -> dict[str, set[str]]:
        """The files ComfyUI has in the folders of the workflow's optional models (asked per job: a deployer may add
        the LoRA to a running worker's volume)."""
        # A model file gone since boot (or added): relink first, so ComfyUI lists what is really there.
        self.models.refresh()
        try:
            self.supervisor.ready()
            return {folder: self.supervisor.client.model_files(folder) for folder in workflow.optional_folders()}
        except (ComfyBootError, ComfyUnavailable) as err:
            raise WorkerError(COMFY_CRASHED, f"ComfyUI could not be asked for its models: {err}") from None

    def _demo_warnings(self) -> list[JobWarning]:
        if not self.demo:
            return []
        return [JobWarning(DEMO_MODELS, "this worker runs the tiny random demo models: the image is texture, not an "
                                        "avatar (python scripts/fetch_models.py fetches the real ones)")]

    def _execute(self, workflow: Workflow, prompt: dict, deadline: float, on_progress=lambda _: None,
                 cancelled: threading.Event | None = None):
        try:
            generation = self.supervisor.ready()
        except ComfyBootError as err:
            raise WorkerError(COMFY_CRASHED, f"ComfyUI could not be (re)started: {err}") from None
        run = PromptRun(self.supervisor.client, prompt, workflow.output_node, workflow.sampler_nodes,
                        alive=lambda: self.supervisor.alive(generation), on_progress=on_progress)
        try:
            return run.execute(deadline, cancelled)
        except PromptRejected as rejected:
            raise rejection_error(rejected.error, rejected.node_errors,
                                  workflow.missing_models(rejected.node_errors)) from None
        except WorkerError as err:
            if err.code == COMFY_CRASHED:
                self.supervisor.recover_in_background(generation)
            elif err.code == GPU_OUT_OF_MEMORY:
                self._free_after_oom()
            raise

    def _free_after_oom(self) -> None:
        """ComfyUI unloads its models after an OOM; also drop its caches so the next job starts with free memory."""
        try:
            self.supervisor.client.free()
            log.warning("freed ComfyUI's memory after an out-of-memory error")
        except ComfyUnavailable as err:
            log.warning("could not free ComfyUI's memory after an out-of-memory error: %s", err)

    # ---- recovery

    def cancel(self, job_id: str) -> None:
        """RunPod cancelled the job (or its execution timeout passed): stop its prompt; the job's thread ends."""
        if (event := self._cancels.get(job_id)) is not None:
            log.info("job %s cancelled: stopping its prompt", job_id)
            event.set()

    def _count_crashes(self, output: dict, code: str | None) -> dict:
        """Count jobs in a row lost to ComfyUI; past the limit, ask RunPod to replace this worker (refresh_worker)."""
        with self._crashes_lock:
            if code is None:
                self._crashes = 0
            elif code == COMFY_CRASHED:
                self._crashes += 1
                if self._crashes >= self.settings.refresh_after_failures:
                    log.error("ComfyUI failed %d jobs in a row: asking RunPod to replace this worker", self._crashes)
                    output["refresh_worker"] = True
        return output

    # ---- storage (only with STORAGE_BUCKET set; see docs/ARCHITECTURE.md "Handler flow with storage")

    def _cache_key(self, request: JobRequest, prompt: Prompt, warnings: list[JobWarning]) -> str | None:
        """The result cache's key from the models this prompt loads; None (and a CACHE_DISABLED warning) when one of
        them has no pinned sha256, since a changed file would then serve stale results."""
        if self.store is None:
            return None
        hashes = {name: self.pinned.get(name) for name in prompt.models}
        if unpinned := sorted(name for name, digest in hashes.items() if digest is None):
            warnings.append(JobWarning(CACHE_DISABLED, f"no sha256 is pinned in the models manifest for "
                                                       f"{', '.join(unpinned)}: this result is not cached"))
            return None
        params = {**prompt.params, "graph": prompt.fingerprint}  # presets' graph edits change pixels too
        # A refused image raises the pack's coded error here: the job fails now, without queueing a prompt.
        return self.store.cache_key(request.image, params, request.workflow.version, hashes)

    def _cache_get(self, key: str | None) -> StoredObject | None:
        if key is None:
            return None
        try:
            return self.store.cache_get(key)
        except StorageError as err:
            log.warning("cache lookup failed: %s", err)
            return None

    def _store(self, job: dict, request: JobRequest, result: dict, cache_key: str | None,
               face: FaceReport | None) -> None:
        """Upload the result (history), fill the cache on a miss (with the face report, so a hit answers alike),
        add ``url``; storage failures are reported, not fatal."""
        metadata = {k: result[k] for k in ("width", "height", "seed", "workflow_version")}
        try:
            stored = self.store.put_result(base64.b64decode(result["image"]), str(job.get("id")), request.user,
                                           result["format"], metadata)
            if cache_key is not None:
                self.store.cache_put(cache_key, stored, {"face": face.as_output()} if face is not None else None)
        except StorageError as err:
            result["storage_error"] = {"code": STORAGE_ERROR, "message": str(err)}
            return
        if request.return_mode in ("url", "both") or self._too_large(result):
            result["url"] = stored.url

    # ---- payload size

    def _too_large(self, result: dict) -> bool:
        return len(json.dumps(result)) > self.settings.max_result_bytes

    def _fit(self, result: dict) -> dict:
        """Drop the inline image when it would exceed the payload limit and a URL carries it instead."""
        if not self._too_large(result):
            return result
        if "url" in result:
            result.pop("image", None)
            return result
        raise WorkerError(OUTPUT_TOO_LARGE, f"the result is over the {self.settings.max_result_bytes}-byte payload "
                                            "limit; configure storage (STORAGE_BUCKET) to get a URL instead")


def failure(err: CodedError) -> dict:
    """The handler's return value for a failed job: ``{"error": "<JSON of {code, message}>"}``. The runpod SDK only
    accepts a string there (a dict makes its local API answer HTTP 500 and the platform report the job COMPLETED
    with no output), so the ``{code, message}`` object travels JSON-encoded."""
    return {"error": json.dumps({"code": err.code, "message": clean_message(err.message)})}


def _warmup_image() -> str:
    """A 256x256 PNG gradient (no face: the warm-up switches the face crop to center_crop)."""
    import io

    import numpy as np
    from PIL import Image

    ramp = np.linspace(0, 255, 256, dtype=np.uint8)
    pixels = np.stack([np.tile(ramp, (256, 1)), np.tile(ramp[:, None], (1, 256)), np.full((256, 256), 128, np.uint8)],
                      axis=-1)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def make_handler(worker: Worker) -> Callable[[dict], Awaitable[dict]]:
    """The coroutine RunPod's SDK calls per job, serving ``worker`` (also what benchmarks/gpu/worker_phase.py calls)."""

    async def handler(job: dict) -> dict:
        """Async so the SDK's local API can run several jobs at once; ComfyUI queues their prompts. RunPod's cancel
        and execution timeout cancel this coroutine: the job's prompt is stopped too, not left running."""
        _keep_payloads_out_of_logs()
        try:
            return await asyncio.to_thread(worker.run, job)
        except asyncio.CancelledError:
            worker.cancel(str(job.get("id")))
            raise

    return handler


def _keep_payloads_out_of_logs() -> None:
    """``--rp_log_level DEBUG`` would print outputs (base64 images) to the log; privacy wins."""
    logger = RunPodLogger()
    if logger.level in ("TRACE", "DEBUG"):
        logger.level = "INFO"


def main() -> None:
    try:
        settings = Settings.from_env()
    except (SettingsError, StorageError) as err:
        raise SystemExit(f"worker settings: {err}") from None
    logs.configure(settings.log_level)
    worker = Worker.from_settings(settings)
    # SIGTERM (docker stop, Ctrl-C of run_stack) must unwind through `finally`, or ComfyUI outlives the worker.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        worker.boot()
        runpod.serverless.start({"handler": make_handler(worker)})
    except (BootRefused, ComfyBootError) as err:
        log.error("boot failed: %s", err)
        raise SystemExit(1) from None
    finally:
        worker.supervisor.stop()


if __name__ == "__main__":
    main()
