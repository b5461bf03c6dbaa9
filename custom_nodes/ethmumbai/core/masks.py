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


# The side the guided filter fits at: benchmarks/composite.py's scenes gave the same halo and edge error
# fitted at 256, 384 or 512 px (the edge detail comes from the full-size guide), at a third of the time.
_FIT_SIDE = 256


def guided_filter(guide: np.ndarray, source: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """Edge-aware smoothing of ``source`` (float32 ``[H,W]``) that follows the edges of the RGB ``guide``.

    The colour guided filter (He, Sun & Tang, "Guided Image Filtering", 2010/2013): each window of
    ``radius`` fits ``source ≈ a · guide + b`` by least squares, and the output is the averaged fit, so
    a coarse mask edge moves onto the nearest colour edge of the photo (a colour guide tells hair from
    a backdrop of the same brightness). ``eps`` is how much contrast counts as an edge (a variance,
    0..1² units). The fit runs at ``_FIT_SIDE`` px at most ("fast guided filter"): ``a`` and ``b`` are
    smooth, so only the final ``a · guide + b`` needs the full size.
    """
    height, width = source.shape
    scale = min(1.0, _FIT_SIDE / max(height, width))
    small_guide, small_source = guide, source
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        small_guide = cv2.resize(guide, size, interpolation=cv2.INTER_AREA)
        small_source = cv2.resize(source, size, interpolation=cv2.INTER_AREA)
    window = (2 * max(1, round(radius * scale)) + 1,) * 2

    def mean(values: np.ndarray) -> np.ndarray:
        return cv2.boxFilter(values, -1, window, borderType=cv2.BORDER_REFLECT)

    channels = cv2.split(small_guide)
    means = [mean(channel) for channel in channels]
    mean_source = mean(small_source)
    covariance = [mean(channel * small_source) - m * mean_source for channel, m in zip(channels, means, strict=True)]
    # The guide's 3x3 covariance per pixel (+ eps on the diagonal), inverted through its cofactors.
    var = {(i, j): mean(channels[i] * channels[j]) - means[i] * means[j] + (eps if i == j else 0.0)
           for i in range(3) for j in range(i, 3)}
    c00 = var[1, 1] * var[2, 2] - var[1, 2] ** 2
    c01 = var[0, 2] * var[1, 2] - var[0, 1] * var[2, 2]
    c02 = var[0, 1] * var[1, 2] - var[0, 2] * var[1, 1]
    c11 = var[0, 0] * var[2, 2] - var[0, 2] ** 2
    c12 = var[0, 2] * var[0, 1] - var[0, 0] * var[1, 2]
    c22 = var[0, 0] * var[1, 1] - var[0, 1] ** 2
    determinant = var[0, 0] * c00 + var[0, 1] * c01 + var[0, 2] * c02
    inverse = ((c00, c01, c02), (c01, c11, c12), (c02, c12, c22))
    slopes = [sum(inverse[i][j] * covariance[j] for j in range(3)) / determinant for i in range(3)]
    offset = mean_source - sum(slope * m for slope, m in zip(slopes, means, strict=True))
    result = fit(mean(offset), height, width)
    for slope, channel in zip(slopes, cv2.split(guide), strict=True):
        result += fit(mean(slope), height, width) * channel
    return result


def keep_connected(mask: np.ndarray, seeds: np.ndarray | None) -> np.ndarray:
    """The parts of a hard mask (``> 0.5``) that touch ``seeds`` (e.g. the face box), as a float 0/1 mask.

    Without seeds, or when no part touches them, the largest part is kept: the person is one connected
    shape (with anything held against the body), and what floats apart from it is background.
    """
    hard = (mask > 0.5).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(hard, connectivity=8)
    if count <= 2:  # nothing, or one part
        return hard.astype(np.float32)
    keep = np.zeros(count, bool)
    if seeds is not None:
        keep[np.unique(labels[(seeds > 0.5) & (hard > 0)])] = True
    if not keep.any():
        keep[1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))] = True
    keep[0] = False
    return keep[labels].astype(np.float32)


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """The person's own colour where ``alpha`` is soft, so the old backdrop does not tint the new one.

    Approximate fast foreground colour estimation (Forte & Pitié, ICIP 2021, "blur fusion"): the image
    is ``alpha * F + (1 - alpha) * B``; alpha-weighted local means (a box of 9% of the side) estimate
    ``F`` and ``B``, and the residual ``image - alpha * F - (1 - alpha) * B`` corrects ``F``. The means
    are smooth, so they are taken at a quarter of the size and read back (bilinear) only at the soft
    pixels; the paper's second, narrow pass changed our test scenes' error by under 10% for twice the
    time, so there is one. Pixels where alpha is 0 or 1 come back as they were.
    """
    height, width = alpha.shape
    soft = np.flatnonzero((alpha > 0.0) & (alpha < 1.0))
    if soft.size == 0:
        return image
    small = (max(1, width // 4), max(1, height // 4))
    small_image = cv2.resize(image, small, interpolation=cv2.INTER_AREA)
    small_alpha = cv2.resize(alpha, small, interpolation=cv2.INTER_AREA)
    window = (2 * max(1, round(max(small) * 0.09)) + 1,) * 2
    share = cv2.blur(small_alpha, window)[..., None]
    weight = small_alpha[..., None]
    mean_fg = cv2.blur(small_image * weight, window) / (share + 1e-5)
    mean_bg = cv2.blur(small_image * (1.0 - weight), window) / (1.0 - share + 1e-5)
    # The soft pixels' positions in the small images (pixel centres), for a bilinear read of the means
    # there; remap takes maps of at most 32767 columns, so they go in rows of 1024.
    rows, cols = np.divmod(soft, width)
    padded = -(-soft.size // 1024) * 1024
    map_x, map_y = (np.resize(((v + 0.5) * scale - 0.5).astype(np.float32), padded).reshape(-1, 1024)
                    for v, scale in ((cols, small[0] / width), (rows, small[1] / height)))
    fg, bg = (cv2.remap(mean, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE).reshape(-1, 3)[:soft.size]
              for mean in (mean_fg, mean_bg))
    pixels = image.reshape(-1, 3)[soft]
    a = alpha.reshape(-1)[soft][:, None]
    result = image.copy()
    result.reshape(-1, 3)[soft] = np.clip(fg + a * (pixels - a * fg - (1.0 - a) * bg), 0.0, 1.0)
    return result
