"""Pure image functions for dataset preparation: load, perceptual hash, crop placement, aspect buckets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps
from scipy.fft import dctn

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff"})


def load_rgb(path: Path) -> np.ndarray:
    """uint8 ``[H,W,3]``: EXIF orientation applied, alpha composited on white (no black halos), first frame."""
    with Image.open(path) as image:
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(white, rgba)
        return np.asarray(image.convert("RGB"))


def phash(pixels: np.ndarray) -> int:
    """64-bit DCT perceptual hash: resampling, recompression and small edits keep it within a few bits."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    small = cv2.resize(grey, (32, 32), interpolation=cv2.INTER_AREA).astype(np.float32)
    low = dctn(small, norm="ortho")[:8, :8].ravel()
    bits = low > np.median(low)
    return int("".join("1" if bit else "0" for bit in bits), 2)


def hamming(a: int, b: int) -> int:
    return (a ^ b).bit_count()


def subject_centre(pixels: np.ndarray) -> tuple[float, float]:
    """Centroid of edge energy: where the detail is, when there is no face to centre on.

    Style artwork often has flat backgrounds, so the gradient mass sits on the subject.
    """
    height, width = pixels.shape[:2]
    scale = min(1.0, 256 / max(height, width))
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        grey = cv2.resize(grey, (max(1, round(width * scale)), max(1, round(height * scale))),
                          interpolation=cv2.INTER_AREA)
    grey = grey.astype(np.float32)
    energy = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    total = float(energy.sum())
    if total <= 0.0:
        return width / 2.0, height / 2.0
    ys, xs = np.indices(energy.shape, dtype=np.float32)
    return float((xs * energy).sum() / total / scale), float((ys * energy).sum() / total / scale)


def place(width: int, height: int, rect_w: int, rect_h: int, cx: float, cy: float) -> tuple[int, int]:
    """Top-left of a ``rect_w`` x ``rect_h`` rectangle centred on (cx, cy) as far as the frame allows."""
    x = min(max(round(cx - rect_w / 2.0), 0), width - rect_w)
    y = min(max(round(cy - rect_h / 2.0), 0), height - rect_h)
    return x, y


def largest_rect(width: int, height: int, aspect: float) -> tuple[int, int]:
    """The largest rectangle of ``aspect`` (w/h) inside the frame."""
    if width / height > aspect:
        return max(1, min(width, round(height * aspect))), height
    return width, max(1, min(height, round(width / aspect)))


MAX_ASPECT = 2.0


def buckets(size: int, step: int = 64) -> list[tuple[int, int]]:
    """Bucket sizes (w, h): multiples of ``step``, area at most ``size``², aspect between 1:2 and 2:1."""
    area = size * size
    out = set()
    for width in range(size, 2 * size + 1, step):
        height = (area // width) // step * step
        if height and width <= MAX_ASPECT * height:
            out.update({(width, height), (height, width)})
    return sorted(out)


def nearest_bucket(width: int, height: int, choices: list[tuple[int, int]]) -> tuple[int, int]:
    """The bucket whose aspect ratio is closest to the image's (compared as log ratios)."""
    aspect = np.log(width / height)
    return min(choices, key=lambda wh: (abs(np.log(wh[0] / wh[1]) - aspect), -wh[0] * wh[1]))
