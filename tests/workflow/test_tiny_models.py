"""The tiny-model kit itself: seeded, so every run of the suite tests the same models."""

from __future__ import annotations

import hashlib

from avatar_driver.demo.tiny_models import TINY_PLUGIN, tiny_comfy_kwargs
from avatar_driver.paths import PACK_DIR


def digests(models: dict) -> dict[str, str]:
    root = models["models_dir"]
    return {folder: hashlib.sha256((root / folder / name).read_bytes()).hexdigest()
            for folder, name in models["files"].items()}


def test_same_seed_writes_the_same_bytes_under_any_names(tiny_models, tmp_path):
    names = {"checkpoints": "a.safetensors", "controlnet": "b.safetensors", "loras": "c.safetensors"}
    plugins, config = tiny_comfy_kwargs(tmp_path, names=names)
    assert plugins == [PACK_DIR, TINY_PLUGIN]
    assert f'base_path: "{tmp_path / "models"}"' in config.read_text()
    again = {"models_dir": tmp_path / "models", "files": names}
    assert list(digests(again).values()) == list(digests(tiny_models).values())
