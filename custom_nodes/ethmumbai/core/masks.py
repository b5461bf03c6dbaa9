"""Mask helpers shared by the segmentation, composite and paste-back steps."""

from __future__ import annotations

import cv2
import numpy as np

from .tensors import as_float, as_uint8


def feather(mask: np.ndarray, pixels: int) -> np.ndarray:
    """Soften a mask's edge: a Gaussian of sigma ``pixels``/2, so the ramp spans about ``pixels`` on each side.

    Blurred as 8-bit levels (the precision of any alpha channel), where OpenCV's fixed-point
    Gaussian is about 3x faster than in float.
    """
    if pixels <= 0:
        return mask
    blurred = cv2.GaussianBlur(as_uint8(mask), (0, 0), sigmaX=pixels / 2.0, borderType=cv2.BORDER_REPLICATE)
    return as_float(blurred)


def fit(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A float mask resized (bilinear) to ``height`` × ``width``."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)


def blend(front: np.ndarray, back: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``weight * front + (1 - weight) * back`` for float ``[H,W,C]`` images and an ``[H,W]`` weight.

    Written as two products rather than ``back + weight * (front - back)`` so it is exact where
    the weight is 1 or 0 (an untouched crop pastes back bit-exact).
    """
    channels = front.shape[-1]
    out = cv2.multiply(np.ascontiguousarray(front), cv2.merge([weight] * channels))
    inverse = cv2.merge([1.0 - weight] * channels)
    cv2.multiply(np.ascontiguousarray(back), inverse, dst=inverse)  # reuse buffers: 1024² float is 12 MB each
    return cv2.add(out, inverse, dst=out)
