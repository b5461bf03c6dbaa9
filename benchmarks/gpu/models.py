"""Random-weight model files under the names the production workflow loads.

The files are made by a generator (full size: the shared gpu_anchor kit's make_random_models.py, run as a
tool from a git-ignored copy; tiny: avatar_driver/demo/tiny_models.py) in the kit's layout, ``RAW/checkpoints/
random_<arch>.safetensors``, ``RAW/controlnet/random_<arch>_controlnet.safetensors``, ``RAW/loras/
random_<arch>_lora.safetensors``. The names come from the workflow's params file (``models``), so a renamed
model in the workflow needs no change here: each is linked to the random file of its folder, and a
separate VAE (folder ``vae``) is cut out of the checkpoint's ``first_stage_model.`` tensors.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from safetensors import safe_open
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[2]
KIT_DIR = REPO_ROOT / "tools" / "gpu_anchor"
VAE_PREFIX = "first_stage_model."
RAW_NAMES = {"checkpoints": "random_{arch}.safetensors", "controlnet": "random_{arch}_controlnet.safetensors",
             "loras": "random_{arch}_lora.safetensors"}


def raw_files(raw_dir: Path, arch: str) -> dict[str, Path]:
    return {folder: raw_dir / folder / name.format(arch=arch) for folder, name in RAW_NAMES.items()}


def generate(raw_dir: Path, arch: str, comfy_dir: Path) -> dict:
    """Make the random files unless they are there; returns what it did and how long it took."""
    files = raw_files(raw_dir, arch)
    if all(p.is_file() for p in files.values()):
        return {"generated": False, "raw_dir": str(raw_dir)}
    started = time.monotonic()
    if arch == "tiny":
        from avatar_driver.demo.tiny_models import write_tiny_models

        write_tiny_models(raw_dir, names={folder: path.name for folder, path in files.items()})
    else:
        if not (KIT_DIR / "make_random_models.py").is_file():
            raise SystemExit(f"no {KIT_DIR}/make_random_models.py: run benchmarks/gpu/prepare_carry.sh first")
        subprocess.run([sys.executable, str(KIT_DIR / "make_random_models.py"), "--arch", arch,
                        "--out", str(raw_dir), "--comfy", str(comfy_dir)], check=True)
    return {"generated": True, "raw_dir": str(raw_dir), "generate_s": round(time.monotonic() - started, 1),
            "gb_on_disk": round(sum(p.stat().st_size for p in files.values()) / 1e9, 2)}


def extract_vae(checkpoint: Path, target: Path) -> None:
    """Save the checkpoint's VAE alone, in the layout VAELoader reads (prefix removed)."""
    with safe_open(str(checkpoint), framework="pt") as f:
        tensors = {k[len(VAE_PREFIX):]: f.get_tensor(k) for k in f.keys() if k.startswith(VAE_PREFIX)}
    if not tensors:
        raise ValueError(f"{checkpoint} holds no {VAE_PREFIX}* tensors")
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(target))


def link_models(model_files: dict[str, str], raw_dir: Path, arch: str, models_dir: Path) -> dict[str, str]:
    """Put every file the workflow loads (name → folder) into ``models_dir/<folder>/``; returns name → source."""
    raw = raw_files(raw_dir, arch)
    made = {}
    for name, folder in sorted(model_files.items()):
        target = models_dir / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        if folder == "vae":
            extract_vae(raw["checkpoints"], target)
            made[name] = f"VAE of {raw['checkpoints'].name}"
        elif folder in raw:
            target.symlink_to(raw[folder].resolve())
            made[name] = raw[folder].name
        else:
            raise SystemExit(f"the benchmark has no random model for folder {folder!r} ({name}); "
                             f"it makes {sorted(raw)} and vae")
    return made


def write_model_paths(models_dir: Path, folders: set[str], path: Path) -> Path:
    """An extra_model_paths.yaml that points ComfyUI at ``models_dir`` for each folder."""
    lines = ["gpu_bench:", f"    base_path: {json.dumps(str(models_dir.resolve()))}"]
    lines += [f"    {folder}: {folder}" for folder in sorted(folders)]
    path.write_text("\n".join(lines) + "\n")
    return path
