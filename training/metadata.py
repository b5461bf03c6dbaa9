"""LoRA file metadata (kohya ``ss_*`` and SAI ModelSpec ``modelspec.*`` keys) written with reproducible bytes.

A1111/Forge read ``ss_base_model_version`` / ``modelspec.architecture`` to know the base model and show
``ss_tag_frequency``; ComfyUI ignores metadata. Nothing time- or path-dependent is written, and the
safetensors header is re-serialised with sorted keys (the library writes its metadata map in hash order,
which changes between processes), so the same weights and settings always give the same file hash.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import save

MODELSPEC_ARCHITECTURE = "stable-diffusion-xl-v1-base/lora"
MODELSPEC_IMPLEMENTATION = "https://github.com/Stability-AI/generative-models"
KOHYA_BASE_VERSION = "sdxl_base_v1-0"
HEADER_ALIGNMENT = 8  # safetensors pads its JSON header with spaces to a multiple of 8 bytes


def tag_frequency(captions: list[str]) -> dict[str, dict[str, int]]:
    """kohya's ``ss_tag_frequency``: comma-separated caption tags counted, under one dataset folder name."""
    counts = Counter(tag.strip() for caption in captions for tag in caption.split(",") if tag.strip())
    return {"train": dict(sorted(counts.items()))}


def lora_metadata(*, name: str, trigger: str, base_name: str, base_sha256: str, dataset_sha256: str,
                  train_images: int, captions: list[str], step: int, config, resolution: tuple[int, int],
                  mixed_precision: str) -> dict[str, str]:
    """The metadata of a LoRA file at ``step`` (``config`` is the run's TrainConfig); every value a string."""
    width, height = resolution
    meta = {
        "modelspec.sai_model_spec": "1.0.0",
        "modelspec.architecture": MODELSPEC_ARCHITECTURE,
        "modelspec.implementation": MODELSPEC_IMPLEMENTATION,
        "modelspec.title": name,
        "modelspec.resolution": f"{width}x{height}",
        "modelspec.prediction_type": "epsilon",
        "modelspec.description": f"ETHMumbai style LoRA for SDXL, trained {step} steps on {train_images} images",
        "ss_network_module": "networks.lora",
        "ss_network_dim": str(config.rank),
        "ss_network_alpha": f"{config.alpha:g}",
        "ss_network_train_unet_only": "True",
        "ss_base_model_version": KOHYA_BASE_VERSION,
        "ss_sd_model_name": base_name,
        "ss_new_sd_model_hash": base_sha256,
        "ss_output_name": name,
        "ss_steps": str(step),
        "ss_max_train_steps": str(config.steps),
        "ss_learning_rate": f"{config.learning_rate:g}",
        "ss_unet_lr": f"{config.learning_rate:g}",
        "ss_text_encoder_lr": "0",
        "ss_lr_scheduler": "constant_with_warmup" if config.warmup_steps else "constant",
        "ss_lr_warmup_steps": str(config.warmup_steps),
        "ss_optimizer": f"torch.optim.AdamW(weight_decay={config.weight_decay:g})",
        "ss_max_grad_norm": f"{config.max_grad_norm:g}",
        "ss_batch_size_per_device": str(config.batch_size),
        "ss_gradient_checkpointing": str(config.gradient_checkpointing),
        "ss_mixed_precision": mixed_precision,
        "ss_num_train_images": str(train_images),
        "ss_resolution": f"({width}, {height})",
        "ss_seed": str(config.seed),
        "ss_noise_offset": f"{config.noise_offset:g}",
        "ss_min_snr_gamma": f"{config.min_snr_gamma:g}" if config.min_snr_gamma else "None",
        "ss_caption_dropout_rate": f"{config.caption_dropout:g}",
        "ss_tag_frequency": json.dumps(tag_frequency(captions), sort_keys=True),
        "ethmumbai.dataset_sha256": dataset_sha256,
        "ethmumbai.ema_decay": f"{config.ema:g}" if config.ema else "None",
    }
    if trigger:
        meta |= {"modelspec.trigger_phrase": trigger, "modelspec.usage_hint": f"put {trigger} in the prompt"}
    return meta


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """safetensors file contents with the header's keys sorted, plus the ``sshs_model_hash`` /
    ``modelspec.hash_sha256`` of the tensor data (sha256 of the bytes after the header, as A1111 hashes LoRAs)."""
    raw = save({k: v.contiguous() for k, v in tensors.items()})
    length = int.from_bytes(raw[:8], "little")
    header, data = json.loads(raw[8:8 + length]), raw[8 + length:]
    if metadata is not None:
        data_sha256 = hashlib.sha256(data).hexdigest()
        header["__metadata__"] = metadata | {"sshs_model_hash": data_sha256, "modelspec.hash_sha256": f"0x{data_sha256}"}
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % HEADER_ALIGNMENT)
    return len(text).to_bytes(8, "little") + text + data


def write_safetensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> None:
    """Write atomically (a partial file is renamed into place), readable by everyone like a downloaded model."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(safetensors_bytes(tensors, metadata))
    partial.chmod(0o644)
    partial.replace(path)
