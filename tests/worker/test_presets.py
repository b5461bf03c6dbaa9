"""Styles, speeds and the optional style LoRA through the real local API (tiny models)."""

from __future__ import annotations

from tests.worker.conftest import WORKFLOW, avatar_job
from tools.images import decode_b64_image

LORA = WORKFLOW.style_lora


def codes(output: dict) -> list[str]:
    return [warning["code"] for warning in output["warnings"]]


def test_without_the_lora_the_job_renders_and_says_so(worker_server, worker_models):
    """Every model present but the style LoRA: an image, and a STYLE_LORA_MISSING warning naming the file."""
    lora_file = WORKFLOW.styles.get(None).lora
    path = worker_models["models_dir"] / LORA.folder / lora_file
    hidden = path.with_name(path.name + ".hidden")
    path.rename(hidden)
    try:
        without = worker_server.succeed(avatar_job(seed=801))
    finally:
        hidden.rename(path)
    assert decode_b64_image(without["image"]).size == (without["width"], without["height"])
    assert "STYLE_LORA_MISSING" in codes(without)
    (warning,) = [w for w in without["warnings"] if w["code"] == "STYLE_LORA_MISSING"]
    assert lora_file in warning["message"]
    with_lora = worker_server.succeed(avatar_job(seed=801))
    assert "STYLE_LORA_MISSING" not in codes(with_lora)
    assert with_lora["image"] != without["image"], "the LoRA made no difference: was it loaded at all?"


def test_every_style_renders_and_changes_the_image(worker_server):
    images = {}
    for name in WORKFLOW.styles.presets:
        output = worker_server.succeed(avatar_job(seed=802, style=name))
        assert "STYLE_LORA_MISSING" not in codes(output), name
        images[name] = output["image"]
    assert len(set(images.values())) == len(images), "two styles gave the same image"


def test_the_jobs_own_params_beat_the_style(worker_server):
    comic = WORKFLOW.styles.presets["comic"].params
    own = worker_server.succeed(avatar_job(seed=803, style="comic", cfg=comic["cfg"] + 1.0))
    assert own["image"] != worker_server.succeed(avatar_job(seed=803, style="comic"))["image"]


def test_an_unknown_style_is_invalid_input_listing_the_known_ones(worker_server):
    code, message = worker_server.fail(avatar_job(style="baroque"))
    assert code == "INVALID_INPUT"
    assert all(name in message for name in WORKFLOW.styles.presets)


def test_the_tiny_demo_worker_says_so_in_every_job(worker_server):
    assert "DEMO_MODELS" in codes(worker_server.succeed(avatar_job(seed=804)))
    assert "TINY-MODEL DEMO" in worker_server.log()


def test_turbo_needs_its_lora_and_without_it_fails_naming_the_file_and_the_fetch_command(worker_server, worker_models):
    (lightning,) = set(WORKFLOW.model_files()) - set(WORKFLOW.required_models()) - {WORKFLOW.styles.get(None).lora}
    turbo = worker_server.succeed(avatar_job(seed=805, speed="turbo"))
    assert turbo["image"] != worker_server.succeed(avatar_job(seed=805))["image"]
    path = worker_models["models_dir"] / "loras" / lightning
    hidden = path.with_name(path.name + ".hidden")
    path.rename(hidden)
    try:
        code, message = worker_server.fail(avatar_job(seed=806, speed="turbo"))
        assert code == "MODEL_MISSING", message
        assert lightning in message and f"python scripts/fetch_models.py --only {lightning}" in message
        fast = worker_server.succeed(avatar_job(seed=806, speed="fast"))  # the other speeds never load it
        assert "STYLE_LORA_MISSING" not in codes(fast)
    finally:
        hidden.rename(path)
    worker_server.succeed(avatar_job(seed=807, speed="turbo"))  # fetched again: no restart needed
