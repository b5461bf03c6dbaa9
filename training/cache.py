"""Latents and text embeddings, computed once per image/caption and kept on disk.

UNet-only training never changes the VAE or the text encoders, so their outputs are fixed inputs:
caching them means the encoders are loaded only when something is new, and freed before training.
Files are named by the sha256 of the image file / caption text, under a folder per base model.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from avatar_driver.manifest import sha256_file
from training.dataset import Item

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    """One training example as the UNet sees it (raw VAE latent; ``process_latent_in`` is applied later)."""

    latent: torch.Tensor  # [1, C, H/8, W/8]
    cond: torch.Tensor  # [1, tokens, dim]
    pooled: torch.Tensor  # [1, pooled_dim]


class EncodingCache:
    def __init__(self, folder: Path):
        self.folder = folder

    def latent_path(self, item: Item) -> Path:
        return self.folder / "latents" / f"{sha256_file(item.image)}.safetensors"

    def text_path(self, caption: str) -> Path:
        return self.folder / "text" / f"{hashlib.sha256(caption.encode()).hexdigest()}.safetensors"

    def missing(self, items: list[Item]) -> tuple[list[Item], list[str]]:
        """(items without a cached latent, captions without cached embeddings)."""
        images = [item for item in items if not self.latent_path(item).is_file()]
        captions = sorted({item.caption for item in items if not self.text_path(item.caption).is_file()})
        return images, captions

    def fill(self, images: list[Item], captions: list[str], clip, vae) -> None:
        """Encode what is missing with ComfyUI's own VAE/CLIP objects (as VAEEncode and CLIPTextEncode do)."""
        for index, item in enumerate(images, start=1):
            pixels = np.asarray(Image.open(item.image).convert("RGB"), dtype=np.float32) / 255.0
            latent = vae.encode(torch.from_numpy(pixels)[None])
            _save(self.latent_path(item), {"latent": latent.float().cpu()})
            log.info("cached latent %d/%d (%dx%d)", index, len(images), item.width, item.height)
        for caption in captions:
            cond, pooled = clip.encode_from_tokens(clip.tokenize(caption), return_pooled=True)
            _save(self.text_path(caption), {"cond": cond.float().cpu(), "pooled": pooled.float().cpu()})
        if captions:
            log.info("cached text embeddings of %d captions", len(captions))

    def load(self, items: list[Item]) -> list[Encoded]:
        out = []
        for item in items:
            text = load_file(self.text_path(item.caption))
            out.append(Encoded(load_file(self.latent_path(item))["latent"], text["cond"], text["pooled"]))
        return out


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial))
    partial.replace(path)  # never leave a truncated cache file behind an interrupted run
