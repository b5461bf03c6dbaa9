"""Against RunPod's deployed API shape (`/v2/<endpoint>/run`, `GET /status/<id>`, `POST /cancel/<id>`), which cannot run here: a
loopback stand-in answers with the documented bodies, and the routes' mapping of each to the page's job view
is checked. (The page in the browser runs against the real local worker API in test_e2e.py; here it sees only
what a RunPod answer can carry: warnings, the demo notice.)"""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from PIL import Image
from playwright.sync_api import expect

from tests.frontend.conftest import ARTIFACTS_DIR, FAKE_API_KEY, next_server, owner


class RunPodStandIn(ThreadingHTTPServer):
    """Serves `/v2/ep/run`, `/v2/ep/status/<id>`, `/v2/ep/cancel/<id>` and `/v2/ep/health` (`health`); `statuses[id]`
    is the body to answer for that job. Cancel turns a queued or running job CANCELLED and answers `{"id", "status"}` (no output)."""

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.statuses: dict[str, dict] = {}
        self.health: dict = {"jobs": {}, "workers": {"idle": 0, "initializing": 0, "ready": 0, "running": 0}}
        self.seen: list[tuple[str, str, str | None, bytes]] = []  # method, path, Authorization, body

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v2/ep"


class _Handler(BaseHTTPRequestHandler):
    server: RunPodStandIn

    def _answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self, method: str) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((method, self.path, self.headers.get("Authorization"), body))
        if self.headers.get("Authorization") != f"Bearer {FAKE_API_KEY}":
            return self._answer(401, {"error": "Unauthorized"})
        if method == "POST" and self.path == "/v2/ep/run":
            return self._answer(200, {"id": "job-1", "status": "IN_QUEUE"})
        if method == "GET" and self.path == "/v2/ep/health":
            return self._answer(200, self.server.health)
        if method == "POST" and self.path.startswith("/v2/ep/cancel/"):
            return self._cancel(self.path.removeprefix("/v2/ep/cancel/"))
        job = self.path.removeprefix("/v2/ep/status/")
        if method == "GET" and job in self.server.statuses:
            return self._answer(200, {"id": job, **self.server.statuses[job]})
        self._answer(404, {"error": "not found"})

    def _cancel(self, job: str) -> None:
        status = self.server.statuses.get(job)
        if status is None:
            return self._answer(404, {"error": "not found"})
        if status["status"] in ("IN_QUEUE", "IN_PROGRESS"):
            status = self.server.statuses[job] = {"status": "CANCELLED"}
        self._answer(200, {"id": job, "status": status["status"]})

    def do_GET(self):  # noqa: N802
        self._handle("GET")

    def do_POST(self):  # noqa: N802
        self._handle("POST")

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def runpod():
    server = RunPodStandIn()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def cloud_app(frontend_build, runpod, tmp_path_factory):
    log = tmp_path_factory.mktemp("next-cloud") / "next.log"
    with next_server(runpod.endpoint_url, log, job_params={"background": "ethmumbai_sunset.png"}) as url:
        yield url, log


def _png_base64() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 214, 255)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_submit_sends_the_input_and_site_params_with_the_key(cloud_app, runpod):
    app, _ = cloud_app
    image = _png_base64()
    response = requests.post(f"{app}/api/jobs", json={"image": image}, timeout=30)
    assert response.status_code == 202 and response.json() == {"id": "job-1", "token": owner("job-1")["X-Job-Token"]}
    method, path, auth, body = runpod.seen[-1]
    assert (method, path, auth) == ("POST", "/v2/ep/run", f"Bearer {FAKE_API_KEY}")
    assert json.loads(body) == {"input": {"image": image, "background": "ethmumbai_sunset.png"}}  # + site params
    assert FAKE_API_KEY not in response.text
    assert requests.post(f"{app}/api/jobs", json={"image": image, "style": "comic"}, timeout=30).status_code == 202
    assert json.loads(runpod.seen[-1][3])["input"]["style"] == "comic"


def test_the_visitors_choices_go_over_the_site_params(cloud_app, runpod):
    app, _ = cloud_app
    image = _png_base64()
    response = requests.post(f"{app}/api/jobs", json={"image": image, "background": "solid", "seed": 2**53 - 1},
                             timeout=30)
    assert response.status_code == 202
    assert json.loads(runpod.seen[-1][3]) == {"input": {"image": image, "background": "solid", "seed": 2**53 - 1}}


@pytest.mark.parametrize("choice", [
    {"background": "beach.png"}, {"background": 3}, {"seed": -1}, {"seed": 2**53}, {"seed": 1.5}, {"seed": "7"},
    {"style": "no-such-style"}, {"steps": 60},
])
def test_choices_outside_the_contract_are_refused(cloud_app, runpod, choice):
    app, _ = cloud_app
    seen = len(runpod.seen)
    response = requests.post(f"{app}/api/jobs", json={"image": _png_base64(), **choice}, timeout=30)
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_INPUT"
    assert len(runpod.seen) == seen  # never reached the endpoint


def test_another_visitors_job_is_not_found(cloud_app, runpod):
    """Reading or cancelling a job needs the token its creator got; without it (or with another job's) it is a 404
    that never reaches RunPod, the same answer as for a job that does not exist."""
    app, _ = cloud_app
    runpod.statuses["job-5"] = {"status": "COMPLETED", "output": {"image": "iVBORw0KGgo=", "format": "png",
                                                                  "width": 8, "height": 8, "seed": 1}}
    seen = len(runpod.seen)
    for headers in ({}, owner("job-6"), {"X-Job-Token": "forged"}):
        for method in (requests.get, requests.delete):
            response = method(f"{app}/api/jobs/job-5", headers=headers, timeout=30)
            assert response.status_code == 404 and response.json()["error"]["code"] == "JOB_NOT_FOUND"
    assert len(runpod.seen) == seen
    assert runpod.statuses["job-5"]["status"] == "COMPLETED"
    assert requests.get(f"{app}/api/jobs/job-5", headers=owner("job-5"), timeout=30).json()["state"] == "completed"


def test_a_cross_origin_post_is_refused(cloud_app, runpod):
    """Another site's page posting to the API (a text/plain form-like fetch needs no preflight) starts no job."""
    app, _ = cloud_app
    seen = len(runpod.seen)
    body = json.dumps({"image": _png_base64()})
    for origin in ("https://evil.example", "null", "http://127.0.0.1.evil.example"):
        response = requests.post(f"{app}/api/jobs", data=body, timeout=30,
                                 headers={"Origin": origin, "Content-Type": "text/plain"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "FORBIDDEN_ORIGIN"
    assert len(runpod.seen) == seen
    same_site = requests.post(f"{app}/api/jobs", data=body, timeout=30,
                              headers={"Origin": app, "Content-Type": "application/json"})
    assert same_site.status_code == 202


@pytest.mark.parametrize(("workers", "health"), [
    ({"idle": 0, "initializing": 1, "ready": 0, "running": 0}, {"state": "warming", "queues": True}),
    ({"idle": 0, "initializing": 0, "ready": 0, "running": 0}, {"state": "warming", "queues": True}),
    ({"idle": 1, "initializing": 0, "ready": 0, "running": 0}, {"state": "ready", "queues": True}),
    ({"idle": 0, "initializing": 0, "ready": 0, "running": 2}, {"state": "ready", "queues": True}),
])
def test_health_reads_runpods_worker_counts(cloud_app, runpod, workers, health):
    app, _ = cloud_app
    runpod.health = {"jobs": {"inQueue": 0}, "workers": workers}
    response = requests.get(f"{app}/api/health", timeout=30)
    assert response.status_code == 200 and response.json() == health
    assert runpod.seen[-1][:3] == ("GET", "/v2/ep/health", f"Bearer {FAKE_API_KEY}")


SDK_EXCEPTION = json.dumps({"error_type": "<class 'KeyError'>", "error_message": "'image'",
                            "error_traceback": "Traceback (most recent call last): ...", "hostname": "h"})


@pytest.mark.parametrize(("status", "view"), [
    ({"status": "IN_QUEUE"}, {"state": "queued"}),
    ({"status": "IN_PROGRESS"}, {"state": "running"}),
    ({"status": "IN_PROGRESS", "output": {"stage": "sampling", "step": 3, "steps": 20}},
     {"state": "running", "progress": {"stage": "sampling", "step": 3, "steps": 20}}),
    ({"status": "IN_PROGRESS", "output": {"stage": "encode"}}, {"state": "running", "progress": {"stage": "encode"}}),
    ({"status": "COMPLETED", "output": {"image": "iVBORw0KGgo=", "format": "png", "width": 1024, "height": 1024,
                                        "seed": 1, "workflow_version": "v1", "cached": False}},
     {"state": "completed", "result": {"image": "iVBORw0KGgo=", "format": "png", "width": 1024, "height": 1024,
                                       "seed": 1, "workflow_version": "v1"}}),
    # the worker's warnings come through in their {code, message} shape (the page words them, or shows its demo
    # notice); one without a proper code is dropped
    ({"status": "COMPLETED", "output": {"image": "iVBORw0KGgo=", "format": "png", "width": 8, "height": 8, "seed": 3,
                                        "warnings": [{"code": "DEMO_MODELS", "message": "tiny random models"},
                                                     {"code": "bad code!", "message": ""},
                                                     {"code": "LOW_RESOLUTION_FACE", "message": "face is 80 px"}]}},
     {"state": "completed", "result": {"image": "iVBORw0KGgo=", "format": "png", "width": 8, "height": 8, "seed": 3,
                                       "warnings": [{"code": "DEMO_MODELS", "message": "tiny random models"},
                                                    {"code": "LOW_RESOLUTION_FACE", "message": "face is 80 px"}]}}),
    # a seed past 2**53 would change in a JS number: left out rather than wrong
    ({"status": "COMPLETED", "output": {"image": "iVBORw0KGgo=", "format": "png", "width": 8, "height": 8,
                                        "seed": 2**64 - 1}},
     {"state": "completed", "result": {"image": "iVBORw0KGgo=", "format": "png", "width": 8, "height": 8}}),
    # avatar_driver/errors.py: the {code, message} object travels JSON-encoded in the job's error
    ({"status": "FAILED", "error": json.dumps({"code": "NO_FACE_DETECTED", "message": "no face"})},
     {"state": "failed", "error": {"code": "NO_FACE_DETECTED", "message": "no face"}}),
    ({"status": "FAILED", "error": "[MULTIPLE_FACES] 2 faces"},
     {"state": "failed", "error": {"code": "MULTIPLE_FACES", "message": "2 faces"}}),
    # an exception that escaped the handler: its message, never the traceback
    ({"status": "FAILED", "error": SDK_EXCEPTION},
     {"state": "failed", "error": {"code": "WORKER_EXCEPTION", "message": "'image'"}}),
    ({"status": "TIMED_OUT"}, {"state": "failed", "error": {"code": "TIMEOUT", "message": "The job timed out"}}),
    ({"status": "COMPLETED", "output": {"cached": True}},
     {"state": "failed", "error": {"code": "NO_RESULT", "message": "The worker returned no image"}}),
])
def test_status_maps_to_the_page_view(cloud_app, runpod, status, view):
    app, _ = cloud_app
    runpod.statuses["job-2"] = status
    response = requests.get(f"{app}/api/jobs/job-2", headers=owner("job-2"), timeout=30)
    assert response.status_code == 200
    assert response.json() == view
    assert runpod.seen[-1][:3] == ("GET", "/v2/ep/status/job-2", f"Bearer {FAKE_API_KEY}")


CANCELLED = {"state": "failed", "error": {"code": "CANCELLED", "message": "The job was cancelled"}}


def test_cancel_reaches_runpod_with_the_key(cloud_app, runpod):
    app, _ = cloud_app
    runpod.statuses["job-3"] = {"status": "IN_PROGRESS", "output": {"stage": "sampling", "step": 3, "steps": 20}}
    response = requests.delete(f"{app}/api/jobs/job-3", headers=owner("job-3"), timeout=30)
    assert response.status_code == 200 and response.json() == CANCELLED
    assert runpod.seen[-1][:3] == ("POST", "/v2/ep/cancel/job-3", f"Bearer {FAKE_API_KEY}")
    assert FAKE_API_KEY not in response.text
    poll = requests.get(f"{app}/api/jobs/job-3", headers=owner("job-3"), timeout=30)
    assert poll.json() == CANCELLED  # the same mapping as a poll


def test_cancelling_a_finished_job_answers_its_final_state(cloud_app, runpod):
    """RunPod's cancel answer carries no output: the final state comes from /status, unchanged and not an error."""
    app, _ = cloud_app
    runpod.statuses["job-4"] = {"status": "COMPLETED", "output": {"image": "iVBORw0KGgo=", "format": "png",
                                                                  "width": 8, "height": 8, "seed": 1}}
    response = requests.delete(f"{app}/api/jobs/job-4", headers=owner("job-4"), timeout=30)
    assert response.status_code == 200
    assert response.json() == {"state": "completed", "result": {"image": "iVBORw0KGgo=", "format": "png",
                                                                "width": 8, "height": 8, "seed": 1}}
    assert [request[:2] for request in runpod.seen[-2:]] == [("POST", "/v2/ep/cancel/job-4"),
                                                              ("GET", "/v2/ep/status/job-4")]


@pytest.mark.parametrize(("job_id", "status", "code"), [
    ("not..an-id", 400, "INVALID_INPUT"), ("a" * 129, 400, "INVALID_INPUT"), ("unknown-job", 404, "JOB_NOT_FOUND"),
])
def test_cancel_checks_the_job_id(cloud_app, runpod, job_id, status, code):
    app, _ = cloud_app
    seen = len(runpod.seen)
    response = requests.delete(f"{app}/api/jobs/{job_id}", headers=owner(job_id), timeout=30)
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert response.headers["Cache-Control"] == "no-store"
    # A malformed id never reaches RunPod; a well-formed unknown one is RunPod's 404.
    assert [path for _, path, _, _ in runpod.seen[seen:]] == ([] if status == 400 else [f"/v2/ep/cancel/{job_id}"])


def test_rejected_key_is_a_coded_error_and_never_logged(frontend_build, runpod, tmp_path):
    log = tmp_path / "next.log"
    with next_server(runpod.endpoint_url, log, api_key="rpa_WRONG_KEY_0451") as app:
        responses = [requests.get(f"{app}/api/jobs/job-2", headers=owner("job-2"), timeout=30),
                     requests.delete(f"{app}/api/jobs/job-2", headers=owner("job-2"), timeout=30)]
        health = requests.get(f"{app}/api/health", timeout=30)
    for response in responses:
        assert response.status_code == 502
        assert response.json()["error"]["code"] == "ENDPOINT_UNAVAILABLE"
    assert health.json() == {"state": "unavailable", "queues": True}
    text = log.read_text()
    assert "HTTP 401 to GET status" in text and "HTTP 401 to POST cancel" in text
    assert "rpa_WRONG_KEY_0451" not in text


@pytest.mark.browser
def test_the_page_words_the_workers_warnings_and_says_demo(cloud_app, runpod, browser, tmp_path):
    """Phone: a finished job whose worker ran the tiny demo models and saw a small face. The page says "demo" (and
    keeps saying it for the visit), words the face warning, shows nothing of the operator-only one, and the
    downloads are on screen."""
    app, _ = cloud_app
    avatar = io.BytesIO()
    Image.new("RGB", (64, 64), (247, 147, 30)).save(avatar, "PNG")
    runpod.statuses["job-1"] = {"status": "COMPLETED", "output": {
        "image": base64.b64encode(avatar.getvalue()).decode(), "format": "png", "width": 64, "height": 64, "seed": 5,
        "warnings": [{"code": "DEMO_MODELS", "message": "tiny random models"},
                     {"code": "LOW_RESOLUTION_FACE", "message": "the face is 80 px"},
                     {"code": "CACHE_DISABLED", "message": "no sha256 pinned"}]}}
    page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                               device_scale_factor=2).new_page()
    page.goto(app)
    expect(page.get_by_role("button", name="Choose a photo")).to_be_enabled()
    photo = tmp_path / "photo.jpg"
    Image.new("RGB", (64, 64), (0, 214, 255)).save(photo, "JPEG")
    page.get_by_test_id("photo-input").set_input_files(photo)
    page.get_by_test_id("avatar-result").wait_for()
    expect(page.get_by_test_id("demo-notice")).to_contain_text("tiny test models")
    expect(page.get_by_test_id("warnings")).to_have_text(
        "Your face is quite small in that photo, so the avatar may look soft. A closer or sharper photo gives a crisper "
        "result.")
    expect(page.get_by_role("link", name="Download PNG")).to_be_in_viewport(ratio=1)
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=ARTIFACTS_DIR / "11_demo_warnings_phone.png")
    page.reload()
    expect(page.get_by_test_id("demo-notice")).to_be_visible()  # the worker said so once; the page remembers
