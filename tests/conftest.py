"""Test-wide settings and the shared ComfyUI server (pack loaded, no models)."""

from __future__ import annotations

import os

# Tests never reach a model hub: any implicit download must fail loudly, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

from avatar_driver.demo.tiny_models import (  # noqa: E402
    TINY_PLUGIN,
    pin_manifest,
    write_tiny_models,
    write_workflow_models,
)
from avatar_driver.paths import PACK_DIR  # noqa: E402
from tools.comfy import start_comfy  # noqa: E402


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A real headless ComfyUI 0.3.75 on CPU with the ETHMumbai pack, shared by the whole session."""
    proc = start_comfy(tmp_path_factory.mktemp("comfy"))
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict:
    """Tiny random SDXL-shaped checkpoint, ControlNet and LoRA under their tiny names (avatar_driver/demo/tiny_models.py):
    ``{"models_dir", "model_paths_config", "files": {folder: file name}}``."""
    return write_tiny_models(tmp_path_factory.mktemp("tiny_models"))


@pytest.fixture(scope="session")
def tiny_comfy(tmp_path_factory, tiny_models):
    """A real ComfyUI on CPU with the pack, the tiny SDXL plugin and only the tiny models, shared by the session."""
    proc = start_comfy(tmp_path_factory.mktemp("tiny_comfy"), plugins=[PACK_DIR, TINY_PLUGIN],
                       model_paths_config=tiny_models["model_paths_config"])
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def worker_models(tmp_path_factory) -> dict:
    """Tiny random models under the file names the workflow loads, so it runs unchanged (worker, storage, frontend)."""
    return write_workflow_models(tmp_path_factory.mktemp("worker_models"))


@pytest.fixture(scope="session")
def worker_env(worker_models, tmp_path_factory) -> dict[str, str]:
    """Env that gives the worker's ComfyUI the tiny model class (a test plugin) and the tiny model files: their folder
    as the only model location, the manifest pinned to their sizes (the worker checks them at boot), and the CPU
    asked for explicitly (the worker refuses to fall back to it on its own)."""
    manifest = pin_manifest(worker_models["models_dir"], tmp_path_factory.mktemp("worker_manifest") / "models.yaml")
    return {"COMFYUI_PLUGINS": str(TINY_PLUGIN), "MODEL_LOCATIONS": str(worker_models["models_dir"]),
            "MODELS_MANIFEST": str(manifest), "COMFYUI_ARGS": "--cpu"}
