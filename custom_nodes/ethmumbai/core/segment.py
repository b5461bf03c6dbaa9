"""Person segmentation with mediapipe's shipped selfie-segmentation model."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from .face import MEDIAPIPE_PIP
from .masks import feather, fit
from .models import optional_import, shared_model
from .tensors import as_uint8, batch_arrays, rgb, stack

# The general model works on 256x256; a 512 px input keeps its upsampled edges smooth and is cheap.
_MAX_SIDE = 512


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


def person_mask(image: torch.Tensor, threshold: float, feather_px: int) -> torch.Tensor:
    """MASK ``[B,H,W]``: 1 where the person is (probability >= threshold), edge feathered by ``feather_px``."""
    masks = []
    for pixels in batch_arrays(image):
        probability = person_probability(as_uint8(rgb(pixels)))
        masks.append(feather((probability >= threshold).astype(np.float32), feather_px))
    return stack(masks)
