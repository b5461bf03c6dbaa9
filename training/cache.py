"""Latents and text embeddings, computed once and shared by every run on this machine.

UNet-only training never changes the VAE or the text encoders, so their outputs are fixed inputs:
caching them means the encoders are loaded only when something is new, and freed before training.
Entries are keyed by content, model and resolution: ``<cache>/<base model sha256[:16]>/latents/<image
sha256>-<W>x<H>.safetensors`` and ``…/text/<caption sha256>.safetensors``. A new run on the same images
(another rank, learning rate, output folder) encodes nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from avatar_driver.manifest import sha256_file
from training import imaging
from training.dataset import Item

ENV_CACHE_DIR = "ETHMUMBAI_TRAINING_CACHE"

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$ETHMUMBAI_TRAINING_CACHE``, else ``~/.cache/ethmumbai_avatar/training``."""
    if os.environ.get(ENV_CACHE_DIR):
        return Path(os.environ[ENV_CACHE_DIR])
    return Path.home() / ".cache" / "ethmumbai_avatar" / "training"


def train_size(width: int, height: int, resolution: int | None) -> tuple[int, int]:
    """The size an image trains at: its own, or with ``resolution`` set and the image larger than
    ``resolution``², the nearest aspect bucket of that resolution (images are never enlarged here)."""
    if resolution is None or width * height <= resolution * resolution:
        return width, height
    return imaging.nearest_bucket(width, height, imaging.buckets(resolution))


def load_pixels(item: Item, size: tuple[int, int]) -> np.ndarray:
    """float32 [H, W, 3] in 0..1, centre-cropped to the aspect of ``size`` and resized to it when it differs."""
    with Image.open(item.image) as image:
        image = image.convert("RGB")
        if image.size != size:
            rect_w, rect_h = imaging.largest_rect(image.width, image.height, size[0] / size[1])
            x, y = imaging.place(image.width, image.height, rect_w, rect_h, image.width / 2, image.height / 2)
            image = image.resize(size, Image.Resampling.LANCZOS, box=(x, y, x + rect_w, y + rect_h))
        return np.asarray(image, dtype=np.float32) / 255.0


@dataclass
class Encoded:
    """One training example as the UNet sees it (raw VAE latent; ``process_latent_in`` is applied later)."""

    latent: torch.Tensor  # [1, C, H/8, W/8]
    cond: torch.Tensor  # [1, tokens, dim]
    pooled: torch.Tensor  # [1, pooled_dim]


class EncodingCache:
    def __init__(self, root: Path, base_sha256: str, resolution: int | None = None):
        self.folder = root / base_sha256[:16]
        self.resolution = resolution
        self.encoded = {"latents": 0, "captions": 0}  # what this run had to compute (the rest was cached)
        self._image_sha256: dict[Path, str] = {}

    def size_of(self, item: Item) -> tuple[int, int]:
        return train_size(item.width, item.height, self.resolution)

    def latent_path(self, item: Item) -> Path:
        width, height = self.size_of(item)
        if item.image not in self._image_sha256:
            self._image_sha256[item.image] = sha256_file(item.image)
        return self.folder / "latents" / f"{self._image_sha256[item.image]}-{width}x{height}.safetensors"

    def text_path(self, caption: str) -> Path:
        return self.folder / "text" / f"{hashlib.sha256(caption.encode()).hexdigest()}.safetensors"

    def missing(self, items: list[Item], extra_captions: tuple[str, ...] = ()) -> tuple[list[Item], list[str]]:
        """(items without a cached latent, captions without cached embeddings)."""
        images = [item for item in items if not self.latent_path(item).is_file()]
        wanted = {item.caption for item in items} | set(extra_captions)
        return images, sorted(c for c in wanted if not self.text_path(c).is_file())

    def fill(self, images: list[Item], captions: list[str], clip, vae) -> None:
        """Encode what is missing with ComfyUI's own VAE/CLIP objects (as VAEEncode and CLIPTextEncode do)."""
        for index, item in enumerate(images, start=1):
            size = self.size_of(item)
            latent = vae.encode(torch.from_numpy(load_pixels(item, size))[None])
            _save(self.latent_path(item), {"latent": latent.float().cpu()})
            log.info("cached latent %d/%d (%dx%d)", index, len(images), *size)
        for caption in captions:
            cond, pooled = clip.encode_from_tokens(clip.tokenize(caption), return_pooled=True)
            _save(self.text_path(caption), {"cond": cond.float().cpu(), "pooled": pooled.float().cpu()})
        self.encoded = {"latents": len(images), "captions": len(captions)}

    def text(self, caption: str) -> tuple[torch.Tensor, torch.Tensor]:
        tensors = load_file(self.text_path(caption))
        return tensors["cond"], tensors["pooled"]

    def load(self, items: list[Item]) -> list[Encoded]:
        return [Encoded(load_file(self.latent_path(item))["latent"], *self.text(item.caption)) for item in items]


def _save(path: Path, tensors: dict[str, torch.Tensor]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")  # two runs may fill the shared cache at once
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(partial))
    partial.replace(path)  # never leave a truncated cache file behind an interrupted run
