"""The Next.js server routes refuse bad input themselves, before anything reaches the RunPod endpoint."""

from __future__ import annotations

import base64
import io
import re

import pytest
import requests
from PIL import Image

from avatar_driver.contract import latest, load_workflows
from avatar_driver.process import free_port
from tests.frontend.conftest import FAKE_API_KEY, FRONTEND_DIR, next_server

# Vercel functions take request bodies up to 4.5 MB; the route's own limit must stay under it.
VERCEL_BODY_LIMIT = 4_500_000


def upload_limit(name: str) -> int:
    """A constant of frontend/lib/uploadLimits.ts, the one definition the page and the route share."""
    source = (FRONTEND_DIR / "lib" / "uploadLimits.ts").read_text()
    return int(re.search(rf"export const {name} = ([\d_]+);", source).group(1).replace("_", ""))


def _png_base64(size=(8, 8)) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def _post_job(app: str, **kwargs) -> requests.Response:
    return requests.post(f"{app}/api/jobs", timeout=30, **kwargs)


@pytest.mark.parametrize(("body", "status", "code"), [
    (b"not json", 400, "INVALID_INPUT"),
    (b"[1, 2]", 400, "INVALID_INPUT"),
    (b'{"image": "abc$%", "steps": 4}', 400, "INVALID_INPUT"),  # unknown field
    (b'{"image": "@@@@"}', 400, "INVALID_INPUT"),  # not base64
    (b'{"image": ""}', 400, "INVALID_INPUT"),
    # a GIF: the worker would refuse it too, but it is refused here without a round trip
    (b'{"image": "' + base64.b64encode(b"GIF89a" + b"\0" * 32) + b'"}', 415, "UNSUPPORTED_IMAGE"),
])
def test_bad_bodies_are_refused(offline_app, body, status, code):
    response = _post_job(offline_app, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert response.json()["error"]["code"] == code


def test_the_body_limit_fits_vercel_with_margin():
    limit, budget = upload_limit("MAX_BODY_BYTES"), upload_limit("UPLOAD_BASE64_BUDGET")
    assert budget < limit <= 0.9 * VERCEL_BODY_LIMIT


@pytest.mark.parametrize("size", [upload_limit("MAX_BODY_BYTES") + 1, 13 * 1024 * 1024])
def test_body_over_the_limit_is_refused_by_length(offline_app, size):
    response = _post_job(offline_app, data=b"x" * size, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "IMAGE_TOO_LARGE"


def test_body_over_the_limit_is_refused_while_streaming(offline_app):
    """Chunked upload (no Content-Length): the server counts bytes as they arrive, and stops past the limit."""
    chunks = (b"A" * (1024 * 1024) for _ in range(13))
    response = _post_job(offline_app, data=chunks, headers={"Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "IMAGE_TOO_LARGE"


def test_a_body_at_the_limit_is_read(offline_app):
    """A photo filling the whole limit passes validation (and fails only at the absent endpoint)."""
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    padded = buffer.getvalue() + b"\0" * (upload_limit("MAX_BODY_BYTES") * 3 // 4 - 64 - len(buffer.getvalue()))
    body = b'{"image": "' + base64.b64encode(padded) + b'"}'
    assert upload_limit("MAX_BODY_BYTES") - 200 < len(body) <= upload_limit("MAX_BODY_BYTES")
    response = _post_job(offline_app, data=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 502 and response.json()["error"]["code"] == "ENDPOINT_UNAVAILABLE"


def test_styles_are_the_contracts_and_an_unknown_one_is_refused(offline_app):
    styles = latest(load_workflows()).styles.presets
    response = _post_job(offline_app, json={"image": _png_base64(), "style": "baroque"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_INPUT"
    assert all(name in response.json()["error"]["message"] for name in styles)
    for name in styles:  # valid: refused only by the absent endpoint
        assert _post_job(offline_app, json={"image": _png_base64(), "style": name}).status_code == 502
    page = requests.get(offline_app, timeout=30).text
    assert all(f'value="{name}"' in page and preset.label in page for name, preset in styles.items())


def test_face_index_is_the_contracts_range(offline_app):
    """A group photo's other faces: face_index from 0 to the params file's maximum, a whole number."""
    highest = latest(load_workflows()).params["face_index"]["maximum"]
    for bad in (-1, highest + 1, 1.5, "1"):
        response = _post_job(offline_app, json={"image": _png_base64(), "face_index": bad})
        assert response.status_code == 400 and response.json()["error"]["code"] == "INVALID_INPUT", bad
        assert f"from 0 to {highest}" in response.json()["error"]["message"]
    for good in (0, highest):  # valid: refused only by the absent endpoint
        assert _post_job(offline_app, json={"image": _png_base64(), "face_index": good}).status_code == 502


def test_valid_image_reaches_the_endpoint(offline_app):
    """A valid body passes validation and fails only at the (absent) endpoint, with a coded 502."""
    response = _post_job(offline_app, json={"image": f"data:image/png;base64,{_png_base64()}"})
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "ENDPOINT_UNAVAILABLE"
    assert FAKE_API_KEY not in response.text


@pytest.mark.parametrize(("job_id", "status"), [("not..an-id", 400), ("a" * 129, 400), ("unknown-job", 404)])
def test_job_ids_are_checked(offline_app, job_id, status):
    response = requests.get(f"{offline_app}/api/jobs/{job_id}", timeout=30)
    assert response.status_code == status
    assert response.headers["Cache-Control"] == "no-store"


def test_health_says_unavailable_when_nothing_answers(offline_app):
    """No worker, and past its start-up grace (LOCAL_WORKER_BOOT_S=0 here): unavailable, not warming up."""
    assert requests.get(f"{offline_app}/api/health", timeout=30).json() == {"state": "unavailable", "queues": False}


def test_health_says_warming_while_a_local_worker_starts(frontend_build, tmp_path):
    """`make run` starts the page and the worker together; the worker's API answers only once ComfyUI is up."""
    with next_server(f"http://127.0.0.1:{free_port()}", tmp_path / "next.log") as app:
        assert requests.get(f"{app}/api/health", timeout=30).json() == {"state": "warming", "queues": False}


def test_progress_for_unknown_jobs_is_refused(offline_app):
    response = requests.post(f"{offline_app}/api/local-progress/test-unknown?v=1&isStream=false", timeout=30,
                             data='{"status": "IN_PROGRESS", "output": {"stage": "sampling"}}')
    assert response.status_code == 404


def test_page_has_no_api_key(offline_app):
    page = requests.get(offline_app, timeout=30)
    assert page.ok and "ETHMumbai" in page.text
    assert FAKE_API_KEY not in page.text


def test_static_assets_have_no_api_key(frontend_build):
    """Everything under .next/static is served to browsers; the build ran with the key in its env."""
    assets = [path for path in (frontend_build / "static").rglob("*") if path.is_file()]
    assert any(path.suffix == ".js" for path in assets)
    leaks = [path for path in assets if FAKE_API_KEY.encode() in path.read_bytes()]
    assert not leaks, f"API key found in {leaks}"


def test_brand_assets_come_from_the_pack(frontend_build):
    """The page's art is the pack's (copied at build time), never a second hand-made version."""
    pack = FRONTEND_DIR.parent / "custom_nodes" / "ethmumbai" / "assets" / "backgrounds"
    for name in ("ethmumbai_sunset.png", "ethmumbai_sunset_overlay.png", "ethmumbai_night.png"):
        assert (FRONTEND_DIR / "public" / "brand" / name).read_bytes() == (pack / name).read_bytes()


def test_jobs_beyond_the_rate_limit_are_refused_per_client(frontend_build, tmp_path):
    """Behind one trusted proxy (this test plays it): valid jobs count (each would cost GPU time); the endpoint here
    is absent, so an accepted one answers 502."""
    with next_server(f"http://127.0.0.1:{free_port()}", tmp_path / "next.log",
                     env={"JOB_RATE_LIMIT": "2/3600", "TRUSTED_PROXY_HOPS": "1"}) as app:
        photo = {"image": _png_base64()}
        alice, bob = {"X-Forwarded-For": "203.0.113.7"}, {"X-Forwarded-For": "198.51.100.1"}
        assert _post_job(app, data=b"not json", headers=alice).status_code == 400  # refused, not counted
        assert [_post_job(app, json=photo, headers=alice).status_code for _ in range(2)] == [502, 502]
        refused = _post_job(app, json=photo, headers=alice)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "RATE_LIMITED"
        assert 3500 < int(refused.headers["Retry-After"]) <= 3600
        assert _post_job(app, json=photo, headers=bob).status_code == 502  # another client has its own count
        # The last hop is the address the nearest proxy saw; a hop the client adds in front changes nothing.
        assert _post_job(app, json=photo, headers={"X-Forwarded-For": "10.0.0.1, 203.0.113.7"}).status_code == 429


def test_a_forged_forwarded_for_does_not_escape_the_limit(frontend_build, tmp_path):
    """No proxy configured: the client is the TCP peer, whatever X-Forwarded-For (or our own peer header) says."""
    with next_server(f"http://127.0.0.1:{free_port()}", tmp_path / "next.log", env={"JOB_RATE_LIMIT": "2/3600"}) as app:
        photo = {"image": _png_base64()}
        forged = [{"X-Forwarded-For": f"198.51.100.{n}", "X-Real-IP": f"198.51.100.{n}",
                   "X-Ethmumbai-Peer": f"198.51.100.{n}"} for n in range(4)]
        statuses = [_post_job(app, json=photo, headers=headers).status_code for headers in forged]
    assert statuses == [502, 502, 429, 429]


def test_the_429_names_the_wait(frontend_build, tmp_path):
    with next_server(f"http://127.0.0.1:{free_port()}", tmp_path / "next.log", env={"JOB_RATE_LIMIT": "1/600"}) as app:
        _post_job(app, json={"image": _png_base64()})
        refused = _post_job(app, json={"image": _png_base64()})
    assert refused.status_code == 429
    wait = int(refused.headers["Retry-After"])
    assert 540 < wait <= 600
    assert refused.json()["error"]["message"] == "Too many avatars from this address; try again in 10 minutes"


@pytest.mark.parametrize("env", [{"JOB_RATE_LIMIT": "lots"}, {"TRUSTED_PROXY_HOPS": "one"},
                                 {"JOB_TOKEN_SECRET": "short"}, {"REDIS_URL": "redis://127.0.0.1:1"}])
def test_a_malformed_setting_is_a_configuration_error(frontend_build, tmp_path, env):
    """Each named in the log; REDIS_URL without JOB_TOKEN_SECRET: instances sharing state must share the secret."""
    log = tmp_path / "next.log"
    with next_server(f"http://127.0.0.1:{free_port()}", log, env={**env, "JOB_TOKEN_SECRET": env.get("JOB_TOKEN_SECRET", "")}) as app:
        response = _post_job(app, json={"image": _png_base64()})
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "SERVICE_MISCONFIGURED"
    assert re.search(r"frontend misconfigured: (JOB_RATE_LIMIT|TRUSTED_PROXY_HOPS|JOB_TOKEN_SECRET)", log.read_text())


def test_pages_carry_a_content_security_policy(offline_app):
    policy = requests.get(offline_app, timeout=30).headers["Content-Security-Policy"]
    directives = dict(d.strip().split(" ", 1) for d in policy.split(";"))
    assert directives["default-src"] == "'self'" and directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'none'" and directives["object-src"] == "'none'"
    assert "unsafe-eval" not in policy  # a production build
