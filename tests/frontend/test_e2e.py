"""End to end in real headless Chromium (Debian's): the built page served by `next start`, against the real local
worker stack (`python -m worker.handler --rp_serve_api`, real ComfyUI, tiny models). Screenshots go to
artifacts/frontend/."""

from __future__ import annotations

import base64
import io
import json
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError
from skimage import data as skdata

from avatar_driver.process import free_port
from tests.frontend.conftest import ARTIFACTS_DIR, FAKE_API_KEY, FRONTEND_DIR, next_server, owner
from tests.helpers.waiting import wait_until
from tools.images import scene
from tools.worker_server import WorkerServer, start_worker

pytestmark = pytest.mark.browser

JOB_TIMEOUT_MS = 300_000
# The smallest size the params file allows (2 shared CPU cores); enough steps that sampling spans several polls.
FAST_JOB = {"size": 256, "steps": 12, "seed": 7}
# What the page says for each worker stage (frontend/lib/messages.ts); seeing one proves progress came through.
WORKER_STAGE_LABELS = ("Warming up the avatar engine", "Finding your face", "Drawing your avatar",
                       "Adding the ETHMumbai backdrop", "Saving your avatar")
# Every text the progress line and step counter show, recorded in the page as it changes.
PROGRESS_RECORDER = """
window.__progress = [];
new MutationObserver(() => {
  const text = ['progress-label', 'progress-detail']
    .map((id) => document.querySelector(`[data-testid=${id}]`)?.textContent ?? '').join(' | ');
  if (text.trim() !== '|' && window.__progress.at(-1) !== text) window.__progress.push(text);
}).observe(document, { subtree: true, childList: true, characterData: true });
"""
DROP_FILE = """
async ([b64, name, selector]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const transfer = new DataTransfer();
  transfer.items.add(new File([bytes], name, { type: 'image/jpeg' }));
  const zone = document.querySelector(selector);
  for (const type of ['dragenter', 'dragover', 'drop']) {
    zone.dispatchEvent(new DragEvent(type, { dataTransfer: transfer, bubbles: true, cancelable: true }));
  }
}
"""
# "Your recent avatars" lives in IndexedDB (frontend/lib/client/history.ts: database, store, entry shape, limit).
HISTORY_LIMIT = 12
OPEN_HISTORY = """
const db = await new Promise((resolve, reject) => {
  const request = indexedDB.open('ethmumbai-avatar');
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});
const store = (mode) => db.transaction('avatars', mode).objectStore('avatars');
const done = (request) => new Promise((resolve, reject) => {
  request.onsuccess = () => resolve(request.result);
  request.onerror = () => reject(request.error);
});
"""
# Earlier avatars, one a minute, the oldest first: PNGs of `size` px and seeds 9000, 9001, ...
SEED_HISTORY = f"""
async ([b64, size, count]) => {{
  {OPEN_HISTORY}
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  for (let i = 0; i < count; i++) {{
    await done(store('readwrite').add({{ createdAt: Date.now() - (count - i) * 60000, width: size, height: size,
      png: new Blob([bytes], {{ type: 'image/png' }}), seed: 9000 + i, workflowVersion: 'v1' }}));
  }}
  db.close();
}}
"""
# What is stored, oldest first, without the PNG bytes (they cannot cross into Python as a Blob).
READ_HISTORY = f"""
async () => {{
  {OPEN_HISTORY}
  const entries = await done(store('readonly').getAll());
  db.close();
  return entries.map(({{ png, ...meta }}) => ({{ ...meta, type: png.type, bytes: png.size }}));
}}
"""


def _jpeg(pixels, path: Path) -> Path:
    Image.fromarray(pixels).save(path, "JPEG", quality=92)
    return path


@dataclass
class LocalStack:
    url: str  # the app's
    worker: WorkerServer


@pytest.fixture(scope="module")
def local_stack(frontend_build, worker_env, tmp_path_factory) -> Iterator[LocalStack]:
    """`next start` pointed at the worker's local API; the worker's SDK posts progress to the app's collector."""
    stack = tmp_path_factory.mktemp("stack")
    next_port = free_port()
    progress_url = f"http://127.0.0.1:{next_port}/api/local-progress/$ID?v=1"
    worker = start_worker(stack / "worker", {**worker_env, "RUNPOD_WEBHOOK_POST_OUTPUT": progress_url})
    try:
        with next_server(worker.url, stack / "next.log", port=next_port, job_params=FAST_JOB) as url:
            yield LocalStack(url, worker)
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def avatar_app(local_stack) -> str:
    return local_stack.url


@pytest.fixture(scope="module")
def artifacts() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


def _open(browser: Browser, app: str, init_script: str = "", **context) -> tuple[Page, list]:
    """A fresh page on the app, recording progress texts and every response the browser got."""
    page = browser.new_context(accept_downloads=True, **context).new_page()
    page.add_init_script(PROGRESS_RECORDER + init_script)
    responses = []
    page.on("response", lambda response: responses.append(response))
    # Every load asks whether the worker is up; wait for that answer, so that none lands after a later reload.
    with page.expect_response("**/api/health"):
        page.goto(app)
    _wait_for_hydration(page)
    return page, responses


def _wait_for_hydration(page: Page) -> None:
    # The chooser is disabled until React has hydrated the page: before that, nothing would react to input.
    expect(page.get_by_role("button", name="Choose a photo")).to_be_enabled()


def _reload(page: Page) -> None:
    with page.expect_response("**/api/health"):
        page.reload()
    _wait_for_hydration(page)


def _assert_no_key_reached_the_browser(page: Page, responses: list) -> None:
    assert FAKE_API_KEY not in page.content()
    bodies = [r for r in responses if r.request.resource_type in ("document", "script", "stylesheet", "fetch")]
    assert any(r.request.resource_type == "script" for r in bodies)
    for response in bodies:
        try:
            body = response.body()
        except PlaywrightError as err:
            raise AssertionError(f"the body of {response.request.method} {response.url} is gone: {err}") from None
        assert FAKE_API_KEY.encode() not in body, f"API key served in {response.url}"


def _focused_text(page: Page) -> str:
    return page.evaluate("document.activeElement?.textContent ?? ''").strip()


def _history_items(page: Page):
    return page.get_by_test_id("history").get_by_role("listitem")


def _history_labels(page: Page, action: str) -> list[str]:
    return page.get_by_role("region", name="Your recent avatars").get_by_role(
        "link" if action == "Download" else "button", name=re.compile(f"^{action} avatar made ")
    ).evaluate_all("els => els.map((el) => el.getAttribute('aria-label'))")


def _newest_thumb_size(page: Page) -> list[int]:
    thumb = _history_items(page).first.get_by_role("img")
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=thumb.element_handle())
    return thumb.evaluate("img => [img.naturalWidth, img.naturalHeight]")


def _focused_label(page: Page) -> str:
    return page.evaluate("document.activeElement?.getAttribute('aria-label') ?? ''")


def test_photo_becomes_a_downloadable_avatar(avatar_app, browser, artifacts, tmp_path):
    page, responses = _open(browser, avatar_app, viewport={"width": 1280, "height": 900})
    page.get_by_test_id("history-empty").wait_for()  # a first visit: history on, and empty
    page.screenshot(path=artifacts / "1_start_desktop.png", full_page=True)
    # A full history of older avatars (8 px PNGs): the one made below must push out the oldest.
    old_png = io.BytesIO()
    Image.new("RGB", (8, 8), (247, 147, 30)).save(old_png, "PNG")
    page.evaluate(SEED_HISTORY, [base64.b64encode(old_png.getvalue()).decode(), 8, HISTORY_LIMIT])
    responses.clear()  # a reload drops the first load's bodies; it fetches them all again
    _reload(page)
    expect(_history_items(page)).to_have_count(HISTORY_LIMIT)

    # Keyboard only: skip link, then the chooser button; Enter opens the file picker. (Waiting for the picker starts
    # before the first key: Playwright switches its interception on without waiting for the browser.)
    with page.expect_file_chooser() as chooser:
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert _focused_text(page) == "Choose a photo"
        page.keyboard.press("Enter")
    chooser.value.set_files(_jpeg(skdata.astronaut(), tmp_path / "astronaut.jpg"))

    step = page.get_by_test_id("progress-detail").filter(has_text=re.compile(r"Step \d+ of \d+"))
    step.wait_for(timeout=JOB_TIMEOUT_MS)
    page.screenshot(path=artifacts / "2_progress_desktop.png", full_page=True)

    result = page.get_by_test_id("avatar-result")
    result.wait_for(timeout=JOB_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('[data-testid=avatar-result]').complete")
    page.screenshot(path=artifacts / "3_result_desktop.png", full_page=True)

    seen = page.evaluate("window.__progress")
    assert any(text.startswith("Waiting for a free GPU") for text in seen), seen  # queued, before the worker
    assert any(text.startswith(WORKER_STAGE_LABELS) for text in seen), seen  # the worker's own progress
    steps = [tuple(map(int, m.groups())) for t in seen if (m := re.search(r"Step (\d+) of (\d+)", t))]
    assert steps, seen
    assert all(1 <= step <= total for step, total in steps) and steps == sorted(steps), steps

    assert _focused_text(page) == "Your ETHMumbai avatar"  # focus moved to the result
    # The worker runs the tiny demo models and says so (DEMO_MODELS): the page tells the visitor.
    expect(page.get_by_test_id("demo-notice")).to_contain_text("Demo mode")
    shown = page.evaluate("(img => [img.naturalWidth, img.naturalHeight])(document.querySelector('[data-testid=avatar-result]'))")
    assert shown[0] > 0 and shown[1] > 0

    with page.expect_download() as download:
        page.get_by_role("link", name="Download PNG").click()
    assert download.value.suggested_filename == "ethmumbai-avatar.png"
    png = Path(download.value.path()).read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert list(Image.open(io.BytesIO(png)).size) == shown

    _assert_no_key_reached_the_browser(page, responses)
    _check_history(page, artifacts, png, shown)


def _check_history(page: Page, artifacts: Path, png: bytes, size: list[int]) -> None:
    """After the avatar above (`png`, `size`) on top of a full history of 8 px ones (seeds 9000...)."""
    expect(_history_items(page)).to_have_count(HISTORY_LIMIT)
    assert _newest_thumb_size(page) == size  # shown at once, without a reload
    stored = page.evaluate(READ_HISTORY)
    assert [entry["seed"] for entry in stored] == [*range(9001, 9000 + HISTORY_LIMIT), FAST_JOB["seed"]]  # oldest out
    newest = stored[-1]
    assert (newest["width"], newest["height"], newest["type"], newest["bytes"]) == (*size, "image/png", len(png))
    assert re.fullmatch(r"v\d+", newest["workflowVersion"]), newest
    assert set(newest) == {"id", "createdAt", "width", "height", "seed", "workflowVersion", "type", "bytes"}

    _reload(page)
    items = _history_items(page)
    expect(items).to_have_count(HISTORY_LIMIT)
    expect(items.first.get_by_role("img")).to_have_attribute("alt", re.compile(r"^Avatar made "))
    assert _newest_thumb_size(page) == size  # kept over a reload, newest first, decodes
    page.screenshot(path=artifacts / "6_history_desktop.png", full_page=True)

    downloads, deletes = _history_labels(page, "Download"), _history_labels(page, "Delete")
    assert len(set(downloads)) == len(set(deletes)) == HISTORY_LIMIT  # each names its avatar
    with page.expect_download() as download:
        items.first.get_by_role("link").click()
    assert re.fullmatch(r"ethmumbai-avatar-\d{8}-\d{6}\.png", download.value.suggested_filename)
    assert Path(download.value.path()).read_bytes() == png

    # Keyboard: delete the newest; focus lands on the next avatar's delete button.
    items.first.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(items).to_have_count(HISTORY_LIMIT - 1)
    assert _focused_label(page) == deletes[1]
    assert FAST_JOB["seed"] not in [entry["seed"] for entry in page.evaluate(READ_HISTORY)]

    page.once("dialog", lambda dialog: dialog.accept())  # "Delete all 11 avatars from this device?"
    page.get_by_role("button", name="Clear history").click()
    page.get_by_test_id("history-empty").wait_for()
    assert _focused_text(page) == "Your recent avatars"
    _reload(page)
    page.get_by_test_id("history-empty").wait_for()
    expect(items).to_have_count(0)
    assert page.evaluate(READ_HISTORY) == []


def test_photo_without_a_face_gets_a_friendly_message(avatar_app, browser, artifacts, tmp_path):
    """Phone layout (camera button), photo dropped on the drop zone: a cat, so the worker answers NO_FACE_DETECTED."""
    page, responses = _open(browser, avatar_app, viewport={"width": 390, "height": 844}, is_mobile=True,
                            has_touch=True, device_scale_factor=2)
    # Viewport-only shots on mobile: a full-page capture drops the touch emulation (and the camera button).
    page.screenshot(path=artifacts / "1_start_mobile.png")
    with page.expect_file_chooser() as camera:
        page.get_by_role("button", name="Take a selfie").click()
    assert camera.value.element.get_attribute("capture") == "user"  # phones open the front camera

    page.get_by_role("radio", name="Comic").check()  # a style preset from the workflow contract
    cat = base64.b64encode(_jpeg(skdata.chelsea(), tmp_path / "chelsea.jpg").read_bytes()).decode()
    with page.expect_request(lambda r: r.url.endswith("/api/jobs") and r.method == "POST") as posted:
        page.evaluate(DROP_FILE, [cat, "chelsea.jpg", ".dropzone"])
    assert posted.value.post_data_json["style"] == "comic"

    message = page.get_by_test_id("error-message")
    message.wait_for(timeout=JOB_TIMEOUT_MS)
    assert message.get_attribute("data-code") == "NO_FACE_DETECTED"
    assert message.inner_text() == "We couldn't find a face — try a clearer, front-facing photo."
    assert _focused_text(page) == "That didn't work"  # focus moved to the alert
    page.screenshot(path=artifacts / "4_no_face_mobile.png")
    expect(page.get_by_test_id("history-empty")).to_be_visible()  # a failed job adds nothing
    assert page.evaluate(READ_HISTORY) == []

    page.get_by_role("button", name="Try another photo").click()
    page.get_by_role("button", name="Choose a photo").wait_for()
    assert _focused_text(page) == "Choose a photo"
    _assert_no_key_reached_the_browser(page, responses)


CANCELLED_VIEW = {"state": "failed", "error": {"code": "CANCELLED", "message": "The job was cancelled"}}


# ComfyUI skips a prompt identical to the one before (its output cache): each cancelled job gets a photo of its own,
# so that it really runs on the worker.
MIRRORED_ASTRONAUT = skdata.astronaut()[:, ::-1]
DARKER_ASTRONAUT = (skdata.astronaut() * 0.85).astype(np.uint8)


def _start_job_on_the_worker(page: Page, photo: Path) -> str:
    """Choose `photo`; return its job id once the worker reports progress (the job runs there, not just queued)."""
    with page.expect_response(lambda r: r.url.endswith("/api/jobs") and r.request.method == "POST") as posted:
        page.get_by_test_id("photo-input").set_input_files(photo)
    worker_stage = re.compile("|".join(map(re.escape, WORKER_STAGE_LABELS)))
    page.get_by_test_id("progress-label").filter(has_text=worker_stage).wait_for(timeout=JOB_TIMEOUT_MS)
    created = posted.value.json()
    assert created["token"] == owner(created["id"])["X-Job-Token"]  # what the page proves ownership with
    return created["id"]


def _wait_for_the_worker_to_end(stack: LocalStack, job_id: str) -> None:
    """The local worker API cannot stop a job: it runs to the end. Wait for that, so that the late result has come
    back to the app, and so that the tests after this one find the worker idle."""
    # The worker logs "job <id> COMPLETED|FAILED" once per job, when it ends (worker/analytics.py).
    wait_until(lambda: re.search(rf"job {re.escape(job_id)} (COMPLETED|FAILED)", stack.worker.log()),
               JOB_TIMEOUT_MS / 1000, f"the worker to finish job {job_id}")
    assert stack.worker.comfy_queue() == ([], [])


def _job_view(stack: LocalStack, job_id: str) -> dict:
    return requests.get(f"{stack.url}/api/jobs/{job_id}", headers=owner(job_id), timeout=30).json()


def test_cancel_returns_to_the_chooser_and_keeps_nothing(local_stack, browser, artifacts, tmp_path):
    """Cancel (by keyboard) while the worker runs the job: the page is back to the chooser at once with a note, stops
    polling, and the job says CANCELLED, also once the worker has finished it; history gains nothing."""
    page, _ = _open(browser, local_stack.url, viewport={"width": 1280, "height": 900})
    sent = []
    page.on("request", lambda request: sent.append(request))
    page.get_by_test_id("history-empty").wait_for()
    job_id = _start_job_on_the_worker(page, _jpeg(MIRRORED_ASTRONAUT, tmp_path / "mirrored.jpg"))

    cancel = page.get_by_role("region", name="Making your avatar").get_by_role("button", name="Cancel")
    cancel.focus()
    with page.expect_response(lambda r: r.request.method == "DELETE") as deleted:
        page.keyboard.press("Enter")
    # (Playwright never yields the body of a keepalive fetch; the API's answers are read directly below.)
    assert deleted.value.url == f"{local_stack.url}/api/jobs/{job_id}" and deleted.value.status == 200
    chooser = page.get_by_role("button", name="Choose a photo")
    expect(chooser).to_be_focused()
    expect(chooser).to_have_accessible_description("Cancelled")  # read out with the button focus lands on
    expect(page.get_by_test_id("status-note")).to_have_text("Cancelled")
    expect(page.get_by_role("region", name="Making your avatar")).to_have_count(0)
    page.screenshot(path=artifacts / "7_cancelled_desktop.png", full_page=True)
    assert _job_view(local_stack, job_id) == CANCELLED_VIEW
    again = requests.delete(f"{local_stack.url}/api/jobs/{job_id}", headers=owner(job_id), timeout=30)
    assert again.status_code == 200 and again.json() == CANCELLED_VIEW  # an ended job: its final state

    _wait_for_the_worker_to_end(local_stack, job_id)
    assert _job_view(local_stack, job_id) == CANCELLED_VIEW  # the worker's late result was dropped
    calls = [r.method for r in sent if r.url.endswith(f"/api/jobs/{job_id}")]
    assert calls.count("DELETE") == 1 and calls[-1] == "DELETE", calls  # no poll after the cancel
    expect(page.get_by_test_id("history-empty")).to_be_visible()
    assert page.evaluate(READ_HISTORY) == []


def test_leaving_the_page_cancels_the_job(local_stack, browser, tmp_path):
    """pagehide sends the DELETE (a keepalive fetch, which Playwright does not see from a page being left)."""
    page, _ = _open(browser, local_stack.url, viewport={"width": 1280, "height": 900})
    job_id = _start_job_on_the_worker(page, _jpeg(DARKER_ASTRONAUT, tmp_path / "darker.jpg"))
    page.goto("about:blank")
    wait_until(lambda: _job_view(local_stack, job_id) == CANCELLED_VIEW, 30, "the job to be cancelled")
    _wait_for_the_worker_to_end(local_stack, job_id)


def test_wrong_file_type_is_caught_in_the_browser(avatar_app, browser, artifacts, tmp_path):
    page, responses = _open(browser, avatar_app, viewport={"width": 1280, "height": 900})
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(gif, "GIF")
    page.get_by_test_id("photo-input").set_input_files(gif)
    message = page.get_by_test_id("error-message")
    message.wait_for()
    assert message.get_attribute("data-code") == "FILE_TYPE"
    assert not [r for r in responses if "/api/jobs" in r.url]  # nothing was uploaded
    page.screenshot(path=artifacts / "5_wrong_type_desktop.png", full_page=True)


@pytest.mark.parametrize("no_storage", [
    "Object.defineProperty(window, 'indexedDB', { value: undefined });",  # no IndexedDB at all
    "IDBFactory.prototype.open = () => { throw new DOMException('The operation is insecure.', 'SecurityError'); };",
], ids=["missing", "refused"])
def test_page_works_without_history_storage(offline_app, browser, tmp_path, no_storage):
    """Private modes: no IndexedDB, or one that refuses. The history says it is off; the maker still works."""
    page, _ = _open(browser, offline_app, init_script=no_storage, viewport={"width": 1280, "height": 900})
    history = page.get_by_test_id("history")
    expect(history).to_have_attribute("data-state", "off")
    expect(history).to_contain_text("History is off")
    page.get_by_test_id("photo-input").set_input_files(_jpeg(skdata.astronaut(), tmp_path / "astronaut.jpg"))
    message = page.get_by_test_id("error-message")
    message.wait_for()
    assert message.get_attribute("data-code") == "ENDPOINT_UNAVAILABLE"  # the upload went out; nothing listens


def test_photo_is_turned_upright_and_downscaled_before_upload(offline_app, browser, tmp_path):
    """A 3000x1500 camera JPEG tagged "rotate 90° clockwise" (EXIF orientation 6), with a GPS tag: the page
    uploads it upright at 1024x2048, without any EXIF."""
    pixels = np.zeros((1500, 3000, 3), np.uint8)
    pixels[:, :1500] = (255, 0, 0)  # left half red: after the rotation, the top half
    pixels[:, 1500:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    exif[0x8825] = {1: "N", 2: (19.0, 4.0, 0.0)}  # GPSInfo: Mumbai-ish
    photo = tmp_path / "camera.jpg"
    Image.fromarray(pixels).save(photo, "JPEG", quality=90, exif=exif.tobytes())

    page, _ = _open(browser, offline_app, viewport={"width": 1280, "height": 900})
    page.route("**/api/jobs", lambda route: route.abort())  # only the request body matters here
    with page.expect_request("**/api/jobs") as request:
        page.get_by_test_id("photo-input").set_input_files(photo)
    sent = Image.open(io.BytesIO(base64.b64decode(request.value.post_data_json["image"])))
    assert sent.format == "JPEG" and sent.size == (1024, 2048)
    assert not sent.getexif()
    top, bottom = np.asarray(sent.convert("RGB"))[[256, 1792], 512].astype(int)
    assert top[0] > 200 and top[2] < 60, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom
    page.get_by_test_id("error-message").wait_for()  # the aborted upload is a friendly network error
    assert page.get_by_test_id("error-message").get_attribute("data-code") == "NETWORK"


# ---- the page as a product: the visitor's look, seeds, both formats, one screen (issue 15)

DEVICES = {
    "desktop": {"viewport": {"width": 1280, "height": 800}},
    "phone": {"viewport": {"width": 390, "height": 844}, "is_mobile": True, "has_touch": True,
              "device_scale_factor": 2},
}
# The avatar shown, as a PNG of its pixels (its blob: URL cannot be fetched: the CSP allows connections to 'self').
AVATAR_PIXELS = """
() => {
  const img = document.querySelector('[data-testid=avatar-result]');
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth;
  canvas.height = img.naturalHeight;
  canvas.getContext('2d').drawImage(img, 0, 0);
  return canvas.toDataURL('image/png').split(',')[1];
}
"""


def _choices() -> dict:
    """What the page offers (written from the params file by `npm run choices` at build time)."""
    return json.loads((FRONTEND_DIR / "lib" / "generated" / "choices.json").read_text())


def _avatar(page: Page) -> bytes:
    page.wait_for_function("document.querySelector('[data-testid=avatar-result]')?.complete")
    return base64.b64decode(page.evaluate(AVATAR_PIXELS))


def _job_bodies(page: Page) -> list[dict]:
    bodies: list[dict] = []
    page.on("request", lambda r: bodies.append(r.post_data_json)
            if r.url.endswith("/api/jobs") and r.method == "POST" else None)
    return bodies


def _redraw(page: Page, button: str) -> None:
    """Click a result button and wait for the next avatar (each result is a new blob: URL)."""
    before = page.get_by_test_id("avatar-result").get_attribute("src")
    page.get_by_role("button", name=button, exact=True).click()
    page.wait_for_function("""before => {
      const img = document.querySelector('[data-testid=avatar-result]');
      return img !== null && img.src !== before && img.complete;
    }""", arg=before, timeout=JOB_TIMEOUT_MS)


@pytest.mark.parametrize("device", DEVICES)
def test_look_seeds_downloads_on_one_screen(local_stack, browser, artifacts, tmp_path, device):
    """Choose a style (where the params file has them) and a background; the avatar and its downloads fit the screen
    without scrolling; "Try another" changes the seed and the image, "Same again" reuses the seed and gives the same
    image; PNG and WebP download; the demo notice says what the tiny models draw."""
    choices = _choices()
    page, _ = _open(browser, local_stack.url, **DEVICES[device])
    bodies = _job_bodies(page)
    picked: dict[str, str] = {}
    if choices["styles"]:
        # A diffusion style, so that the seed matters (the composite-only "photo" style draws no noise at all).
        style = next(preset for preset in choices["styles"]["presets"] if preset["name"] == "comic")
        page.get_by_role("radio", name=style["label"]).check()
        picked["style"] = style["name"]
    background = next(name for name in choices["backgrounds"]["names"] if name != choices["backgrounds"]["default"])
    label = re.sub(r"^ethmumbai_|\.png$", "", background).capitalize()
    page.get_by_role("radio", name=label, exact=True).check()
    picked["background"] = background
    page.screenshot(path=artifacts / f"8_look_{device}.png")

    photo = (skdata.astronaut()[::-1] if device == "phone" else skdata.astronaut()[:, ::-1, ::-1]).copy()
    page.get_by_test_id("photo-input").set_input_files(_jpeg(photo, tmp_path / "photo.jpg"))
    page.get_by_test_id("avatar-result").wait_for(timeout=JOB_TIMEOUT_MS)
    first = _avatar(page)
    expect(page.get_by_role("link", name="Download PNG")).to_be_in_viewport(ratio=1)
    expect(page.get_by_role("link", name="Download WebP")).to_be_in_viewport(ratio=1)
    expect(page.get_by_test_id("avatar-result")).to_be_in_viewport()
    assert page.evaluate("window.scrollY") >= 0  # (the page itself brings the result up; the visitor scrolls nothing)
    expect(page.get_by_test_id("avatar-round")).to_have_css("border-radius", "50%")
    # The worker runs the tiny demo models and says so (DEMO_MODELS): the page tells the visitor, on screen.
    expect(page.get_by_test_id("demo-notice")).to_contain_text("tiny test models")
    expect(page.get_by_test_id("demo-notice")).to_be_in_viewport()
    page.screenshot(path=artifacts / f"9_result_{device}.png")
    assert {k: v for k, v in bodies[-1].items() if k != "image"} == picked  # the first job: the endpoint's seed
    expect(page.get_by_test_id("result-meta")).to_contain_text(f"{label} background")
    seed = int(page.get_by_test_id("seed").inner_text())

    with page.expect_download() as png_download:
        page.get_by_role("link", name="Download PNG").click()
    with page.expect_download() as webp_download:
        page.get_by_role("link", name="Download WebP").click()
    assert png_download.value.suggested_filename == "ethmumbai-avatar.png"
    assert webp_download.value.suggested_filename == "ethmumbai-avatar.webp"
    png = Image.open(png_download.value.path())
    webp = Image.open(webp_download.value.path())
    assert (png.format, webp.format) == ("PNG", "WEBP") and png.size == webp.size == Image.open(io.BytesIO(first)).size

    _redraw(page, "Try another")
    second, new_seed = _avatar(page), int(page.get_by_test_id("seed").inner_text())
    assert new_seed != seed and bodies[-1]["seed"] == new_seed
    assert second != first  # a new seed draws other pixels
    assert {k: v for k, v in bodies[-1].items() if k not in ("image", "seed")} == picked  # choices kept

    _redraw(page, "Same again")
    assert int(page.get_by_test_id("seed").inner_text()) == new_seed and bodies[-1]["seed"] == new_seed
    assert _avatar(page) == second  # the same seed, photo and look: the same pixels

    _reload(page)  # choices last for the visit
    expect(page.get_by_role("radio", name=label, exact=True)).to_be_checked()
    expect(page.get_by_test_id("demo-notice")).to_be_visible()  # the worker said so; the page remembers it


def test_a_group_photo_names_its_faces_and_can_use_another(local_stack, browser, artifacts, tmp_path):
    """Two people: the result says how many faces the worker found and that it used the most prominent; "Use another
    face" draws the other with the same seed and look (face_index 1), and after the last face comes the first again."""
    page, _ = _open(browser, local_stack.url, viewport={"width": 1280, "height": 900})
    bodies = _job_bodies(page)
    group = scene(1200, 800, [(110, (350, 400)), (80, (850, 380))])  # the taller face is the more prominent
    page.get_by_test_id("photo-input").set_input_files(_jpeg(group, tmp_path / "group.jpg"))
    page.get_by_test_id("avatar-result").wait_for(timeout=JOB_TIMEOUT_MS)
    faces = page.get_by_test_id("faces")
    expect(faces).to_contain_text("2 faces found — used the most prominent.")
    first = _avatar(page)
    assert "face_index" not in bodies[-1]

    _redraw(page, "Use another face")
    expect(faces).to_contain_text("2 faces found — used face 2 of 2.")
    page.screenshot(path=artifacts / "11_another_face_desktop.png", full_page=True)
    assert bodies[-1]["face_index"] == 1 and bodies[-1]["seed"] == int(page.get_by_test_id("seed").inner_text())
    assert _avatar(page) != first

    _redraw(page, "Use another face")  # past the last face: the first again, the same pixels as at first
    expect(faces).to_contain_text("used the most prominent")
    assert "face_index" not in bodies[-1] and _avatar(page) == first


def test_progress_needs_the_jobs_secret(local_stack, tmp_path):
    """Only the worker, which got the job's progress secret in the job, can post its progress: a post without it, with
    a wrong one, or with the owner's token (a different secret) is refused and changes nothing."""
    photo = base64.b64encode(_jpeg(skdata.astronaut()[::2, ::2].copy(), tmp_path / "small.jpg").read_bytes()).decode()
    created = requests.post(f"{local_stack.url}/api/jobs", json={"image": photo}, timeout=30).json()
    forged = json.dumps({"status": "IN_PROGRESS", "output": {"stage": "forged_stage"}})
    for query in ("", "&token=", "&token=wrong-secret-0123456789abcdef", f"&token={created['token']}"):
        response = requests.post(f"{local_stack.url}/api/local-progress/{created['id']}?v=1{query}&isStream=false",
                                 data=forged, timeout=30)
        assert response.status_code == 404
    views = []
    wait_until(lambda: views.append(_job_view(local_stack, created["id"])) or views[-1]["state"] in ("completed", "failed"),
               JOB_TIMEOUT_MS / 1000, "the job to end")
    assert views[-1]["state"] == "completed"
    assert not [view for view in views if view.get("progress", {}).get("stage") == "forged_stage"]
    _wait_for_the_worker_to_end(local_stack, created["id"])


class _PortForwarder(threading.Thread):
    """Listens on `port` and relays each connection to `target`: the worker's API "coming up" on the page's port."""

    def __init__(self, port: int, target: int):
        super().__init__(daemon=True)
        self.server = socket.create_server(("127.0.0.1", port))
        self.target = target

    def run(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pipe(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.server.close()


def test_page_says_warming_up_until_the_worker_answers(local_stack, browser, artifacts, tmp_path):
    """The page started before the worker (as `make run` may): it says the service is warming up, holds the photo,
    and sends it once the worker's API answers; no 502 on the way."""
    worker_port = free_port()
    with next_server(f"http://127.0.0.1:{worker_port}", tmp_path / "next.log", job_params=FAST_JOB) as app:
        page, responses = _open(browser, app, viewport={"width": 1280, "height": 800})
        status = page.get_by_test_id("service-status")
        expect(status).to_have_attribute("data-state", "warming")
        expect(status).to_contain_text("warming up")
        photo = (skdata.astronaut() * 0.7).astype(np.uint8)
        page.get_by_test_id("photo-input").set_input_files(_jpeg(photo, tmp_path / "warm.jpg"))
        expect(page.get_by_test_id("progress-label")).to_have_text("The avatar service is warming up")
        page.screenshot(path=artifacts / "10_warming_desktop.png")
        assert not [r for r in responses if r.url.endswith("/api/jobs")]  # held, not sent into a 502
        forwarder = _PortForwarder(worker_port, local_stack.worker.port)
        forwarder.start()
        try:
            page.get_by_test_id("avatar-result").wait_for(timeout=JOB_TIMEOUT_MS)
            expect(status).to_have_count(0)  # ready: the notice is gone
            assert [r.status for r in responses if r.url.endswith("/api/jobs")] == [202]
        finally:
            forwarder.close()


def test_the_worst_case_upload_fits_the_body_limit(offline_app, browser, artifacts, tmp_path):
    """A full-detail photo of pure noise (the hardest for JPEG): the page's body stays under the route's limit, itself
    under Vercel's 4.5 MB, and the route reads it (it fails only at the absent endpoint, not as too large)."""
    limit = int(re.search(r"MAX_BODY_BYTES = ([\d_]+);", (FRONTEND_DIR / "lib" / "uploadLimits.ts").read_text())
                .group(1).replace("_", ""))
    noise = np.random.default_rng(15).integers(0, 256, (3024, 4032, 3), dtype=np.uint8)
    photo = tmp_path / "noise.jpg"
    Image.fromarray(noise).save(photo, "JPEG", quality=95)
    page, _ = _open(browser, offline_app, viewport={"width": 1280, "height": 800})
    with page.expect_request("**/api/jobs") as request:
        page.get_by_test_id("photo-input").set_input_files(photo)
    body = request.value.post_data_buffer
    sent = Image.open(io.BytesIO(base64.b64decode(json.loads(body)["image"])))
    figures = {"photo_bytes": photo.stat().st_size, "body_bytes": len(body), "limit": limit,
               "vercel_limit": 4_500_000, "sent_size": list(sent.size)}
    (artifacts / "upload_worst_case.json").write_text(json.dumps(figures, indent=2))
    print("worst-case upload:", figures)
    assert len(body) <= limit <= 0.9 * 4_500_000
    assert max(sent.size) >= 1024  # still a useful photo
    message = page.get_by_test_id("error-message")
    message.wait_for()
    assert message.get_attribute("data-code") == "ENDPOINT_UNAVAILABLE"  # accepted by the route, not IMAGE_TOO_LARGE
    response = requests.post(f"{offline_app}/api/jobs", data=body, headers={"Content-Type": "application/json"},
                             timeout=60)
    assert response.status_code == 502 and response.json()["error"]["code"] == "ENDPOINT_UNAVAILABLE"


def test_the_rate_limit_message_names_the_wait(frontend_build, browser, tmp_path):
    with next_server(f"http://127.0.0.1:{free_port()}", tmp_path / "next.log",
                     env={"JOB_RATE_LIMIT": "1/3600", "LOCAL_WORKER_BOOT_S": "0"}) as app:
        page, _ = _open(browser, app, viewport={"width": 1280, "height": 800})
        photo = _jpeg(skdata.astronaut(), tmp_path / "astronaut.jpg")
        message = page.get_by_test_id("error-message")
        page.get_by_test_id("photo-input").set_input_files(photo)
        expect(message).to_have_attribute("data-code", "ENDPOINT_UNAVAILABLE")  # the one allowed job
        page.get_by_role("button", name="Try another photo").click()
        page.get_by_test_id("photo-input").set_input_files(photo)
        expect(message).to_have_attribute("data-code", "RATE_LIMITED")
        expect(message).to_have_text("You've made a lot of avatars in a short time. You can make another in 60 minutes.")


def test_two_instances_share_local_jobs_through_redis(local_stack, redis_url, tmp_path):
    """REDIS_URL: a job started through one instance is followed, to its end, through another (as on Vercel, where
    each poll may land anywhere); the owner's token works on both, and nothing else does."""
    env = {"REDIS_URL": redis_url}
    with next_server(local_stack.worker.url, tmp_path / "a.log", job_params=FAST_JOB, env=env) as a, \
            next_server(local_stack.worker.url, tmp_path / "b.log", job_params=FAST_JOB, env=env) as b:
        photo = base64.b64encode(_jpeg(skdata.astronaut()[:, ::-1].copy(), tmp_path / "p.jpg").read_bytes()).decode()
        created = requests.post(f"{a}/api/jobs", json={"image": photo, "seed": 11}, timeout=30).json()
        url = f"{b}/api/jobs/{created['id']}"
        assert requests.get(url, timeout=30).status_code == 404  # no token, no job
        views = []
        wait_until(lambda: views.append(requests.get(url, headers=owner(created["id"]), timeout=30).json())
                   or views[-1]["state"] in ("completed", "failed"), JOB_TIMEOUT_MS / 1000, "the job to end")
        assert views[-1]["state"] == "completed"
        assert views[-1]["result"]["seed"] == 11
        assert requests.get(f"{a}/api/jobs/{created['id']}", headers=owner(created["id"]), timeout=30).json() == views[-1]
    _wait_for_the_worker_to_end(local_stack, created["id"])


@pytest.mark.parametrize("enabled", [False, True], ids=["off", "on"])
def test_vercel_analytics_load_only_when_enabled(frontend_build, browser, tmp_path, enabled):
    """VERCEL_ANALYTICS=1 loads Web Analytics and Speed Insights from this origin's /_vercel/ paths (404 here, off
    Vercel), which the unchanged Content-Security-Policy allows: no violation. Off: nothing of theirs loads."""
    env = {"LOCAL_WORKER_BOOT_S": "0", **({"VERCEL_ANALYTICS": "1"} if enabled else {})}
    with next_server(f"http://127.0.0.1:{free_port()}", tmp_path / "next.log", env=env) as app:
        page = browser.new_context().new_page()
        messages, requested = [], []
        page.on("console", lambda message: messages.append(message.text))
        page.on("request", lambda request: requested.append(request.url))
        page.goto(app)
        _wait_for_hydration(page)
        policy = requests.get(app, timeout=30).headers["Content-Security-Policy"]
        if enabled:
            for script in ("/_vercel/insights/script.js", "/_vercel/speed-insights/script.js"):
                page.wait_for_function("src => [...document.scripts].some((s) => s.src.endsWith(src))", arg=script)
                wait_until(lambda url=f"{app}{script}": url in requested, 30, f"{script} to be requested")
        else:
            page.wait_for_load_state("networkidle")
        vercel = [url for url in requested if "/_vercel/" in url or "vercel-scripts" in url]
        assert bool(vercel) == enabled, vercel
        assert all(url.startswith(f"{app}/_vercel/") for url in vercel), vercel
        assert not [text for text in messages if "Content Security Policy" in text], messages
        assert "vercel-scripts" not in policy and "script-src 'self' 'unsafe-inline';" in policy
