"""The quality metrics on known cases: each must move the way its README description says."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tools.images import astronaut
from workflows.metrics import METRICS, Reference, box_iou, mask_iou

SIZE = 512


@pytest.fixture(scope="module")
def reference() -> Reference:
    return Reference(astronaut(), SIZE)


def shifted(pixels: np.ndarray, dx: int, dy: int) -> np.ndarray:
    matrix = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(pixels, matrix, (pixels.shape[1], pixels.shape[0]), borderMode=cv2.BORDER_REPLICATE)


def stretched_face(pixels: np.ndarray, box: tuple[float, float, float, float], factor: float) -> np.ndarray:
    """Another face shape: the face box's content stretched vertically about its top (same colours, same place)."""
    x, y, w, h = (round(v) for v in box)
    out = pixels.copy()
    taller = cv2.resize(pixels[y:y + h, x:x + w], (w, round(h * factor)), interpolation=cv2.INTER_CUBIC)
    out[y:y + h, x:x + w] = taller[:h]
    return out


def test_the_photo_against_itself_scores_one_everywhere(reference):
    scores = reference.score(reference.crop)
    assert set(scores) == set(METRICS)
    assert scores["face_found"] is True
    for metric in ("face_iou", "structure_ssim", "identity", "silhouette_iou"):
        assert scores[metric] == pytest.approx(1.0, abs=1e-6), metric


def test_a_blank_image_finds_no_face(reference):
    scores = reference.score(np.zeros((SIZE, SIZE, 3), np.uint8))
    assert scores["face_found"] is False
    assert scores["face_iou"] == 0.0
    assert scores["identity"] == 0.0
    assert scores["silhouette_iou"] == 0.0


def test_a_shifted_face_lowers_face_iou_and_structure(reference):
    scores = reference.score(shifted(reference.crop, SIZE // 6, SIZE // 10))
    assert scores["face_found"] is True
    assert scores["face_iou"] < 0.6
    assert scores["structure_ssim"] < 0.5
    # Landmark geometry ignores position: the same face moved is still the same face.
    assert scores["identity"] > 0.98


def test_a_different_face_lowers_identity(reference):
    other = stretched_face(reference.crop, reference.face_box, 1.35)
    scores = reference.score(other)
    assert scores["face_found"] is True
    assert scores["identity"] < 0.95
    assert reference.score(other)["identity"] < reference.score(shifted(reference.crop, 8, 0))["identity"]


def test_an_avatar_of_another_size_is_compared_at_the_reference_size(reference):
    smaller = cv2.resize(reference.crop, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)
    scores = reference.score(smaller)
    assert scores["face_found"] is True and scores["face_iou"] > 0.8 and scores["identity"] > 0.97


def test_a_photo_without_a_face_gives_no_face_or_identity_reference():
    blank = Reference(np.full((300, 400, 3), 200, np.uint8), 256)
    assert blank.face_box is None and blank.landmarks is None
    scores = blank.score(np.zeros((256, 256, 3), np.uint8))
    assert scores["face_iou"] is None and scores["identity"] is None
    assert scores["structure_ssim"] is not None


def test_box_and_mask_iou_on_known_shapes():
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert box_iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    a = np.zeros((4, 4), bool)
    b = a.copy()
    a[:2] = True
    b[1:3] = True
    assert mask_iou(a, b) == pytest.approx(4 / 12)
    assert mask_iou(np.zeros((4, 4), bool), np.zeros((4, 4), bool)) == 1.0
