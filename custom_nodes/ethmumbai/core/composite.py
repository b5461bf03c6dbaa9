"""Put the stylized person on a branded background, or paste it back into the original photo."""

from __future__ import annotations

import functools
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import crop
from .errors import INVALID_INPUT, EthMumbaiError
from .masks import blend, feather, fit
from .tensors import batch_arrays, rgb, stack

BACKGROUND_DIR = Path(__file__).resolve().parent.parent / "assets" / "backgrounds"
COLOUR_BACKGROUNDS = ("solid", "gradient")
_HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")


def background_choices() -> list[str]:
    """The background combo: every PNG in ``assets/backgrounds`` (sorted), then ``solid`` and ``gradient``."""
    files = sorted(path.name for path in BACKGROUND_DIR.glob("*.png")) if BACKGROUND_DIR.is_dir() else []
    return [*files, *COLOUR_BACKGROUNDS]


def parse_colour(text: str) -> np.ndarray:
    """``#RRGGBB`` (the ``#`` optional) to float RGB 0..1."""
    match = _HEX_COLOUR.fullmatch(text.strip())
    if not match:
        raise EthMumbaiError(INVALID_INPUT, f"colour must look like #RRGGBB, got {text[:20]!r}")
    return np.array([int(match[1][i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0


@functools.lru_cache(maxsize=8)
def _asset(name: str, height: int, width: int) -> np.ndarray:
    """A background file scaled to cover ``height`` × ``width`` and centre-cropped; read-only, cached."""
    path = BACKGROUND_DIR / name
    if "/" in name or "\\" in name or not path.is_file():
        raise EthMumbaiError(INVALID_INPUT, f"unknown background {name!r}; choose one of {background_choices()}")
    with Image.open(path) as image:
        image = image.convert("RGB")
        scale = max(width / image.width, height / image.height)
        size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        pixels = np.asarray(image.crop((left, top, left + width, top + height)), np.float32) / 255.0
    pixels.flags.writeable = False
    return pixels


def make_background(name: str, colour: str, colour2: str, height: int, width: int) -> np.ndarray:
    """Float RGB ``[H,W,3]``: an asset file, a solid ``colour``, or a top-to-bottom ``colour`` → ``colour2`` gradient."""
    if name == "solid":
        return np.broadcast_to(parse_colour(colour), (height, width, 3))
    if name == "gradient":
        top, bottom = parse_colour(colour), parse_colour(colour2)
        ramp = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
        return np.broadcast_to(top + ramp * (bottom - top), (height, width, 3))
    return _asset(name, height, width)


def _pair(images: list[np.ndarray], masks: list[np.ndarray]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Match an image batch with a mask batch; a batch of one is reused for every item of the other."""
    if len(images) != len(masks) and 1 not in (len(images), len(masks)):
        raise EthMumbaiError(INVALID_INPUT, f"{len(images)} images but {len(masks)} masks")
    count = max(len(images), len(masks))
    return [(images[min(i, len(images) - 1)], masks[min(i, len(masks) - 1)]) for i in range(count)]


def composite(foreground: torch.Tensor, mask: torch.Tensor, background: str, colour: str, colour2: str,
              feather_px: int, original: torch.Tensor | None = None,
              crop_box: crop.CropBox | None = None) -> torch.Tensor:
    """Blend ``foreground`` over a background through ``mask`` (1 = foreground), edge feathered.

    With ``original`` and ``crop_box`` the background is the original photo instead: the foreground
    (the stylized crop) is scaled back to the box and blended into the original frame there, and
    the background/colour inputs are not used.
    """
    if (original is None) != (crop_box is None):
        raise EthMumbaiError(INVALID_INPUT, "paste-back needs both 'original' and 'crop_box' connected")
    results = []
    for pixels, alpha in _pair(batch_arrays(foreground), batch_arrays(mask)):
        pixels = rgb(pixels)
        height, width = pixels.shape[:2]
        alpha = feather(fit(alpha, height, width), feather_px)
        if crop_box is not None:
            frame = rgb(batch_arrays(original)[0])
            results.append(crop.paste(frame, pixels, alpha, crop_box))
        else:
            results.append(blend(pixels, make_background(background, colour, colour2, height, width), alpha))
    return stack(results)
