"""Where things live. Every path can be overridden by environment variable (Docker, RunPod volume)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PACK_DIR = REPO_ROOT / "custom_nodes" / "ethmumbai"
WORKFLOWS_DIR = REPO_ROOT / "workflows"
# ComfyUI model folders, each a subfolder of models/ (same names, so artists recognise them).
MODEL_FOLDERS = ["checkpoints", "loras", "controlnet", "vae", "clip", "annotators", "upscale_models"]


def comfyui_dir() -> Path:
    return Path(os.environ.get("COMFYUI_DIR", REPO_ROOT / ".comfyui" / "ComfyUI"))


def model_paths_config() -> Path:
    return Path(os.environ.get("EXTRA_MODEL_PATHS", REPO_ROOT / "extra_model_paths.yaml"))


def workflows_dir() -> Path:
    return Path(os.environ.get("WORKFLOWS_DIR", WORKFLOWS_DIR))


def models_manifest() -> Path:
    return Path(os.environ.get("MODELS_MANIFEST", REPO_ROOT / "models_manifest.yaml"))
