"""Put the stylized person on a branded background, or paste it back into the original photo.

A background is data: ``assets/backgrounds/backgrounds.json`` names each background PNG and its
optional overlay PNG (RGBA: frame, ring, badge or banner), drawn over the person so the brand is
never hidden. A designer adds a background with the two files and one JSON entry.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from . import crop
from .errors import INVALID_INPUT, EthMumbaiError
from .masks import blend, estimate_foreground, feather, fit
from .tensors import batch_arrays, rgb, stack

BACKGROUND_DIR = Path(__file__).resolve().parent.parent / "assets" / "backgrounds"
CATALOGUE = "backgrounds.json"
COLOUR_BACKGROUNDS = ("solid", "gradient")
_HEX_COLOUR = re.compile(r"#?([0-9a-fA-F]{6})")


@functools.lru_cache(maxsize=4)
def catalogue(directory: Path = BACKGROUND_DIR) -> dict[str, dict]:
    """The backgrounds.json entries, checked: ``{name: {"label", "overlay"?: {"file", "center", "width"}}}``.

    ``name`` is the background PNG's file name; ``center`` ([x, y]) and ``width`` place the overlay, as
    fractions of the output's width/height and of its shorter side. A mistake names the file and entry.
    """
    path = directory / CATALOGUE
    if not path.is_file():
        return {}
    entries = json.loads(path.read_text(encoding="utf-8"))
    for name, entry in entries.items():
        overlay = entry.get("overlay")
        files = [name, *([overlay["file"]] if overlay else [])]
        problems = [f"{file} is not a file beside it" for file in files
                    if Path(file).name != file or not (directory / file).is_file()]
        if overlay and not (len(overlay.get("center", ())) == 2 and 0 < overlay.get("width", 0) <= 4):
            problems.append("overlay needs center [x, y] and a width in (0, 4]")
        if problems:
            raise ValueError(f"{path}: entry {name!r}: {'; '.join(problems)}")
    return entries


def background_choices() -> list[str]:
    """The background combo: the backgrounds.json entries in file order, then ``solid`` and ``gradient``."""
    return [*catalogue(BACKGROUND_DIR), *COLOUR_BACKGROUNDS]


def parse_colour(text: str) -> np.ndarray:
    """``#RRGGBB`` (the ``#`` optional) to float RGB 0..1."""
    match = _HEX_COLOUR.fullmatch(text.strip())
    if not match:
        raise EthMumbaiError(INVALID_INPUT, f"colour must look like #RRGGBB, got {text[:20]!r}")
    return np.array([int(match[1][i:i + 2], 16) for i in (0, 2, 4)], np.float32) / 255.0


@functools.lru_cache(maxsize=8)
def _asset(name: str, height: int, width: int) -> np.ndarray:
    """A background file scaled to cover ``height`` × ``width`` and centre-cropped; read-only, cached."""
    if name not in catalogue(BACKGROUND_DIR):
        raise EthMumbaiError(INVALID_INPUT, f"unknown background {name!r}; choose one of {background_choices()}")
    with Image.open(BACKGROUND_DIR / name) as image:
        image = image.convert("RGB")
        scale = max(width / image.width, height / image.height)
        size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        left, top = (size[0] - width) // 2, (size[1] - height) // 2
        pixels = np.asarray(image.crop((left, top, left + width, top + height)), np.float32) / 255.0
    pixels.flags.writeable = False
    return pixels


@dataclass(frozen=True)
class Overlay:
    """A background's overlay placed on a canvas: its visible pixels only (flat indices into ``H*W``),
    their coverage ``alpha`` ``[N,1]`` and premultiplied colour ``rgb`` ``[N,3]``. Drawing it touches
    only those pixels (a ring and a banner are a few percent of the canvas)."""

    index: np.ndarray
    alpha: np.ndarray
    rgb: np.ndarray

    def draw(self, pixels: np.ndarray) -> np.ndarray:
        """The overlay over ``pixels`` (float RGB ``[H,W,3]``, changed in place and returned)."""
        flat = pixels.reshape(-1, 3)
        flat[self.index] = flat[self.index] * (1.0 - self.alpha) + self.rgb
        return pixels


@functools.lru_cache(maxsize=8)
def overlay(name: str, height: int, width: int) -> Overlay | None:
    """A background's overlay placed on a ``height`` × ``width`` canvas per backgrounds.json; or None. Cached."""
    entry = catalogue(BACKGROUND_DIR).get(name, {}).get("overlay")
    if entry is None:
        return None
    with Image.open(BACKGROUND_DIR / entry["file"]) as image:
        image = image.convert("RGBa")  # premultiplied, so resampled soft edges keep their colour
        scale = entry["width"] * min(height, width) / image.width
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
        left = round(entry["center"][0] * width - size[0] / 2)
        top = round(entry["center"][1] * height - size[1] / 2)
        canvas = Image.new("RGBa", (width, height))
        canvas.paste(image, (left, top))
        layer = np.asarray(canvas, np.float32).reshape(-1, 4) / 255.0
    index = np.flatnonzero(layer[:, 3] > 0)
    return Overlay(index, layer[index, 3:], layer[index, :3])


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
              crop_box: crop.CropBox | None = None, clean_edge: bool = True) -> torch.Tensor:
    """Blend ``foreground`` over a background through ``mask`` (1 = foreground), edge feathered, then
    draw the background's overlay (if it has one) over everything.

    ``clean_edge`` replaces the colour in the mask's soft band by the estimated foreground colour, so
    none of the photo's old backdrop shows on the new background.

    With ``original`` and ``crop_box`` the background is the original photo instead: the foreground
    (the stylized crop) is scaled back to the box and blended into the original frame there, and
    the background/colour inputs are not used (nor the edge cleaning: the photo's backdrop belongs there).
    With ``crop_box`` alone, a crop that was turned to make a tilted head upright is turned back first
    (the photo's pose on the background).
    """
    if original is not None and crop_box is None:
        raise EthMumbaiError(INVALID_INPUT, "paste-back needs both 'original' and 'crop_box' connected")
    results = []
    for pixels, alpha in _pair(batch_arrays(foreground), batch_arrays(mask)):
        pixels = rgb(pixels)
        height, width = pixels.shape[:2]
        alpha = feather(fit(alpha, height, width), feather_px)
        if original is None and crop_box is not None:
            pixels, alpha = crop.turn_back(pixels, alpha, crop_box)
        if original is not None:
            frame = rgb(batch_arrays(original)[0])
            results.append(crop.paste(frame, pixels, alpha, crop_box))
        else:
            if clean_edge:
                pixels = estimate_foreground(pixels, alpha)
            result = blend(pixels, make_background(background, colour, colour2, height, width), alpha)
            layer = overlay(background, height, width) if background not in COLOUR_BACKGROUNDS else None
            results.append(result if layer is None else layer.draw(result))
    return stack(results)
