"""The published workflow end to end: real ComfyUI on CPU, tiny random models (avatar_driver/demo/tiny_models.py).

``v1.api.json`` runs as published except for the model file names (the tiny ones) and parameters set through
``v1.params.json`` (small size, few steps). Random weights make random-looking images, so these tests check
plumbing, size, determinism and that each strength really acts, never what the image shows.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from PIL import Image

from avatar_driver.contract import load_workflows
from tools.comfy import run_prompt
from tools.images import astronaut, b64, encode

WORKFLOW = load_workflows()["v1"]
PHOTO = b64(encode(astronaut()))  # 512x512, one face
FAST = {"size": 256, "steps": 4}
# Mean absolute pixel difference (0-255) that counts as "changed": random tiny models move pixels by tens.
CHANGED = 2.0


def tiny_prompt(tiny_models: dict, **params) -> dict:
    prompt = WORKFLOW.build(PHOTO, {**FAST, **params})
    for model in WORKFLOW.spec["models"]:
        prompt[str(model["node"])]["inputs"][model["input"]] = tiny_models["files"][model["folder"]]
    return prompt


def output_image(entry: dict) -> dict:
    assert entry.get("status", {}).get("status_str") == "success", entry.get("status") or entry
    (image,) = entry["outputs"][WORKFLOW.output_node]["ethmumbai_images"]
    return {**image, "bytes": base64.b64decode(image["base64"])}


def pixels(image: dict) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(image["bytes"])).convert("RGB"), dtype=np.float32)


def mean_change(a: dict, b: dict) -> float:
    return float(np.abs(pixels(a) - pixels(b)).mean())


def cached_nodes(entry: dict) -> set[str]:
    return {node for kind, data in entry["status"]["messages"] if kind == "execution_cached" for node in data["nodes"]}


@pytest.fixture(scope="module")
def renders(tiny_comfy, tiny_models) -> dict[str, dict]:
    """One run per variant, in this order: the repeat of seed 1 follows another seed, so ComfyUI's cache (which
    keeps only the last run's node outputs) cannot answer it; the strength variants re-run from the LoRA or
    ControlNet node on."""
    variants = {
        "base": {"seed": 1},
        "other_seed": {"seed": 2},
        "repeat": {"seed": 1},
        "no_lora": {"seed": 1, "lora_strength": 0.0},
        "no_controlnet": {"seed": 1, "controlnet_strength": 0.0},
        "guidance_end": {"seed": 1, "cfg_end": 0.5},
    }
    return {name: run_prompt(tiny_comfy.url, tiny_prompt(tiny_models, **params)) for name, params in variants.items()}


def test_output_is_a_png_of_the_requested_size(renders):
    image = output_image(renders["base"])
    assert image["bytes"].startswith(b"\x89PNG\r\n\x1a\n")
    assert (image["format"], image["width"], image["height"]) == ("png", FAST["size"], FAST["size"])
    assert Image.open(io.BytesIO(image["bytes"])).size == (FAST["size"], FAST["size"])
    assert pixels(image).std() > CHANGED, "a flat image would hide every comparison below"


def test_same_seed_gives_identical_bytes(renders):
    sampler = next(iter(WORKFLOW.sampler_nodes))
    assert sampler not in cached_nodes(renders["repeat"]), "the repeat must really sample again"
    assert output_image(renders["repeat"])["bytes"] == output_image(renders["base"])["bytes"]


def test_another_seed_gives_another_image(renders):
    assert mean_change(output_image(renders["other_seed"]), output_image(renders["base"])) > CHANGED


def test_lora_changes_the_output(renders):
    assert mean_change(output_image(renders["no_lora"]), output_image(renders["base"])) > CHANGED


def test_controlnet_changes_the_output(renders):
    assert mean_change(output_image(renders["no_controlnet"]), output_image(renders["base"])) > CHANGED


def test_guidance_end_passes_the_model_through_at_1_and_changes_the_output_below(renders, tiny_comfy, tiny_models):
    """At its default 1.0 the Guidance End node leaves the image exactly as the graph without it (the quality
    speed is the old graph); below 1.0 the late steps run at cfg 1, a different image."""
    prompt = tiny_prompt(tiny_models, seed=1)
    guidance = next(nid for nid, node in prompt.items() if node["class_type"] == "EthMumbaiGuidanceEnd")
    for node in prompt.values():  # the sampler takes the LoRA's model directly, as before the node was added
        if node["inputs"].get("model") == [guidance, 0]:
            node["inputs"]["model"] = prompt[guidance]["inputs"]["model"]
    del prompt[guidance]
    without = output_image(run_prompt(tiny_comfy.url, prompt))
    assert without["bytes"] == output_image(renders["base"])["bytes"]
    assert mean_change(output_image(renders["guidance_end"]), output_image(renders["base"])) > CHANGED


def test_lora_loads_every_key(renders, tiny_comfy):
    log = tiny_comfy.log_path.read_text(errors="replace")
    assert "Requested to load" in log, "nothing was loaded: the log is not ComfyUI's"
    assert "lora key not loaded" not in log


def test_missing_model_files_are_named(tiny_comfy):
    """The production graph on a server that has only the tiny files: ComfyUI refuses the avatar's output node
    before running it, with value_not_in_list on each model input, and missing_models names every file (the turbo
    speed's prompt loads every model the graph has: the turbo LoRA on top of the default ones). The face crop, an
    output node for its report, needs no model, so ComfyUI may run it alone; the worker dequeues such a prompt."""
    prompt = WORKFLOW.prompt(PHOTO, FAST, speed="turbo")
    assert prompt.models == WORKFLOW.model_files()
    entry = run_prompt(tiny_comfy.url, prompt.graph)
    assert WORKFLOW.output_node not in entry.get("outputs", {}), "the avatar ran although no production model is there"
    missing = WORKFLOW.missing_models(entry["node_errors"])
    assert {(m.folder, m.filename) for m in missing} == {(f, name) for name, f in WORKFLOW.model_files().items()}
    for model in missing:
        (error,) = entry["node_errors"][model.node]["errors"]
        assert error["type"] == "value_not_in_list"
        assert model.filename in model.message and "python scripts/fetch_models.py" in model.message


def test_one_missing_lora_is_the_only_one_named(tiny_comfy, tiny_models):
    prompt = tiny_prompt(tiny_models, seed=1)
    lora = next(m for m in WORKFLOW.spec["models"] if m["folder"] == "loras")
    prompt[str(lora["node"])]["inputs"][lora["input"]] = "ethmumbai_style_v1.safetensors"
    entry = run_prompt(tiny_comfy.url, prompt)
    assert [(m.node, m.input, m.filename) for m in WORKFLOW.missing_models(entry["node_errors"])] == [
        (str(lora["node"]), lora["input"], "ethmumbai_style_v1.safetensors")]
