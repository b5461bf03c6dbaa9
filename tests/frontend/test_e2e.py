"""End to end in real headless Chromium (Debian's): the built page served by `next start`, against the real local
worker stack (`python -m worker.handler --rp_serve_api`, real ComfyUI, tiny models). Screenshots go to
artifacts/frontend/."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Browser, Page, expect, sync_playwright
from skimage import data as skdata

from tests.frontend.conftest import ARTIFACTS_DIR, FAKE_API_KEY, next_server
from tools.worker_server import WorkerServer, start_worker
from tests.helpers.waiting import wait_until
from avatar_driver.process import free_port

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
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
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


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
    page.goto(app)
    _wait_for_hydration(page)
    return page, responses


def _wait_for_hydration(page: Page) -> None:
    # The chooser is disabled until React has hydrated the page: before that, nothing would react to input.
    expect(page.get_by_role("button", name="Choose a photo")).to_be_enabled()


def _reload(page: Page) -> None:
    page.reload()
    _wait_for_hydration(page)


def _assert_no_key_reached_the_browser(page: Page, responses: list) -> None:
    assert FAKE_API_KEY not in page.content()
    bodies = [r for r in responses if r.request.resource_type in ("document", "script", "stylesheet", "fetch")]
    assert any(r.request.resource_type == "script" for r in bodies)
    for response in bodies:
        assert FAKE_API_KEY.encode() not in response.body(), f"API key served in {response.url}"


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
    expect(page.get_by_test_id("result-note")).to_contain_text("Demo mode")
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
    return posted.value.json()["id"]


def _wait_for_the_worker_to_end(stack: LocalStack, job_id: str) -> None:
    """The local worker API cannot stop a job: it runs to the end. Wait for that, so that the late result has come
    back to the app, and so that the tests after this one find the worker idle."""
    wait_until(lambda: re.search(rf"job {job_id} (done in|failed)", stack.worker.log()), JOB_TIMEOUT_MS / 1000,
                f"the worker to finish job {job_id}")
    assert stack.worker.comfy_queue() == ([], [])


def _job_view(stack: LocalStack, job_id: str) -> dict:
    return requests.get(f"{stack.url}/api/jobs/{job_id}", timeout=30).json()


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
    again = requests.delete(f"{local_stack.url}/api/jobs/{job_id}", timeout=30)
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
