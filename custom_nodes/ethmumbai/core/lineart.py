"""Lineart control images: white lines on black, the same size as the input.

``standard`` is weight-free: the "lineart standard" idea (a pixel is on a line where it is darker
than its Gaussian-blurred surroundings), written here with OpenCV. The learned detectors come from
controlnet-aux, imported only when asked for, and only from weight files already on disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from .crop import resize
from .errors import INVALID_INPUT, MODEL_MISSING, EthMumbaiError
from .models import optional_import, shared_model
from .tensors import as_float, as_uint8, batch_arrays, rgb, stack

STANDARD_SIGMA = 6.0  # blur radius (working-resolution pixels) that sets the line width
STANDARD_NOISE_FLOOR = 8  # darkness differences at or below this are noise, not lines
_STANDARD_GAIN = 127.0  # the typical (median) line lands at half brightness


@dataclass(frozen=True)
class LearnedMethod:
    files: tuple[str, ...]  # in the ComfyUI "annotators" model folder
    fetch_name: str  # models_manifest.yaml entry: python scripts/fetch_models.py --only <fetch_name>
    module: str
    detector: str


LEARNED = {
    "lineart_learned": LearnedMethod(("sk_model.pth", "sk_model2.pth"), "annotator_lineart",
                                     "controlnet_aux.lineart", "LineartDetector"),
    "hed": LearnedMethod(("ControlNetHED.pth",), "annotator_hed", "controlnet_aux.hed", "HEDdetector"),
    "pidi": LearnedMethod(("table5_pidinet.pth",), "annotator_pidinet", "controlnet_aux.pidi", "PidiNetDetector"),
}
METHODS = ("standard", *LEARNED)
CONTROLNET_AUX_PIP = "controlnet-aux"


def working_size(height: int, width: int, resolution: int) -> tuple[int, int]:
    """(height, width) with the short side at ``resolution``, aspect kept."""
    scale = resolution / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def standard_lineart(pixels: np.ndarray) -> np.ndarray:
    """uint8 RGB → uint8 line map (white lines on black), same size.

    Works in uint8 with saturating subtraction: OpenCV's fixed-point blur is ~3x faster than float,
    and the darkness map differs from the float formula's by about one level at most.
    """
    blurred = cv2.GaussianBlur(pixels, (0, 0), STANDARD_SIGMA)
    darker = cv2.subtract(blurred, pixels)  # max(blur - pixel, 0) per channel
    intensity = cv2.min(cv2.min(darker[..., 0], darker[..., 1]), darker[..., 2])
    # Normalise by the median line strength so faint and contrasty photos give similar lines.
    counts = np.bincount(intensity.ravel(), minlength=256)[STANDARD_NOISE_FLOOR + 1:]
    if counts.sum():
        median = STANDARD_NOISE_FLOOR + 1 + int(np.searchsorted(np.cumsum(counts), counts.sum() / 2.0))
    else:
        median = 0
    return cv2.convertScaleAbs(intensity, alpha=_STANDARD_GAIN / max(16, median))


def find_weights(method: LearnedMethod, annotator_dirs: Sequence[Path]) -> Path:
    """The first annotator folder holding all of the method's weight files, or MODEL_MISSING."""
    for folder in annotator_dirs:
        if all((Path(folder) / name).is_file() for name in method.files):
            return Path(folder)
    # Name only the absent files; if each file is somewhere but no one folder has them all, name them all.
    missing = [name for name in method.files if not any((Path(f) / name).is_file() for f in annotator_dirs)]
    wanted = " and ".join(f"annotators/{name}" for name in missing or method.files)
    raise EthMumbaiError(
        MODEL_MISSING,
        f"{wanted} not found {'' if missing else 'together '}in the ComfyUI 'annotators' model folder; "
        f"download it with: python scripts/fetch_models.py --only {method.fetch_name}",
    )


def _learned_detector(name: str, annotator_dirs: Sequence[Path], device: str):
    method = LEARNED[name]
    folder = find_weights(method, annotator_dirs)
    module = optional_import(method.module, CONTROLNET_AUX_PIP, f"lineart method {name!r}")

    def load():
        detector_cls = getattr(module, method.detector)
        kwargs = {"filename": method.files[0]}
        if len(method.files) > 1:
            kwargs["coarse_filename"] = method.files[1]
        # A local folder makes from_pretrained read the files there and never reach the hub.
        return detector_cls.from_pretrained(str(folder), **kwargs).to(device)

    return shared_model(("controlnet_aux", name, str(folder), device), load)


def learned_lineart(pixels: np.ndarray, name: str, resolution: int, annotator_dirs: Sequence[Path],
                    device: str = "cpu") -> np.ndarray:
    """uint8 RGB → uint8 RGB line map from a controlnet-aux detector, same size as the input."""
    detector = _learned_detector(name, annotator_dirs, device)
    with detector.lock, torch.inference_mode():
        lines = detector.model(pixels, detect_resolution=resolution, image_resolution=resolution, output_type="np")
    lines = np.asarray(lines, dtype=np.uint8)
    if lines.ndim == 2:
        lines = lines[..., None]
    return rgb(resize(lines, pixels.shape[1], pixels.shape[0]))


def lineart(image: torch.Tensor, method: str, resolution: int, annotator_dirs: Sequence[Path] = (),
            device: str = "cpu") -> torch.Tensor:
    """IMAGE ``[B,H,W,3]`` of white lines on black, computed at ``resolution`` (short side), returned at input size."""
    if method not in METHODS:
        raise EthMumbaiError(INVALID_INPUT, f"method must be one of {', '.join(METHODS)}, got {method!r}")
    results = []
    for frame in batch_arrays(image):
        height, width = frame.shape[:2]
        pixels = as_uint8(rgb(frame))
        if method == "standard":
            work_h, work_w = working_size(height, width, resolution)
            lines = standard_lineart(resize(pixels, work_w, work_h))
            lines = cv2.cvtColor(resize(lines, width, height), cv2.COLOR_GRAY2RGB)
        else:
            lines = learned_lineart(pixels, method, resolution, annotator_dirs, device)
        results.append(as_float(lines))
    return stack(results)
