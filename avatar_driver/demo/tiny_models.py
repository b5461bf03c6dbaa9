"""Tiny random SDXL-shaped models, so the real workflow runs through real ComfyUI on a CPU in seconds.

For tests, benchmarks and ``make run``'s demo mode, never for avatars: the images are random texture (tests
assert plumbing, sizes, determinism and that a strength change alters the output, never what the image shows).

- In tests, take the session fixtures from ``tests/conftest.py``: ``tiny_models`` (the dict below) and
  ``tiny_comfy`` (a running ``ComfyProcess`` with the pack, the tiny plugin and these models).
- To start ComfyUI yourself (e.g. the worker, which owns its ``ComfyProcess``)::

      models = write_workflow_models(tmp_path / "models")  # every file the latest workflow can load
      ComfyProcess(workdir=..., plugins=[paths.PACK_DIR, TINY_PLUGIN],
                   model_paths_config=models["model_paths_config"])

  Under the workflow's own production names the workflow runs unchanged (a folder with several of them, the
  style and the turbo LoRA, gets the same tiny file under each). Under the default tiny names (``TINY_NAMES``;
  ``tiny_comfy_kwargs(tmp, names=...)`` picks others, ComfyUI folder -> file name), put ``tiny["files"][folder]``
  into each model input of the params file's ``models`` list, as ``tests/workflow/test_e2e.py`` does.
- ``write_tiny_models(models_dir, seed)`` writes the files alone; the same seed gives the same bytes.

The model class lives in the plugin ``avatar_driver/demo/tiny_sdxl`` (which ComfyUI must load: ``TINY_PLUGIN``);
the files are built by ComfyUI's own classes in a subprocess, so the calling process never imports ComfyUI.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

from avatar_driver import paths

TINY_PLUGIN = Path(__file__).resolve().parent / "tiny_sdxl"
# ComfyUI model folder -> file name.
TINY_NAMES = {
    "checkpoints": "tiny_sdxl.safetensors",
    "controlnet": "tiny_sdxl_controlnet.safetensors",
    "loras": "tiny_sdxl_lora.safetensors",
}
LORA_RANK = 4


def write_tiny_models(models_dir: Path, seed: int = 0, names: dict[str, str] | None = None) -> dict:
    """Write a tiny checkpoint, ControlNet and kohya LoRA into ``models_dir/<folder>/`` plus an extra_model_paths
    yaml for them. Returns ``{"models_dir", "model_paths_config", "files": {folder: file name}}``."""
    models_dir = Path(models_dir)
    names = {**TINY_NAMES, **(names or {})}
    pythonpath = [str(paths.comfyui_dir()), str(paths.REPO_ROOT), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, pythonpath))}
    build = subprocess.run(
        [sys.executable, "-m", "avatar_driver.demo.tiny_models", str(models_dir), "--seed", str(seed),
         "--names", json.dumps(names)],
        cwd=paths.REPO_ROOT, env=env, capture_output=True, text=True,
    )
    if build.returncode != 0:
        raise RuntimeError(f"building the tiny models failed:\n{build.stderr[-4000:]}")
    yaml_path = models_dir / "extra_model_paths.yaml"
    # A JSON string is a YAML string: safe for any path.
    yaml_path.write_text("tiny_sdxl:\n" + f"    base_path: {json.dumps(str(models_dir.resolve()))}\n"
                         + "".join(f"    {folder}: {folder}/\n" for folder in sorted(names)))
    return {"models_dir": models_dir, "model_paths_config": yaml_path, "files": names}


def write_workflow_models(models_dir: Path, seed: int = 0) -> dict:
    """Tiny models under every file name the latest workflow loads, so it runs unchanged with any preset (worker
    tests, benchmarks, the demo). A folder's second name (the turbo LoRA beside the style LoRA) is a copy."""
    from avatar_driver.contract import latest, load_workflows

    files = latest(load_workflows()).model_files()  # file name -> folder
    names: dict[str, str] = {}
    for name, folder in files.items():
        names.setdefault(folder, name)
    models = write_tiny_models(models_dir, seed, names)
    for name, folder in files.items():
        if name != names[folder]:
            shutil.copyfile(Path(models_dir) / folder / names[folder], Path(models_dir) / folder / name)
    return models


def pin_manifest(models_dir: Path, out: Path) -> Path:
    """Write a copy of the models manifest with each model the workflow loads pinned to the file's sha256 and size
    in ``models_dir``, as if those files (tiny, or the GPU benchmark's random ones) were the released ones: the
    worker checks sizes at boot, and its result cache needs every model pinned."""
    import yaml

    from avatar_driver.contract import latest, load_workflows
    from avatar_driver.manifest import load_manifest, sha256_file

    manifest = yaml.safe_load(paths.models_manifest().read_text())
    loaded = latest(load_workflows()).model_files()
    for entry in manifest["models"]:
        if entry["filename"] in loaded:
            path = Path(models_dir) / loaded[entry["filename"]] / entry["filename"]
            entry.update(sha256=sha256_file(path), size=path.stat().st_size)
            entry.pop("todo", None)
    out.write_text(yaml.safe_dump(manifest))
    load_manifest(out)  # still a valid manifest
    return out


def tiny_comfy_kwargs(tmp: Path, seed: int = 0, names: dict[str, str] | None = None) -> tuple[list[Path], Path]:
    """Write the tiny models under ``tmp/models``; return ``(plugins, model_paths_config)`` for ``ComfyProcess``."""
    models = write_tiny_models(Path(tmp) / "models", seed, names)
    return [paths.PACK_DIR, TINY_PLUGIN], models["model_paths_config"]


# ---------------------------------------------------------------------------------------------------------------
# Build side: runs in the subprocess above, with ComfyUI importable.

def _fill(module, generator) -> None:
    """ComfyUI's disable_weight_init layers start empty. Variance-preserving random weights (std 1/sqrt(fan_in)),
    so signals neither vanish nor explode through the stack and strength changes show in 8-bit output."""
    import torch

    with torch.no_grad():
        for name, param in module.named_parameters():
            if param.ndim >= 2:
                param.normal_(0.0, param[0].numel() ** -0.5, generator=generator)
            elif name.endswith(("bias", "vae_shift")):
                param.zero_()
            else:  # norm weights, logit/vae scales
                param.fill_(1.0)


def _save(tensors: dict, path: Path, metadata: dict | None = None) -> None:
    import comfy.utils
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.float16 if v.is_floating_point() else v.dtype).contiguous()
               for k, v in tensors.items()}
    comfy.utils.save_torch_file(tensors, str(path), metadata=metadata)


def _lora(unet, text_encoder, generator) -> dict:
    """kohya SDXL LoRA over every linear layer of the UNet's transformers and of both text encoders, named as
    kohya names them (``lora_unet_<ldm path>``, ``lora_te1_``/``lora_te2_``). Refuses to return a LoRA that
    ComfyUI's loader would not apply in full."""
    import comfy.lora
    import torch

    key_map = comfy.lora.model_lora_keys_unet(unet, {})
    comfy.lora.model_lora_keys_clip(text_encoder, key_map)
    weights = {**unet.state_dict(), **text_encoder.state_dict()}
    targets = {}  # lora name -> weight key
    for key, value in unet.state_dict().items():
        if value.ndim == 2 and (".transformer_blocks." in key or key.endswith((".proj_in.weight", ".proj_out.weight"))):
            targets["lora_unet_" + key[len("diffusion_model."):-len(".weight")].replace(".", "_")] = key
    targets.update({name: key for name, key in key_map.items()
                    if name.startswith(("lora_te1_text_model", "lora_te2_text_model"))})

    lora = {}
    for name, key in sorted(targets.items()):
        out_features, in_features = weights[key].shape
        # delta = up @ down * alpha / rank: about half the weight's own spread at strength 1
        lora[f"{name}.lora_down.weight"] = torch.randn(LORA_RANK, in_features, generator=generator) * in_features ** -0.5
        lora[f"{name}.lora_up.weight"] = torch.randn(out_features, LORA_RANK, generator=generator) * 0.5 * LORA_RANK ** -0.5
        lora[f"{name}.alpha"] = torch.tensor(float(LORA_RANK))

    not_loaded = []

    class Catch(logging.Handler):
        def emit(self, record):
            if "lora key not loaded" in record.getMessage():
                not_loaded.append(record.getMessage())

    catch = Catch()
    logging.getLogger().addHandler(catch)
    try:
        patches = comfy.lora.load_lora(lora, key_map)
    finally:
        logging.getLogger().removeHandler(catch)
    if not_loaded or len(patches) != len(targets):
        raise RuntimeError(f"tiny LoRA does not load cleanly: {len(patches)}/{len(targets)} patched, {not_loaded[:3]}")
    return lora


def _build(models_dir: Path, seed: int, names: dict[str, str]) -> None:
    import comfy.cli_args

    comfy.cli_args.args.cpu = True  # build on the CPU wherever this runs: same seed, same bytes
    import comfy.cldm.cldm
    import comfy.model_detection
    import comfy.ops
    import comfy.taesd.taesd
    import torch

    from avatar_driver.demo import tiny_sdxl

    generator = torch.Generator().manual_seed(seed)
    config = comfy.model_detection.model_config_from_unet_config(dict(tiny_sdxl.UNET_CONFIG))
    if not isinstance(config, tiny_sdxl.TinySDXL):
        raise RuntimeError(f"ComfyUI picked {type(config).__name__} for the tiny UNet config, not TinySDXL")
    unet = config.get_model({}, "")
    text_encoder = config.clip_target().clip(dtype=torch.float32)
    vae = comfy.taesd.taesd.TAESD()
    cn_config = {k: v for k, v in tiny_sdxl.UNET_CONFIG.items() if k != "out_channels"}
    controlnet = comfy.cldm.cldm.ControlNet(hint_channels=3, operations=comfy.ops.disable_weight_init, **cn_config)
    for module in (unet, text_encoder, vae, controlnet):
        _fill(module, generator)

    # Same key layout as comfy.sd.save_checkpoint (model.diffusion_model., conditioner.embedders., first_stage_model.)
    _save(unet.state_dict_for_saving(text_encoder.state_dict(), vae.state_dict()),
          models_dir / "checkpoints" / names["checkpoints"], {"modelspec.title": "tiny random SDXL (tests only)"})
    # ldm layout, "control_model." prefix, which ComfyUI's ControlNetLoader detects through the tiny model class.
    _save({f"control_model.{k}": v for k, v in controlnet.state_dict().items()},
          models_dir / "controlnet" / names["controlnet"])
    # No kohya metadata: safetensors writes several metadata keys in random order, and the bytes must not vary.
    _save(_lora(unet, text_encoder, generator), models_dir / "loras" / names["loras"])


def main() -> None:
    parser = argparse.ArgumentParser(description="Write tiny random SDXL-shaped models (tests only).")
    parser.add_argument("models_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--names", type=json.loads, default=TINY_NAMES, help="JSON object: folder -> file name")
    args = parser.parse_args()
    _build(args.models_dir, args.seed, args.names)


if __name__ == "__main__":
    main()
