"""Face detection (mediapipe's shipped BlazeFace models, OpenCV Haar fallback) and the face crop.

Small faces: BlazeFace sees its whole input at 128 px (short-range model) or 192 px (full-range),
so on a 12 MP photo a 64 px face would shrink to 3 px. The full-range model finds faces down to
about 10 px of its input; ``mediapipe_faces`` therefore also runs it over 192 px tiles of a
pyramid of the photo, the finest level at 1/3 scale (a 48 px face becomes 16 px), each coarser
level 3x smaller, until the whole frame fits one tile. Tiles overlap by 48 px of their own scale,
so every face up to the next level's smallest is whole in some tile. The tiles are skipped when
the whole-frame passes already found a face more prominent than any face they could have missed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from . import crop
from .errors import (
    DEPENDENCY_MISSING,
    INVALID_INPUT,
    LOW_RESOLUTION_FACE,
    MULTIPLE_FACES,
    NO_FACE_DETECTED,
    NO_PERSON_DETECTED,
    EthMumbaiError,
)
from .models import optional_import, shared_model
from .tensors import as_uint8, batch_arrays, rgb

DETECTORS = ("auto", "mediapipe", "opencv_haar")
# prominent: the face with the largest height x centrality (see prominence); largest: the largest box.
MULTIPLE_FACE_POLICIES = ("largest", "fail", "prominent")
NO_FACE_POLICIES = ("fail", "center_crop")

MEDIAPIPE_PIP = "mediapipe==0.10.21"
# mediapipe filters detections by this floor inside its graph; min_confidence is applied afterwards,
# so one cached graph serves every threshold.
_MEDIAPIPE_SCORE_FLOOR = 0.05
_SHORT_RANGE, _FULL_RANGE = 0, 1
_INPUT_SIDE = {_SHORT_RANGE: 128, _FULL_RANGE: 192}  # the models' input squares
# The whole-frame passes hand mediapipe a copy at most this size (it scales to its input itself; a
# copy shrunk further by area averaging makes the cat of skimage.data score as a face).
_WHOLE_FRAME_MAX_SIDE = 1024
_HAAR_MAX_SIDE = 512

# The tiled pass (module docstring). MIN_FACE_PX is the smallest face height searched for.
MIN_FACE_PX = 48
_TILE = _INPUT_SIDE[_FULL_RANGE]
_TILE_MIN_FACE = 16  # px at the full-range model's input that it finds reliably (it finds ~10)
_SHORT_MIN_FACE = 20  # the same for the short-range model at its 128 px input (it finds ~16)
_TILE_OVERLAP = 48  # px at the tile's scale; = _TILE_MIN_FACE x the 3x step between levels
_LEVEL_STEP = _TILE_OVERLAP / _TILE_MIN_FACE
_EDGE, _EDGE_GREY = 16, 128  # px at the tile's scale
# Two detections are one face when their intersection covers this much of the smaller box.
_SAME_FACE = 0.5
# Detections scoring at least this are ranked before weaker ones and may end the search early: false
# faces (latte art, a cat) score 0.5-0.65 where a face the model sees scores 0.75-0.95.
_CONFIDENT = 0.7
# A face is looked at again by the short-range model in a window this many times its size (the face
# then fills ~40% of the 128 px input), unless that model saw it confidently at least _PRECISE_DETAIL px tall.
_REFINE_WINDOW = 2.5
_PRECISE_DETAIL = 20.0
# Centrality falls linearly from 1 at the photo's centre to this at a corner.
_CORNER_CENTRALITY = 0.5

# A crop enlarged more than this (output px per source px) renders soft: LOW_RESOLUTION_FACE.
MAX_UPSCALE = 4.0
# The person mask must cover this share of the face box, or there is no person (NO_PERSON_DETECTED).
# A real face is covered 80-100% (the segmenter takes any face for a person).
MIN_PERSON_ON_FACE = 0.3
# Heads tilted less than this stay as they are (no resampling for eye-keypoint noise).
MIN_TILT_DEGREES = 5.0

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Face:
    """A face box in source pixels; ``score`` is None for Haar, which gives no confidence.

    ``roll`` is the head's tilt in degrees from the eye line: the counter-clockwise turn that makes it
    upright (None for Haar, which finds no eyes).
    """

    x: float
    y: float
    w: float
    h: float
    score: float | None
    roll: float | None = None
    detail: float = 0.0  # face height in px at the short-range model's input (0: another detector)

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


def _detect(model: int, view: np.ndarray, left: float, top: float, scale_x: float, scale_y: float) -> list[Face]:
    """Faces in ``view`` (a piece of the photo at ``scale_*`` source px per view px, placed at
    ``left``/``top`` source px), in source pixels."""
    detector = _mediapipe_detector(model)
    height, width = view.shape[:2]
    with detector.lock:
        detections = detector.model.process(np.ascontiguousarray(view)).detections or []
    faces = []
    for detection in detections:
        box = detection.location_data.relative_bounding_box
        right_eye, left_eye = detection.location_data.relative_keypoints[:2]
        roll = math.degrees(math.atan2((left_eye.y - right_eye.y) * height * scale_y,
                                       (left_eye.x - right_eye.x) * width * scale_x))
        # The face's height at the short-range model's input: its box and eyes are the most precise
        # where this is large (see _verified).
        detail = box.height * height * _INPUT_SIDE[model] / max(width, height) if model == _SHORT_RANGE else 0.0
        faces.append(Face(left + box.xmin * width * scale_x, top + box.ymin * height * scale_y,
                          box.width * width * scale_x, box.height * height * scale_y,
                          float(detection.score[0]), roll, detail))
    return faces


def _whole_frame(pixels: np.ndarray, model: int) -> list[Face]:
    view, scale = _shrunk(pixels, _WHOLE_FRAME_MAX_SIDE)
    return _detect(model, view, 0.0, 0.0, scale, scale)


def _starts(length: int) -> list[int]:
    """Tile offsets along one axis of a level: stride ``_TILE - _TILE_OVERLAP``, the last flush with the end."""
    if length <= _TILE:
        return [0]
    starts = list(range(0, length - _TILE, _TILE - _TILE_OVERLAP))
    return starts + [length - _TILE]


def _tiled(pixels: np.ndarray) -> list[Face]:
    """The full-range model over 192 px tiles of each pyramid level finer than the whole frame."""
    height, width = pixels.shape[:2]
    faces = []
    scale = _TILE_MIN_FACE / MIN_FACE_PX
    while max(width, height) * scale > _TILE:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        level = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
        # A grey frame around the level: the model misses faces cut by its input's edge
        level = cv2.copyMakeBorder(level, *(_EDGE,) * 4, cv2.BORDER_CONSTANT, value=(_EDGE_GREY,) * 3)
        back_x, back_y = width / size[0], height / size[1]
        for top in _starts(size[1] + 2 * _EDGE):
            for left in _starts(size[0] + 2 * _EDGE):
                tile = level[top:top + _TILE, left:left + _TILE]
                faces += _detect(_FULL_RANGE, tile, (left - _EDGE) * back_x, (top - _EDGE) * back_y, back_x, back_y)
        scale /= _LEVEL_STEP
    return faces


def _overlap_share(a: Face, b: Face) -> float:
    """Intersection area over the smaller box's area."""
    w = min(a.x + a.w, b.x + b.w) - max(a.x, b.x)
    h = min(a.y + a.h, b.y + b.h) - max(a.y, b.y)
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / max(1e-6, min(a.area, b.area))


def merge(faces: list[Face]) -> list[Face]:
    """One detection per face, of each overlapping group: a confident one, seen largest by the
    short-range model (the framing the crop's margin was tuned on), then the best-scoring."""
    kept: list[Face] = []
    for face in sorted(faces, key=lambda f: (not _confident(f), -f.detail, -(f.score or 0.0), f.y, f.x)):
        if all(_overlap_share(face, other) <= _SAME_FACE for other in kept):
            kept.append(face)
    return kept


def prominence(face: Face, width: int, height: int) -> float:
    """Face height x centrality: centrality is 1 with the face centre at the photo's centre and falls
    linearly with the distance to ``_CORNER_CENTRALITY`` at a corner. So a face in a corner must be
    twice as tall as a centred one to be chosen over it."""
    dx = (face.x + face.w / 2 - width / 2) / (width / 2)
    dy = (face.y + face.h / 2 - height / 2) / (height / 2)
    distance = min(1.0, math.hypot(dx, dy) / math.sqrt(2))
    return face.h * (1.0 - (1.0 - _CORNER_CENTRALITY) * distance)


def _confident(face: Face) -> bool:
    return face.score is None or face.score >= _CONFIDENT


def mediapipe_faces(pixels: np.ndarray, min_confidence: float) -> list[Face]:
    """Every face of at least ``MIN_FACE_PX`` height that could be the most prominent one, verified.

    Passes run from cheap to thorough: short-range on the whole frame, full-range on the whole
    frame, full-range on tiles. After each, the search stops when a confident verified face is more
    prominent than the tallest face the passes so far can miss would be even at the centre.
    """
    height, width = pixels.shape[:2]
    long_side = max(width, height)
    passes = ((lambda: _whole_frame(pixels, _SHORT_RANGE), _SHORT_MIN_FACE / _INPUT_SIDE[_SHORT_RANGE] * long_side),
              (lambda: _whole_frame(pixels, _FULL_RANGE), _TILE_MIN_FACE / _TILE * long_side),
              (lambda: _tiled(pixels), 0.0))
    found: list[Face] = []
    checked: dict[Face, Face | None] = {}  # each detection is verified once, whichever pass ends the search
    for run, missable in passes:
        found += [f for f in run() if f.score >= min_confidence]
        for face in merge(found):
            if face not in checked:
                checked[face] = _verified(pixels, face, min_confidence)
        faces = merge([checked[f] for f in merge(found) if checked[f] is not None])
        if any(_confident(f) and prominence(f, width, height) >= missable for f in faces):
            break
    return faces


def _verified(pixels: np.ndarray, face: Face, min_confidence: float) -> Face | None:
    """The face as the short-range model sees it at a good scale, or None if it sees no face there.

    A confident detection that model already saw large enough stands as it is. Any other is looked
    at again: a small face found on tiles gets a precise box and eye line (and the framing the
    margin was tuned on), while false faces rarely survive a second look (the cat of a thumbnail
    scores 0.6 and then nothing; a coffee cup scores 0.7 on the whole frame, then 0.66, and so ranks
    after every confident face)."""
    if face.roll is None or (_confident(face) and face.detail >= _PRECISE_DETAIL):
        return face
    again = _look_again(pixels, face, 0.0)
    if again is None and abs(face.roll) >= MIN_TILT_DEGREES:  # a tilted head may need an upright window
        again = _look_again(pixels, face, face.roll)
    return again if again is not None and again.score >= min_confidence else None


def _look_again(pixels: np.ndarray, face: Face, angle: float) -> Face | None:
    """The short-range model's detection of ``face`` in a window ``_REFINE_WINDOW`` x its size, turned
    by ``angle`` (the face then fills ~40% of the model's 128 px input); its roll is the total from
    the photo's axes. None when the model finds no face there."""
    height, width = pixels.shape[:2]
    side = max(1, round(max(face.w, face.h) * _REFINE_WINDOW))
    left, top = round(face.x + face.w / 2 - side / 2), round(face.y + face.h / 2 - side / 2)
    side_in = _INPUT_SIDE[_SHORT_RANGE]
    window = crop.extract(pixels, crop.CropBox(width, height, left, top, side, side_in, angle))
    scale = side / side_in
    found = [f for f in _detect(_SHORT_RANGE, window, 0.0, 0.0, scale, scale)
             if abs(f.x + f.w / 2 - side / 2) < f.w / 2 and abs(f.y + f.h / 2 - side / 2) < f.h / 2]
    if not found:
        return None
    best = max(found, key=lambda f: f.score)
    if angle:  # only the roll is needed from a turned window; the box stays the photo's
        return Face(face.x, face.y, face.w, face.h, best.score, angle + best.roll, best.detail)
    return Face(left + best.x, top + best.y, best.w, best.h, best.score, best.roll, best.detail)


def _upright(pixels: np.ndarray, face: Face) -> Face:
    """A tilted face with its roll measured once more in a window turned upright, where the model is
    at its best (the eye keypoints of a face tilted 25 degrees are off by up to ~10 degrees)."""
    if face.roll is None or abs(face.roll) < MIN_TILT_DEGREES:
        return face
    return _look_again(pixels, face, face.roll) or face


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


def rank_faces(faces: list[Face], multiple_faces: str, width: int, height: int) -> list[Face]:
    """The faces in choice order: confident detections (score >= 0.7) before weaker ones, then the most
    prominent (or, for ``largest``, the largest box) first; ties by position."""
    if len(faces) > 1 and multiple_faces == "fail":
        raise EthMumbaiError(MULTIPLE_FACES, f"found {len(faces)} faces and multiple_faces is 'fail': use a photo of one "
                                             "person, or set multiple_faces to prominent")
    if multiple_faces == "largest":
        return sorted(faces, key=lambda f: (not _confident(f), -f.area, f.y, f.x))
    return sorted(faces, key=lambda f: (not _confident(f), -prominence(f, width, height), f.y, f.x))


def face_box_mask(box: crop.CropBox, face: Face) -> np.ndarray:
    """``output_size``² mask, 1 inside the face box mapped into the (upright) crop."""
    mask = np.zeros((box.output_size, box.output_size), np.float32)
    cx, cy = box.to_output(face.x + face.w / 2, face.y + face.h / 2)
    scale = box.output_size / box.size
    half_w, half_h = face.w * scale / 2, face.h * scale / 2
    x0, y0, x1, y1 = (round(v) for v in (cx - half_w, cy - half_h, cx + half_w, cy + half_h))
    mask[max(0, y0):max(0, y1), max(0, x0):max(0, x1)] = 1.0
    return mask


def low_resolution_warning(face: Face, box: crop.CropBox, margin: float) -> dict | None:
    """LOW_RESOLUTION_FACE when the crop is enlarged more than ``MAX_UPSCALE`` times."""
    if box.output_size <= box.size * MAX_UPSCALE:
        return None
    needed = math.ceil(box.output_size / MAX_UPSCALE / (1.0 + 2.0 * margin))
    face_px = round(face.h)
    return {"code": LOW_RESOLUTION_FACE, "face_px": face_px, "min_face_px": needed,
            "message": f"the face is {face_px} px tall; below {needed} px the {box.output_size} px avatar "
                       f"is drawn from an enlarged, soft crop"}


def face_crop(image: torch.Tensor, output_size: int, margin: float, detector: str, multiple_faces: str,
              on_no_face: str, min_confidence: float,
              face_index: int = 0) -> tuple[torch.Tensor, torch.Tensor, crop.CropBox, dict]:
    """The square head crop of a one-image IMAGE batch: (face ``[1,S,S,3]``, face_mask ``[1,S,S]``, box, info).

    ``face_index`` picks a face in choice order (0: the chosen one). ``info`` (for the UI output, no
    image data): ``faces_found``, ``face_index``, ``face_box`` [x, y, w, h] and ``angle`` in source
    pixels and degrees (None without a face), and ``warnings``.
    """
    if image.shape[0] != 1:
        raise EthMumbaiError(INVALID_INPUT, f"face crop takes one image at a time, got a batch of {image.shape[0]}")
    if multiple_faces not in MULTIPLE_FACE_POLICIES or on_no_face not in NO_FACE_POLICIES:
        raise EthMumbaiError(INVALID_INPUT, f"unknown policy multiple_faces={multiple_faces!r} on_no_face={on_no_face!r}")
    frame = rgb(batch_arrays(image)[0])
    height, width = frame.shape[:2]
    pixels = as_uint8(frame)
    faces = detect_faces(pixels, detector, min_confidence)
    info = {"faces_found": len(faces), "face_index": None, "face_box": None, "angle": None, "warnings": []}
    if faces:
        ranked = rank_faces(faces, multiple_faces, width, height)
        if not 0 <= face_index < len(ranked):
            raise EthMumbaiError(INVALID_INPUT, f"face_index {face_index} is out of range: found {len(ranked)} "
                                                f"face{'s' if len(ranked) != 1 else ''} (0 to {len(ranked) - 1})")
        face = _upright(pixels, ranked[face_index])
        angle = face.roll if face.roll is not None and abs(face.roll) >= MIN_TILT_DEGREES else 0.0
        square = crop.box_around(face.x, face.y, face.w, face.h, margin, width, height, output_size)
        box = crop.CropBox(**{**square.__dict__, "angle": round(angle, 2)})
        mask = face_box_mask(box, face)
        warning = low_resolution_warning(face, box, margin)
        info |= {"face_index": face_index, "face_box": [round(v) for v in (face.x, face.y, face.w, face.h)],
                 "angle": box.angle, "warnings": [warning] if warning else []}
    elif on_no_face == "center_crop":
        box = crop.centre_box(width, height, output_size)
        mask = np.zeros((output_size, output_size), np.float32)
    else:
        raise EthMumbaiError(NO_FACE_DETECTED, f"no face found in the {width}x{height} image (detector {detector}): use a "
                                                f"photo where one face is clearly visible, or set on_no_face to center_crop")
    pixels = crop.extract(frame, box)
    return torch.from_numpy(pixels).unsqueeze(0), torch.from_numpy(mask).unsqueeze(0), box, info


def require_person(person: torch.Tensor, face_mask: torch.Tensor) -> None:
    """NO_PERSON_DETECTED unless the person mask covers ``MIN_PERSON_ON_FACE`` of the face box: a face
    found on a pet, a drawing or a poster would leave an avatar that is only the background. An empty
    face mask (a centred crop: no face was found, and the caller asked to go on) is not checked."""
    for mask, face in zip(batch_arrays(person), batch_arrays(face_mask), strict=False):
        if face.shape != mask.shape:
            face = cv2.resize(face, (mask.shape[1], mask.shape[0]), interpolation=cv2.INTER_NEAREST)
        on_face = face > 0.5
        if not on_face.any():
            continue
        share = float(mask[on_face].mean())
        if share < MIN_PERSON_ON_FACE:
            raise EthMumbaiError(NO_PERSON_DETECTED, f"no person around the face: the person mask covers "
                                                     f"{share:.0%} of the face box (at least "
                                                     f"{MIN_PERSON_ON_FACE:.0%} needed): use a photo of a person")
