"""Square crop boxes: take a padded square out of a frame, and paste a (stylized) square back.

A box may extend past the frame border; the outside is filled by replicating the edge pixels
(no black bars for the diffusion model to draw on). Box coordinates are whole source pixels, so
cropping at ``output_size == size`` and pasting back reproduces the frame exactly.

A box may also carry an ``angle``: the square is then turned by that many degrees about its centre
(counter-clockwise in the picture), so a tilted head comes out upright, and paste-back turns the
stylized square back by the same affine map, inverted. Its round trip is exact in geometry and
within interpolation error in value; pixels outside the turned square are never touched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .errors import INVALID_INPUT, EthMumbaiError
from .masks import blend


@dataclass(frozen=True)
class CropBox:
    """The ``ETHMUMBAI_CROP_BOX`` value: a square box in source pixels and the size it was resized to.

    ``angle`` (degrees) turns the square about its centre before it is resized: the head's roll, so
    the crop shows it upright.
    """

    source_width: int
    source_height: int
    x: int
    y: int
    size: int
    output_size: int
    angle: float = 0.0

    def __post_init__(self) -> None:
        if min(self.source_width, self.source_height, self.size, self.output_size) < 1:
            raise EthMumbaiError(INVALID_INPUT, f"crop box has a non-positive size: {self}")
        if (self.x >= self.source_width or self.y >= self.source_height
                or self.x + self.size <= 0 or self.y + self.size <= 0):
            raise EthMumbaiError(INVALID_INPUT, f"crop box lies outside its source image: {self}")

    def to_output(self, x: float, y: float) -> tuple[float, float]:
        """A source-pixel point in output-pixel coordinates."""
        scale = self.output_size / self.size
        if not self.angle:
            return (x - self.x) * scale, (y - self.y) * scale
        (a, b, _), (c, d, _) = _rotation(self.angle, scale)
        dx, dy = x - self.x - self.size / 2, y - self.y - self.size / 2
        half = self.output_size / 2
        return a * dx + b * dy + half, c * dx + d * dy + half


def _rotation(angle: float, scale: float) -> np.ndarray:
    """OpenCV's 2x3 rotation (counter-clockwise ``angle`` degrees) and scale about the origin."""
    return cv2.getRotationMatrix2D((0.0, 0.0), angle, scale)


def _about(angle: float, scale: float, centre_from: tuple[float, float],
           centre_to: tuple[float, float]) -> np.ndarray:
    """The affine map that turns and scales about ``centre_from`` and moves it to ``centre_to``.

    Centres are in pixel-index coordinates (pixel centres at whole numbers), as ``cv2.warpAffine`` uses.
    """
    matrix = _rotation(angle, scale)
    matrix[:, 2] = np.asarray(centre_to) - matrix[:, :2] @ np.asarray(centre_from)
    return matrix


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


def _warp(pixels: np.ndarray, matrix: np.ndarray, width: int, height: int, border: int,
          inverse: bool = False) -> np.ndarray:
    """``cv2.warpAffine`` keeping a single channel axis and the 0..1 range (bicubic overshoots)."""
    flags = cv2.INTER_CUBIC | (cv2.WARP_INVERSE_MAP if inverse else 0)
    out = cv2.warpAffine(pixels, matrix, (width, height), flags=flags, borderMode=border, borderValue=0)
    if pixels.ndim == 3 and out.ndim == 2:
        out = out[..., None]
    return np.clip(out, 0.0, 1.0, out=out) if out.dtype == np.float32 else out


def _turned_extract(frame: np.ndarray, box: CropBox) -> np.ndarray:
    """``extract`` for a box with an angle: the square around the turned box is taken first (shrunk
    by area averaging when the crop shrinks, so nothing aliases), then turned and scaled in one warp."""
    radians = math.radians(box.angle)
    reach = box.size * (abs(math.cos(radians)) + abs(math.sin(radians)))
    pad = math.ceil((reach - box.size) / 2) + 2  # + 2: the bicubic kernel's reach
    side = box.size + 2 * pad
    scale = box.output_size / box.size
    around = CropBox(box.source_width, box.source_height, box.x - pad, box.y - pad, side,
                     max(1, round(side * scale)) if scale < 1 else side)
    square = extract(frame, around)
    matrix = _about(box.angle, box.output_size / box.size * side / around.output_size,
                    ((around.output_size - 1) / 2,) * 2, ((box.output_size - 1) / 2,) * 2)
    return _warp(square, matrix, box.output_size, box.output_size, cv2.BORDER_REPLICATE)


def _check_frame(frame: np.ndarray, box: CropBox) -> None:
    if frame.shape[:2] != (box.source_height, box.source_width):
        raise EthMumbaiError(
            INVALID_INPUT,
            f"crop box was made for a {box.source_width}x{box.source_height} image, got {frame.shape[1]}x{frame.shape[0]}",
        )


def extract(frame: np.ndarray, box: CropBox) -> np.ndarray:
    """The box's pixels (edge-replicated outside the frame), turned by its angle, resized to ``output_size``²."""
    _check_frame(frame, box)
    if box.angle:
        return _turned_extract(frame, box)
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
    if box.angle:
        return _turned_paste(frame, square, alpha, box)
    square = resize(square, box.size, box.size)
    alpha = resize(alpha, box.size, box.size)
    x0, y0, x1, y1 = _overlap(box)
    inside = (slice(y0 - box.y, y1 - box.y), slice(x0 - box.x, x1 - box.x))
    out = frame.copy()
    out[y0:y1, x0:x1] = blend(square[inside], out[y0:y1, x0:x1], np.ascontiguousarray(alpha[inside]))
    return out


def _turned_paste(frame: np.ndarray, square: np.ndarray, alpha: np.ndarray, box: CropBox) -> np.ndarray:
    """``paste`` for a box with an angle: the square is turned back into the frame by the inverse of
    the extract's map; alpha is 0 outside the square, so only the turned square's pixels change."""
    side = min(square.shape[0], box.size)  # shrink by area averaging first, as extract does
    square, alpha = resize(square, side, side), resize(alpha, side, side)
    radians = math.radians(box.angle)
    reach = box.size * (abs(math.cos(radians)) + abs(math.sin(radians))) / 2 + 2
    cx, cy = box.x + box.size / 2, box.y + box.size / 2
    x0, y0 = max(0, math.floor(cx - reach)), max(0, math.floor(cy - reach))
    x1, y1 = min(box.source_width, math.ceil(cx + reach)), min(box.source_height, math.ceil(cy + reach))
    out = frame.copy()
    if x0 >= x1 or y0 >= y1:
        return out
    # frame pixel (index coords, relative to x0, y0) -> square pixel: the extract's forward map
    matrix = _about(box.angle, side / box.size, (cx - 0.5 - x0, cy - 0.5 - y0), ((side - 1) / 2,) * 2)
    front = _warp(np.ascontiguousarray(square), matrix, x1 - x0, y1 - y0, cv2.BORDER_REPLICATE, inverse=True)
    weight = _warp(np.ascontiguousarray(alpha, np.float32), matrix, x1 - x0, y1 - y0, cv2.BORDER_CONSTANT,
                   inverse=True)
    out[y0:y1, x0:x1] = blend(front, out[y0:y1, x0:x1], weight)
    return out


def turn_back(square: np.ndarray, alpha: np.ndarray, box: CropBox) -> tuple[np.ndarray, np.ndarray]:
    """An upright crop and its alpha turned back by the box's angle about the centre, at the same size:
    the pose of the photo, for a composite on a background. Corners are filled by edge replication."""
    if not box.angle:
        return square, alpha
    side = square.shape[0]
    centre = ((side - 1) / 2,) * 2
    matrix = _about(-box.angle, 1.0, centre, centre)
    return (_warp(np.ascontiguousarray(square), matrix, side, side, cv2.BORDER_REPLICATE),
            _warp(np.ascontiguousarray(alpha, np.float32), matrix, side, side, cv2.BORDER_REPLICATE))
