"""PromptRun, the client and the error mapping against the shared real ComfyUI (pack nodes only, no models)."""

from __future__ import annotations

import time

import pytest

from avatar_driver.client import ComfyClient, PromptRejected
from avatar_driver.contract import Workflow
from avatar_driver.errors import WorkerError, from_exception_message, rejection_error
from avatar_driver.runner import PromptRun
from tools.images import astronaut, b64, encode

PHOTO = b64(encode(astronaut()))


def _graph(image: str, size: int = 128) -> dict:
    """Load → face crop → save: a real prompt that needs no model files."""
    return {
        "1": {"class_type": "EthMumbaiLoadImageBase64",
              "inputs": {"image_base64": image, "max_bytes": 20_000_000, "max_pixels": 40_000_000}},
        "2": {"class_type": "EthMumbaiFaceCrop",
              "inputs": {"image": ["1", 0], "output_size": size, "margin": 0.6, "detector": "auto",
                         "multiple_faces": "largest", "on_no_face": "center_crop", "min_confidence": 0.5}},
        "3": {"class_type": "EthMumbaiSaveImageBase64", "inputs": {"images": ["2", 0], "format": "png", "quality": 95}},
    }


def _run(server, prompt: dict, on_progress=lambda _: None) -> tuple[PromptRun, dict]:
    client = ComfyClient(server.url)
    run = PromptRun(client, prompt, "3", frozenset(), alive=server.alive, on_progress=on_progress)
    return run, run.execute(time.monotonic() + 120)


def test_run_collects_the_output_and_deletes_its_history(comfy_server):
    run, outcome = _run(comfy_server, _graph(PHOTO, size=136))
    image = outcome.output["ethmumbai_images"][0]
    assert (image["width"], image["height"]) == (136, 136)
    assert set(outcome.timings) == {"queue", "preprocess", "sampling", "encode"}
    assert ComfyClient(comfy_server.url).history(run.prompt_id) is None


def test_run_survives_a_dropped_websocket(comfy_server):
    """The socket is cut at the first event; the run reconnects and still gets its result."""
    dropped = []

    def cut_once(event: dict) -> None:
        if not dropped:
            dropped.append(event["stage"])
            run_holder[0].stream._ws.sock.shutdown(2)  # what a network failure does: no close handshake

    run_holder: list[PromptRun] = []
    client = ComfyClient(comfy_server.url)
    run = PromptRun(client, _graph(PHOTO, size=144), "3", frozenset(), alive=comfy_server.alive,
                    on_progress=cut_once)
    run_holder.append(run)
    outcome = run.execute(time.monotonic() + 120)
    assert dropped, "the socket was never cut"
    assert outcome.output["ethmumbai_images"][0]["width"] == 144
    assert outcome.reports["2"]["ethmumbai_face"][0]["faces_found"] == 1  # from the events or, missed, the history
    assert client.history(run.prompt_id) is None


def test_the_face_report_comes_also_when_comfyui_serves_the_crop_from_its_cache(comfy_server):
    """Another save format reruns only the save node: the cached face crop (an output node) still reports."""
    graph = _graph(PHOTO, size=152)
    _, first = _run(comfy_server, graph)
    graph["3"]["inputs"]["format"] = "webp"
    _, again = _run(comfy_server, graph)
    assert again.output["ethmumbai_images"][0]["format"] == "webp"
    report = Workflow("v0", "0.0.0", graph, {}).face_report(again.reports)
    assert report is not None and report == Workflow("v0", "0.0.0", graph, {}).face_report(first.reports)
    assert report.faces_found == 1 and len(report.face_box) == 4


def test_node_exception_keeps_its_code(comfy_server):
    with pytest.raises(WorkerError) as caught:
        _run(comfy_server, _graph("not base64!"))
    assert caught.value.code == "INVALID_INPUT"
    assert "[" not in caught.value.message


def test_comfyui_node_errors_map_to_codes(comfy_server):
    """Real node_errors from ComfyUI: a bad value is COMFY_VALIDATION, a model not in the list MODEL_MISSING."""
    client = ComfyClient(comfy_server.url)
    bad_value = _graph(PHOTO)
    bad_value["1"]["inputs"]["max_bytes"] = 0  # below the node's minimum
    with pytest.raises(PromptRejected) as rejected:
        client.queue_prompt(bad_value, "p-bad-value", "c")
    error = rejection_error(rejected.value.error, rejected.value.node_errors, [])
    assert error.code == "COMFY_VALIDATION" and "max_bytes" in error.message

    missing = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "no_such_model.safetensors"}},
               "2": {"class_type": "CheckpointSave",
                     "inputs": {"model": ["1", 0], "clip": ["1", 1], "vae": ["1", 2], "filename_prefix": "x"}}}
    with pytest.raises(PromptRejected) as rejected:
        client.queue_prompt(missing, "p-missing", "c")
    workflow = Workflow("v0", "0.0.0", missing, {"models": [{"node": "1", "input": "ckpt_name", "folder": "checkpoints"}]})
    error = rejection_error(rejected.value.error, rejected.value.node_errors,
                            workflow.missing_models(rejected.value.node_errors))
    assert error.code == "MODEL_MISSING", error.message
    assert "no_such_model.safetensors" in error.message and "fetch_models.py" in error.message


def test_exception_messages_map_to_codes():
    assert from_exception_message("[NO_FACE_DETECTED] no face found\n").code == "NO_FACE_DETECTED"
    unknown = from_exception_message("CUDA out of memory", "KSampler")
    assert unknown.code == "COMFY_EXECUTION" and "KSampler" in unknown.message
    assert from_exception_message("[NOT_A_CODE] x").code == "COMFY_EXECUTION"
    assert "AAAA" * 40 not in from_exception_message("[INVALID_INPUT] got " + "AAAA" * 100).message
