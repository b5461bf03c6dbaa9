"""Where the worker finds its models (MODEL_LOCATIONS: a baked folder, a volume folder, RunPod's cached-models
Hugging Face layout), and that it refuses to become ready without them, or without a GPU it was not told to skip.
Each through the runpod SDK's real local API with a real ComfyUI and the tiny models."""

from __future__ import annotations

import os
import shutil

import pytest

from avatar_driver.demo.tiny_models import pin_manifest
from avatar_driver.manifest import load_manifest
from tests.worker.conftest import WORKFLOW, avatar_job
from tools.worker_server import start_worker


def _manifest_entry(manifest, folder: str, filename: str):
    return next(m for m in manifest.models if (m.folder, m.filename) == (folder, filename))


def test_a_missing_required_model_refuses_readiness_naming_each_file_and_where_it_looked(tmp_path, worker_env):
    empty = tmp_path / "nothing-here"
    env = {**worker_env, "MODEL_LOCATIONS": ",".join([str(empty), f"hf:{tmp_path / 'hub'}"])}
    with pytest.raises(RuntimeError, match="exited with 1") as caught:
        start_worker(tmp_path / "worker", env)
    log = str(caught.value)
    required = WORKFLOW.required_models()
    for name, folder in required.items():
        (line,) = [line for line in log.splitlines() if f"model {folder}/{name} not found" in line]
        assert str(empty / folder / name) in line
    style_lora = WORKFLOW.graph[WORKFLOW.style_lora.node]["inputs"][WORKFLOW.style_lora.input]
    assert style_lora not in log, "the optional style LoRA is not a reason to refuse"
    preset_only = set(WORKFLOW.model_files()) - set(required) - {style_lora}
    assert preset_only, "the turbo speed's LoRA is loaded by its preset only"
    for name in preset_only:  # named, with its consequence, but no reason to refuse
        (line,) = [line for line in log.splitlines() if f"/{name} not found" in line]
        assert "WARNING" in line and "fail with MODEL_MISSING" in line and f"--only {name}" in line
    assert "refusing to report ready" in log
    assert "ComfyUI ready" not in log, "the check runs before ComfyUI is started"


@pytest.fixture(scope="module")
def spread_models(tmp_path_factory, worker_models):
    """The workflow's models spread over three locations: a checkpoint of the wrong size baked in (a truncated
    copy), the right checkpoint and the LoRA on the volume, the ControlNet only in a Hugging Face cache, under the
    repository's file name and as a link into the cache's blobs, as huggingface_hub lays it out."""
    tmp = tmp_path_factory.mktemp("spread")
    manifest_path = pin_manifest(worker_models["models_dir"], tmp / "models.yaml")
    manifest = load_manifest(manifest_path)
    baked, volume, hub = tmp / "baked", tmp / "volume", tmp / "hub"
    placed = {}
    for name, folder in WORKFLOW.model_files().items():
        source = worker_models["models_dir"] / folder / name
        entry = _manifest_entry(manifest, folder, name)
        if folder == "controlnet":
            hf = entry.source.hf
            repo_dir = hub / f"models--{hf.repo.replace('/', '--')}"
            blob = repo_dir / "blobs" / entry.sha256
            blob.parent.mkdir(parents=True)
            shutil.copyfile(source, blob)
            dest = repo_dir / "snapshots" / hf.revision / hf.file
            dest.parent.mkdir(parents=True)
            dest.symlink_to(os.path.relpath(blob, dest.parent))
        else:
            dest = volume / folder / name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        if folder == "checkpoints":
            (baked / folder).mkdir(parents=True)
            (baked / folder / name).write_bytes(source.read_bytes()[: entry.size // 2])
        placed[folder] = (name, dest)
    locations = ",".join([str(baked), str(volume), f"hf:{hub}"])
    return {"manifest": str(manifest_path), "locations": locations, "placed": placed, "baked": baked}


@pytest.fixture(scope="module")
def spread_worker(tmp_path_factory, worker_env, spread_models):
    env = {**worker_env, "MODEL_LOCATIONS": spread_models["locations"], "MODELS_MANIFEST": spread_models["manifest"]}
    server = start_worker(tmp_path_factory.mktemp("spread_worker"), env)
    server.succeed(avatar_job(seed=81))  # the workflow loads all three
    yield server
    server.stop()


def _link(server, folder: str, name: str):
    return (server.workdir / "model-links" / folder / name).resolve()


def test_a_model_only_on_the_volume_is_used_and_a_wrong_sized_copy_is_passed_over(spread_worker, spread_models):
    name, dest = spread_models["placed"]["checkpoints"]
    assert _link(spread_worker, "checkpoints", name) == dest.resolve()
    log = spread_worker.log()
    assert f"{spread_models['baked'] / 'checkpoints' / name} is " in log and "the manifest says" in log
    lora_name, lora_dest = spread_models["placed"]["loras"]
    assert _link(spread_worker, "loras", lora_name) == lora_dest.resolve()


def test_a_model_only_in_the_hugging_face_cache_is_used_under_the_workflows_file_name(spread_worker, spread_models):
    name, dest = spread_models["placed"]["controlnet"]
    assert dest.name != name, "the manifest renames this file: the cache holds it under the repository's name"
    assert _link(spread_worker, "controlnet", name) == dest.resolve()  # the blob the snapshot links to
    spread_worker.succeed(avatar_job(seed=82))


def test_without_a_gpu_the_worker_refuses_unless_told_to_use_the_cpu(tmp_path, worker_env):
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has a GPU")
    env = {**worker_env, "COMFYUI_ARGS": ""}
    with pytest.raises(RuntimeError, match="exited with 1") as caught:
        start_worker(tmp_path / "worker", env)
    assert "no CUDA GPU" in str(caught.value) and "COMFYUI_ARGS=--cpu" in str(caught.value)
