"""The worker end to end through the runpod SDK's local API: avatars, coded errors, concurrency, progress, privacy."""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from pathlib import Path

import pytest
from PIL import Image

from tests.worker.conftest import PHOTO, WORKFLOW, avatar_job, fast_params
from tools.images import b64, chelsea, decode_b64_image, encode, png_header_claiming


def _animated_gif() -> bytes:
    frames = [Image.new("RGB", (64, 64), color) for color in ("red", "blue")]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return out.getvalue()


_PNG = encode(Image.new("RGB", (64, 64), "white"))
# Each a real bad upload and the code the worker must answer with.
BAD_IMAGES = {
    "corrupt": (b64(_PNG[:33] + bytes(range(256)) * 4), "UNSUPPORTED_IMAGE"),  # valid header, garbage data
    "truncated": (b64(encode(chelsea())[:5000]), "UNSUPPORTED_IMAGE"),
    "zero_bytes": ("", "UNSUPPORTED_IMAGE"),
    "svg": (b64(b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><rect width="64" height="64"/></svg>'),
            "UNSUPPORTED_IMAGE"),
    "animated_gif": (b64(_animated_gif()), "UNSUPPORTED_IMAGE"),
    "header_20000x20000": (b64(png_header_claiming(20000, 20000)), "IMAGE_TOO_LARGE"),
    "not_base64": ("this is not base64 at all!", "INVALID_INPUT"),
    "no_face": (b64(encode(chelsea())), "NO_FACE_DETECTED"),
}


def test_avatar_end_to_end(worker_server):
    job = avatar_job(seed=7)
    body = worker_server.runsync(job)
    assert body["status"] == "COMPLETED", body.get("error")
    out = body["output"]
    image = decode_b64_image(out["image"])
    assert image.format == "PNG" and out["format"] == "png"
    assert (out["width"], out["height"]) == image.size
    assert out["seed"] == 7 and out["workflow_version"] == WORKFLOW.version and out["cached"] is False
    assert not image.info, f"metadata in the PNG: {sorted(image.info)}"
    timings = out["timings"]
    assert set(timings) == {"queue", "preprocess", "sampling", "encode", "total"}
    assert all(value >= 0 for value in timings.values())
    assert timings["sampling"] > 0, "the sampler's time was not seen"
    assert sum(v for k, v in timings.items() if k != "total") <= timings["total"]

    stages = _progress_of(worker_server, body["id"])
    assert [s for s in dict.fromkeys(p["stage"] for p in stages)] == ["queued", "preprocess", "sampling", "encode"]
    steps = [p for p in stages if "step" in p]
    assert steps and steps[-1]["step"] == steps[-1]["steps"] == job.get("steps", steps[-1]["steps"])
    assert all(set(p) <= {"stage", "step", "steps"} for p in stages)


def _progress_of(server, job_id: str, settle: float = 5.0) -> list[dict]:
    """The job's updates go out before its result, but the worker waits for them at most 2 s (PROGRESS_FLUSH_S):
    on a slow machine the last may land just after; wait for it."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        stages = server.progress.for_job(job_id)
        if stages and stages[-1]["stage"] == "encode":
            break
        time.sleep(0.1)
    return stages


@pytest.mark.parametrize("case", list(BAD_IMAGES))
def test_bad_image_is_a_coded_error_and_the_next_job_succeeds(worker_server, case):
    image, expected = BAD_IMAGES[case]
    code, message = worker_server.fail({"image": image, **fast_params()})
    assert code == expected, message
    assert message and (not image or image[:40] not in message)
    worker_server.succeed(avatar_job())


@pytest.mark.parametrize("job_input, field", [
    ({"image": PHOTO, "colour": "red"}, "colour"),
    ({"image": PHOTO, "workflow": {"1": {"class_type": "SaveImage", "inputs": {}}}}, "workflow"),
    ({"image": PHOTO, "prompt": {"1": {"class_type": "SaveImage", "inputs": {}}}}, "prompt"),
    ({"image": PHOTO, "workflow_version": "v999"}, "workflow_version"),
    ({"image": 12345}, "image"),
    ({}, "image"),
])
def test_invalid_input_is_refused_before_comfyui(worker_server, job_input, field):
    code, message = worker_server.fail(job_input)
    assert code == "INVALID_INPUT" and field in message


def test_three_concurrent_jobs_each_get_their_own_output(worker_server):
    sizes = sorted({fast_params()["size"] + 64 * i for i in range(3)}) if "size" in WORKFLOW.params else [None] * 3
    jobs = [avatar_job(seed=100 + i, **({"size": s} if s else {})) for i, s in enumerate(sizes)]
    results: dict[int, dict] = {}

    def submit(index: int) -> None:
        results[index] = worker_server.runsync(jobs[index])

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    outputs = []
    for index, job in enumerate(jobs):
        assert results[index]["status"] == "COMPLETED", results[index].get("error")
        out = results[index]["output"]
        assert out["seed"] == job["seed"]
        if "size" in job:
            assert decode_b64_image(out["image"]).size == (out["width"], out["height"])
        outputs.append(out["image"])
    assert len(set(outputs)) == 3, "two jobs got the same image"
    # Each output is its own job's: the same job alone gives the same image.
    assert worker_server.succeed(jobs[1])["image"] == outputs[1]


def test_warm_up_ran_at_boot(worker_server):
    log = worker_server.log()
    assert "warm-up finished in" in log and "warm-up failed" not in log


def test_nothing_of_the_jobs_is_left_behind(worker_server):
    """After jobs (good and bad): no /history entries, empty queue, no files, no image in the logs (which the SDK
    would print at the DEBUG level this server was started with)."""
    worker_server.succeed(avatar_job(seed=11))
    worker_server.fail({"image": BAD_IMAGES["truncated"][0]})  # fails inside the base64 node, which holds the photo
    assert worker_server.comfy_history() == {}
    assert worker_server.comfy_queue() == ([], [])
    leftovers = [p for name in ("input", "output", "temp") for p in Path(worker_server.workdir, name).rglob("*")
                 if p.is_file()]
    assert leftovers == []
    log = worker_server.log()
    for secret in (PHOTO, BAD_IMAGES["truncated"][0], BAD_IMAGES["no_face"][0]):
        middle = len(secret) // 2
        assert secret[middle:middle + 48] not in log
    assert not re.search(r"[A-Za-z0-9+/]{200,}", log), "a long base64 run in the worker log"


def test_data_uri_input_is_accepted(worker_server):
    out = worker_server.succeed({**avatar_job(), "image": f"data:image/png;base64,{PHOTO}"})
    assert base64.b64decode(out["image"])[:8] == b"\x89PNG\r\n\x1a\n"
