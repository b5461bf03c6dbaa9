"""Square crop boxes: take a padded square out of a frame, and paste a (stylized) square back.

A box may extend past the frame border; the outside is filled by replicating the edge pixels
(no black bars for the diffusion model to draw on). Box coordinates are whole source pixels, so
cropping at ``output_size == size`` and pasting back reproduces the frame exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .errors import INVALID_INPUT, EthMumbaiError
from .masks import blend


@dataclass(frozen=True)
class CropBox:
    """The ``ETHMUMBAI_CROP_BOX`` value: a square box in source pixels and the size it was resized to."""

    source_width: int
    source_height: int
    x: int
    y: int
    size: int
    output_size: int

    def __post_init__(self) -> None:
        if min(self.source_width, self.source_height, self.size, self.output_size) < 1:
            raise EthMumbaiError(INVALID_INPUT, f"crop box has a non-positive size: {self}")
        if (self.x >= self.source_width or self.y >= self.source_height
                or self.x + self.size <= 0 or self.y + self.size <= 0):
            raise EthMumbaiError(INVALID_INPUT, f"crop box lies outside its source image: {self}")

    def to_output(self, x: float, y: float) -> tuple[float, float]:
        """A source-pixel point in output-pixel coordinates."""
        scale = self.output_size / self.size
        return (x - self.x) * scale, (y - self.y) * scale


def box_around(x: float, y: float, w: float, h: float, margin: float,
               source_width: int, source_height: int, output_size: int) -> CropBox:
    """Square box centred on a face box, grown by ``margin`` × face size on each side."""
    side = max(1, round(max(w, h) * (1.0 + 2.0 * margin)))
    left = round(x + w / 2.0 - side / 2.0)
    top = round(y + h / 2.0 - side / 2.0)
    return CropBox(source_width, source_height, left, top, side, output_size)


def centre_box(source_width: int, source_height: int, output_size: int) -> CropBox:
    """The largest square in the middle of the frame."""
    side = min(source_width, source_height)
    return CropBox(source_width, source_height, (source_width - side) // 2, (source_height - side) // 2, side,
                   output_size)


def _overlap(box: CropBox) -> tuple[int, int, int, int]:
    """The part of the box inside the frame, as (x0, y0, x1, y1) in source pixels."""
    return (max(box.x, 0), max(box.y, 0),
            min(box.x + box.size, box.source_width), min(box.y + box.size, box.source_height))


def resize(pixels: np.ndarray, width: int, height: int) -> np.ndarray:
    """Area-average when shrinking (no aliasing), bicubic when enlarging; float results stay in 0..1."""
    if pixels.shape[1] == width and pixels.shape[0] == height:
        return pixels
    shrinking = width * height < pixels.shape[0] * pixels.shape[1]
    out = cv2.resize(pixels, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC)
    if pixels.ndim == 3 and out.ndim == 2:  # OpenCV drops a single channel axis
        out = out[..., None]
    if not shrinking and out.dtype == np.float32:
        np.clip(out, 0.0, 1.0, out=out)  # bicubic overshoots
    return out


def extract(frame: np.ndarray, box: CropBox) -> np.ndarray:
    """The box's pixels (edge-replicated outside the frame), resized to ``output_size``²."""
    if frame.shape[:2] != (box.source_height, box.source_width):
        raise EthMumbaiError(
            INVALID_INPUT,
            f"crop box was made for a {box.source_width}x{box.source_height} image, got {frame.shape[1]}x{frame.shape[0]}",
        )
    x0, y0, x1, y1 = _overlap(box)
    square = frame[y0:y1, x0:x1]
    pad = (y0 - box.y, box.y + box.size - y1, x0 - box.x, box.x + box.size - x1)
    if any(pad):
        square = np.pad(square, (pad[:2], pad[2:]) + ((0, 0),) * (frame.ndim - 2), mode="edge")
    return resize(np.ascontiguousarray(square), box.output_size, box.output_size)


def paste(frame: np.ndarray, square: np.ndarray, alpha: np.ndarray, box: CropBox) -> np.ndarray:
    """A copy of ``frame`` with ``square`` (any size, stretched to the box) blended in by ``alpha``.

    The parts of the box outside the frame are dropped.
    """
    if frame.shape[:2] != (box.source_height, box.source_width):
        raise EthMumbaiError(
            INVALID_INPUT,
            f"original is {frame.shape[1]}x{frame.shape[0]} but the crop box was made on "
            f"{box.source_width}x{box.source_height}",
        )
    square = resize(square, box.size, box.size)
    alpha = resize(alpha, box.size, box.size)
    x0, y0, x1, y1 = _overlap(box)
    inside = (slice(y0 - box.y, y1 - box.y), slice(x0 - box.x, x1 - box.x))
    out = frame.copy()
    out[y0:y1, x0:x1] = blend(square[inside], out[y0:y1, x0:x1], np.ascontiguousarray(alpha[inside]))
    return out
