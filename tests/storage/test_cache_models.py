"""The result cache keys on the models a job really loads: public models alone cache; a model in use without a
pinned sha256 turns the cache off for that job, visibly (CACHE_DISABLED). Real worker, local API, moto_server.

This worker boots with the public models only (the style LoRA is not there, as on day one) and a manifest that
pins every model but the LoRA (as today's models_manifest.yaml does: the LoRA is not released).
"""

from __future__ import annotations

import uuid

import pytest
import yaml

from avatar_driver.demo.tiny_models import TINY_PLUGIN, pin_manifest, write_workflow_models
from tests.worker.conftest import WORKFLOW, avatar_job
from tools.worker_server import start_worker

LORA_FILE = WORKFLOW.styles.get(None).lora
PROMPT_ONLY = next(name for name, preset in WORKFLOW.styles.presets.items() if preset.lora is None)


def unpin(manifest_path, filename: str):
    manifest = yaml.safe_load(manifest_path.read_text())
    for entry in manifest["models"]:
        if entry["filename"] == filename:
            entry.update(sha256=None, size=None, todo="not released yet")
    manifest_path.write_text(yaml.safe_dump(manifest))
    return manifest_path


@pytest.fixture(scope="module")
def stack(tmp_path_factory, moto):
    workdir = tmp_path_factory.mktemp("cache-models")
    models = write_workflow_models(workdir / "models")
    manifest = unpin(pin_manifest(models["models_dir"], workdir / "manifest.yaml"), LORA_FILE)
    lora_path = models["models_dir"] / WORKFLOW.style_lora.folder / LORA_FILE
    parked = lora_path.rename(workdir / LORA_FILE)
    env = {"COMFYUI_PLUGINS": str(TINY_PLUGIN), "MODEL_LOCATIONS": str(models["models_dir"]), "COMFYUI_ARGS": "--cpu",
           "STORAGE_BUCKET": moto.new_bucket(), "STORAGE_ENDPOINT_URL": moto.url,
           "STORAGE_ACCESS_KEY_ID": "k", "STORAGE_SECRET_ACCESS_KEY": f"s-{uuid.uuid4().hex}",
           "MODELS_MANIFEST": str(manifest), "WARMUP": "1"}
    server = start_worker(workdir / "worker", env)
    yield server, lora_path, parked
    server.stop()


def codes(output: dict) -> list[str]:
    return [warning["code"] for warning in output["warnings"]]


def test_public_models_alone_warm_up_render_and_cache(stack):
    server, _, _ = stack
    log = server.log()
    assert "warm-up: STYLE_LORA_MISSING" in log and "warm-up finished in" in log
    first = server.succeed(avatar_job(seed=21))
    again = server.succeed(avatar_job(seed=21))
    assert (first["cached"], again["cached"]) == (False, True)
    assert again["image"] == first["image"]
    for output in (first, again):
        assert "STYLE_LORA_MISSING" in codes(output) and "CACHE_DISABLED" not in codes(output)


def test_an_unpinned_model_in_use_turns_the_cache_off_with_a_warning(stack):
    server, lora_path, parked = stack
    parked.rename(lora_path)  # the LoRA arrives on the running worker, its hash not pinned yet
    with_lora = [server.succeed(avatar_job(seed=22)) for _ in range(2)]
    assert [out["cached"] for out in with_lora] == [False, False]
    for output in with_lora:
        assert "STYLE_LORA_MISSING" not in codes(output)
        (warning,) = [w for w in output["warnings"] if w["code"] == "CACHE_DISABLED"]
        assert LORA_FILE in warning["message"]
    # A style that does not load the LoRA still caches.
    prompt_only = [server.succeed(avatar_job(seed=22, style=PROMPT_ONLY)) for _ in range(2)]
    assert [out["cached"] for out in prompt_only] == [False, True]
    assert all("CACHE_DISABLED" not in codes(out) for out in prompt_only)
