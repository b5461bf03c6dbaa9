"""Face detection (mediapipe's shipped BlazeFace models, OpenCV Haar fallback) and the face crop."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from . import crop
from .errors import (
    DEPENDENCY_MISSING,
    INVALID_INPUT,
    MULTIPLE_FACES,
    NO_FACE_DETECTED,
    EthMumbaiError,
)
from .models import optional_import, shared_model
from .tensors import as_uint8, batch_arrays, rgb

DETECTORS = ("auto", "mediapipe", "opencv_haar")
MULTIPLE_FACE_POLICIES = ("largest", "fail")
NO_FACE_POLICIES = ("fail", "center_crop")

MEDIAPIPE_PIP = "mediapipe==0.10.21"
# mediapipe filters detections by this floor inside its graph; min_confidence is applied afterwards,
# so one cached graph serves every threshold.
_MEDIAPIPE_SCORE_FLOOR = 0.05
# Detectors see at most this many pixels on the long side: they work at 128-192 px (mediapipe) or
# on faces >= 24 px (Haar) anyway, and shrinking first bounds their time on 12 MP phone photos.
_MEDIAPIPE_MAX_SIDE = 1024
_HAAR_MAX_SIDE = 512

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Face:
    """A face box in source pixels; ``score`` is None for Haar, which gives no confidence."""

    x: float
    y: float
    w: float
    h: float
    score: float | None

    @property
    def area(self) -> float:
        return self.w * self.h


def _shrunk(pixels: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """``pixels`` with its long side at most ``max_side``, and the factor back to source pixels."""
    long_side = max(pixels.shape[:2])
    if long_side <= max_side:
        return pixels, 1.0
    scale = max_side / long_side
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    return cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), long_side / max_side


def _mediapipe_detector(model_selection: int):
    face_detection = optional_import("mediapipe.python.solutions.face_detection", MEDIAPIPE_PIP, "face detection")
    return shared_model(
        ("mediapipe_face", model_selection),
        lambda: face_detection.FaceDetection(model_selection=model_selection,
                                             min_detection_confidence=_MEDIAPIPE_SCORE_FLOOR),
    )


def mediapipe_faces(pixels: np.ndarray, min_confidence: float) -> list[Face]:
    """Faces from the short-range model (selfies), then the full-range one if it found none."""
    small, _ = _shrunk(pixels, _MEDIAPIPE_MAX_SIDE)
    small = np.ascontiguousarray(small)
    height, width = pixels.shape[:2]
    for model_selection in (0, 1):
        detector = _mediapipe_detector(model_selection)
        with detector.lock:
            detections = detector.model.process(small).detections or []
        faces = []
        for detection in detections:
            score = float(detection.score[0])
            if score < min_confidence:
                continue
            box = detection.location_data.relative_bounding_box
            faces.append(Face(box.xmin * width, box.ymin * height, box.width * width, box.height * height, score))
        if faces:
            return faces
    return []


def _haar_cascade():
    path = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if path is None:
        raise EthMumbaiError(DEPENDENCY_MISSING, "this OpenCV build has no Haar cascades: pip install opencv-python-headless")

    def load():
        cascade = cv2.CascadeClassifier(path + "haarcascade_frontalface_default.xml")
        if cascade.empty():
            raise EthMumbaiError(DEPENDENCY_MISSING, f"cannot read haarcascade_frontalface_default.xml from {path}")
        return cascade

    return shared_model("haar_frontalface", load)


def haar_faces(pixels: np.ndarray) -> list[Face]:
    """Frontal faces from OpenCV's Haar cascade (no confidence score, so ``min_confidence`` does not apply)."""
    grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)
    grey, scale = _shrunk(grey, _HAAR_MAX_SIDE)
    grey = cv2.equalizeHist(grey)
    min_side = max(24, min(grey.shape) // 20)
    cascade = _haar_cascade()
    with cascade.lock:
        boxes = cascade.model.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    return [Face(x * scale, y * scale, w * scale, h * scale, None) for x, y, w, h in boxes]


def detect_faces(pixels: np.ndarray, detector: str, min_confidence: float) -> list[Face]:
    """Faces in a uint8 RGB image. ``auto`` uses mediapipe, then Haar if mediapipe found none or is absent."""
    if detector == "mediapipe":
        return mediapipe_faces(pixels, min_confidence)
    if detector == "opencv_haar":
        return haar_faces(pixels)
    if detector != "auto":
        raise EthMumbaiError(INVALID_INPUT, f"detector must be one of {', '.join(DETECTORS)}, got {detector!r}")
    try:
        faces = mediapipe_faces(pixels, min_confidence)
    except EthMumbaiError as exc:
        if exc.code != DEPENDENCY_MISSING:
            raise
        log.warning("ethmumbai: %s; falling back to OpenCV Haar", exc.message)
        faces = []
    return faces or haar_faces(pixels)


def choose_face(faces: list[Face], multiple_faces: str) -> Face:
    if len(faces) > 1 and multiple_faces == "fail":
        raise EthMumbaiError(MULTIPLE_FACES, f"found {len(faces)} faces and multiple_faces is 'fail': use a photo of one "
                                             "person, or set multiple_faces to largest")
    return max(faces, key=lambda face: face.area)


def face_box_mask(box: crop.CropBox, face: Face) -> np.ndarray:
    """``output_size``² mask, 1 inside the face box mapped into the crop."""
    mask = np.zeros((box.output_size, box.output_size), np.float32)
    x0, y0 = box.to_output(face.x, face.y)
    x1, y1 = box.to_output(face.x + face.w, face.y + face.h)
    mask[max(0, round(y0)):max(0, round(y1)), max(0, round(x0)):max(0, round(x1))] = 1.0
    return mask


def face_crop(image: torch.Tensor, output_size: int, margin: float, detector: str, multiple_faces: str,
              on_no_face: str, min_confidence: float) -> tuple[torch.Tensor, torch.Tensor, crop.CropBox]:
    """The square head crop of a one-image IMAGE batch: (face ``[1,S,S,3]``, face_mask ``[1,S,S]``, box)."""
    if image.shape[0] != 1:
        raise EthMumbaiError(INVALID_INPUT, f"face crop takes one image at a time, got a batch of {image.shape[0]}")
    if multiple_faces not in MULTIPLE_FACE_POLICIES or on_no_face not in NO_FACE_POLICIES:
        raise EthMumbaiError(INVALID_INPUT, f"unknown policy multiple_faces={multiple_faces!r} on_no_face={on_no_face!r}")
    frame = rgb(batch_arrays(image)[0])
    height, width = frame.shape[:2]
    faces = detect_faces(as_uint8(frame), detector, min_confidence)
    if faces:
        face = choose_face(faces, multiple_faces)
        box = crop.box_around(face.x, face.y, face.w, face.h, margin, width, height, output_size)
        mask = face_box_mask(box, face)
    elif on_no_face == "center_crop":
        box = crop.centre_box(width, height, output_size)
        mask = np.zeros((output_size, output_size), np.float32)
    else:
        raise EthMumbaiError(NO_FACE_DETECTED, f"no face found in the {width}x{height} image (detector {detector}): use a "
                                                f"photo where one face is clearly visible, or set on_no_face to center_crop")
    pixels = crop.extract(frame, box)
    return torch.from_numpy(pixels).unsqueeze(0), torch.from_numpy(mask).unsqueeze(0), box
