"""The worker as deployed: ``worker/start.sh`` (which runs ``python -m worker.handler``) with ``--rp_serve_api``,
i.e. the runpod SDK's real local API server, booting its own real ComfyUI. Plus a collector for the SDK's
progress POSTs, and ``RunPodQueue``: the platform side of the SDK's production loop, for what the local API
cannot show (RunPod's cancel and timeout signals, a result's ``stopPod``).
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import requests

from avatar_driver.paths import REPO_ROOT
from avatar_driver.process import free_port


class ProgressCollector:
    """Receives what ``runpod.serverless.progress_update`` POSTs to ``RUNPOD_WEBHOOK_POST_OUTPUT``."""

    def __init__(self, slow_first_post_s: float = 0.0):
        self.posts: list[tuple[str, dict]] = []  # (job id, {"status", "output"})
        collector = self
        slow = threading.Event()  # set once the first POST has been held back

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                if slow_first_post_s and not slow.is_set():
                    slow.set()
                    time.sleep(slow_first_post_s)  # a slow network for one request: later ones may overtake it
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                job_id = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                collector.posts.append((job_id, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url_template(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/progress/$ID?v=1"

    def for_job(self, job_id: str) -> list[dict]:
        return [post["output"] for jid, post in self.posts if jid == job_id]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class RunPodQueue:
    """RunPod's job queue as the SDK's production loop (``runpod.serverless.worker``, ``rp_scale.JobScaler``) talks
    to it: ``job-take`` hands out submitted jobs, ``job-stop`` says which running job to stop (what RunPod sends
    on a cancel or an execution timeout), ``job-done`` receives progress and results, ``stopPod`` included."""

    def __init__(self):
        self._jobs: queue.Queue = queue.Queue()
        self._stops: queue.Queue = queue.Queue()
        self.results: dict[str, dict] = {}  # job id -> the final body the SDK posted
        self.progress: list[tuple[str, dict]] = []
        self.polled = threading.Event()  # the worker asked for a job: it booted and is ready
        platform = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's naming)
                if self.path.startswith("/job-take/"):
                    platform.polled.set()
                    self._answer(platform._next(platform._jobs, lambda job: job))
                elif self.path.startswith("/job-stop/"):
                    self._answer(platform._next(platform._stops, lambda job_id: {"jobsToStop": [job_id]}))
                else:
                    self._answer(None)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
                job_id = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
                if body.get("status") == "IN_PROGRESS":
                    platform.progress.append((job_id, body))
                else:
                    platform.results[job_id] = body
                self._answer({})

            def _answer(self, body):
                self.send_response(204 if body is None else 200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                if body is not None:
                    self.wfile.write(json.dumps(body).encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @staticmethod
    def _next(source: queue.Queue, shape):
        """Long-poll like the platform: hold the request up to a second for something to hand out."""
        try:
            return shape(source.get(timeout=1.0))
        except queue.Empty:
            return None

    def env(self) -> dict[str, str]:
        base = f"http://127.0.0.1:{self.server.server_port}"
        return {"RUNPOD_WEBHOOK_GET_JOB": f"{base}/job-take/$ID?gpu=test",
                "RUNPOD_WEBHOOK_POST_OUTPUT": f"{base}/job-done/$RUNPOD_POD_ID/$ID?gpu=test",
                "RUNPOD_POD_ID": "test-worker",
                # The SDK's fitness checks want a GPU host with internet; the worker's own checks still run.
                "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true", "RUNPOD_SKIP_GPU_CHECK": "true"}

    def submit(self, job_input: dict) -> str:
        job_id = f"job-{uuid.uuid4()}"
        self._jobs.put({"id": job_id, "input": job_input})
        return job_id

    def stop(self, job_id: str) -> None:
        self._stops.put(job_id)

    def wait_result(self, job_id: str, timeout: float = 300) -> dict:
        deadline = time.monotonic() + timeout
        while job_id not in self.results:
            assert time.monotonic() < deadline, f"no result for {job_id} within {timeout} s"
            time.sleep(0.1)
        return self.results[job_id]

    def shutdown(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class WorkerServer:
    proc: subprocess.Popen
    port: int
    comfy_port: int
    workdir: Path
    log_path: Path
    progress: ProgressCollector | None = None
    platform: RunPodQueue | None = None
    _log: object = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def comfy_url(self) -> str:
        return f"http://127.0.0.1:{self.comfy_port}"

    def runsync(self, job_input: dict, timeout: float = 300) -> dict:
        resp = requests.post(f"{self.url}/runsync", json={"input": job_input}, timeout=timeout)
        assert resp.status_code == 200, resp.text[:500]
        return resp.json()

    def succeed(self, job_input: dict) -> dict:
        """Run a job that must succeed; return its output."""
        body = self.runsync(job_input)
        assert body["status"] == "COMPLETED", body.get("error")
        return body["output"]

    def fail(self, job_input: dict) -> tuple[str, str]:
        """Run a job that must fail; return its (code, message)."""
        body = self.runsync(job_input)
        assert body["status"] == "FAILED", f"expected a failure, got {body['status']}"
        error = json.loads(body["error"])
        assert set(error) == {"code", "message"}
        return error["code"], error["message"]

    def comfy_process(self) -> psutil.Process:
        children = psutil.Process(self.proc.pid).children(recursive=True)
        return next(c for c in children if f"--port {self.comfy_port}" in " ".join(c.cmdline()))

    def comfy_queue(self) -> tuple[list, list]:
        body = requests.get(f"{self.comfy_url}/queue", timeout=10).json()
        return body["queue_running"], body["queue_pending"]

    def comfy_history(self) -> dict:
        return requests.get(f"{self.comfy_url}/history", timeout=10).json()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        # SIGINT: the SDK exits cleanly and the handler's finally stops its ComfyUI.
        children = psutil.Process(self.proc.pid).children(recursive=True) if self.proc.poll() is None else []
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for child in children:  # a ComfyUI left behind by a hard exit
            if child.is_running():
                child.kill()
        if self.progress is not None:
            self.progress.stop()
        if self.platform is not None:
            self.platform.shutdown()
        self._log.close()


def start_worker(workdir: Path, env: dict[str, str], boot_timeout: float = 300.0,
                 collect_progress: bool = False, platform: RunPodQueue | None = None) -> WorkerServer:
    """Boot the worker (and its ComfyUI) with ``env`` on top of ours; wait until it is ready: its local API answers,
    or, with ``platform``, it serves that queue as on RunPod (``WorkerServer.port`` is then unused)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port, comfy_port = free_port(), free_port()
    progress = ProgressCollector() if collect_progress else None
    full_env = {**os.environ, "PYTHON": sys.executable, "COMFY_WORKDIR": str(workdir / "comfy"),
                "COMFY_PORT": str(comfy_port), **env, **(platform.env() if platform else {})}
    if progress is not None:
        full_env["RUNPOD_WEBHOOK_POST_OUTPUT"] = progress.url_template
    log_path = workdir / "worker.log"
    log = log_path.open("wb")
    api = [] if platform else ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]
    proc = subprocess.Popen(["bash", "worker/start.sh", *api], cwd=REPO_ROOT, env=full_env, stdout=log,
                            stderr=subprocess.STDOUT)
    server = WorkerServer(proc, port, comfy_port, workdir / "comfy", log_path, progress, platform, log)
    deadline = time.monotonic() + boot_timeout
    while True:
        if proc.poll() is not None:
            server.stop()
            raise RuntimeError(f"worker exited with {proc.returncode}:\n{server.log()[-5000:]}")
        try:
            if platform.polled.is_set() if platform else requests.get(f"{server.url}/docs", timeout=2).ok:
                return server
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"worker did not answer within {boot_timeout} s:\n{server.log()[-5000:]}")
        time.sleep(0.5)
