"""Person segmentation with mediapipe's shipped selfie-segmentation model, refined against the photo."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .errors import INVALID_INPUT, EthMumbaiError
from .face import MEDIAPIPE_PIP
from .masks import feather, fit, guided_filter, keep_connected
from .models import optional_import, shared_model
from .tensors import as_float, as_uint8, batch_arrays, rgb, stack

# The general model works on 256x256; a 512 px input keeps its upsampled edges smooth and is cheap.
_MAX_SIDE = 512
REFINE_CHOICES = ("image", "none")
ISLAND_CHOICES = ("drop", "keep")
# The guided filter's edge threshold (a colour variance, 0..1 units): low enough that hair against a
# similar backdrop still counts as an edge (benchmarks/composite.py: 1e-2 lets the mask spill onto the
# old backdrop twice as far).
_EDGE_EPS = 1e-3
# The filter's linear fit leaves faint tails (a few percent) on both sides of an edge: inside the person
# they would let the new background show through the face, outside they would tint it. Within this
# distance of 0 or 1 the alpha snaps there; the ramp in between is stretched to meet.
_SNAP = 0.04


def _segmenter():
    module = optional_import("mediapipe.python.solutions.selfie_segmentation", MEDIAPIPE_PIP, "person segmentation")
    return shared_model("mediapipe_selfie", lambda: module.SelfieSegmentation(model_selection=0))


def person_probability(pixels: np.ndarray) -> np.ndarray:
    """Per-pixel person probability (float32 0..1) for a uint8 RGB image, at the image's size."""
    height, width = pixels.shape[:2]
    scale = min(1.0, _MAX_SIDE / max(height, width))
    small = pixels
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    segmenter = _segmenter()
    with segmenter.lock:
        probability = segmenter.model.process(np.ascontiguousarray(small)).segmentation_mask
    return fit(probability.astype(np.float32, copy=False), height, width)


def refine_edge(pixels: np.ndarray, hard: np.ndarray, radius: int) -> np.ndarray:
    """A soft alpha whose edge follows the photo's edges within ``radius`` px of the hard mask's edge.

    The segmenter sees the photo at 256², so its edge can sit several pixels off the real outline; a
    guided filter with the photo as guide moves it there and grades hair and other fine edges.
    """
    alpha = guided_filter(pixels, hard, radius, _EDGE_EPS)
    alpha = (alpha - _SNAP) * (1.0 / (1.0 - 2 * _SNAP))
    # In 8-bit levels, like any alpha channel (as_uint8 clips to 0..255): exactly 0 and 1 away from the
    # edge, so later steps (the composite's edge cleaning) touch only the soft band.
    return as_float(as_uint8(alpha))


def person_mask(image: torch.Tensor, threshold: float, feather_px: int, refine: str = "image",
                islands: str = "drop", face_mask: torch.Tensor | None = None) -> torch.Tensor:
    """MASK ``[B,H,W]``: 1 where the person is (probability >= threshold), with a soft edge of ``feather_px``.

    ``islands="drop"`` keeps only the part touching ``face_mask`` (or the largest part); ``refine="image"``
    fits the edge to the photo (guided filter of radius ``feather_px``), ``"none"`` blurs it evenly.
    """
    if refine not in REFINE_CHOICES or islands not in ISLAND_CHOICES:
        raise EthMumbaiError(INVALID_INPUT, f"unknown refine={refine!r} or islands={islands!r}")
    seeds = batch_arrays(face_mask) if face_mask is not None else []
    masks = []
    for index, pixels in enumerate(batch_arrays(image)):
        pixels = rgb(pixels)
        height, width = pixels.shape[:2]
        hard = (person_probability(as_uint8(pixels)) >= threshold).astype(np.float32)
        if islands == "drop":
            seed = fit(seeds[min(index, len(seeds) - 1)], height, width) if seeds else None
            hard = keep_connected(hard, seed)
        if refine == "image" and feather_px > 0:
            masks.append(refine_edge(pixels, hard, feather_px))
        else:
            masks.append(feather(hard, feather_px))
    return stack(masks)
