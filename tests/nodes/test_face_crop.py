"""Face detection, the square crop and its paste-back (core/face.py, core/crop.py)."""

from __future__ import annotations

import sys
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import pytest
import torch

from custom_nodes.ethmumbai.core import crop, face, models
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tools.images import ASTRONAUT_FACE, astronaut, chelsea, to_tensor


def centre(box) -> tuple[float, float]:
    x, y, w, h = box
    return x + w / 2, y + h / 2


def crop_of(pixels: np.ndarray, **overrides):
    """(image, mask, box) of the face crop; ``crop_info`` also gives the info dict."""
    return crop_info(pixels, **overrides)[:3]


def crop_info(pixels: np.ndarray, **overrides):
    args = {"output_size": 256, "margin": 0.6, "detector": "auto", "multiple_faces": "largest",
            "on_no_face": "fail", "min_confidence": 0.5} | overrides
    return face.face_crop(to_tensor(pixels), **args)


def two_faces() -> np.ndarray:
    """The astronaut's head (300² from the photo) beside a 0.7x copy of it: two faces, the left one larger."""
    head = astronaut()[0:300, 75:375]
    small = cv2.resize(head, (210, 210), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((300, 510, 3), np.uint8)
    canvas[:, :300] = head
    canvas[:210, 300:] = small
    return canvas


# ---------------------------------------------------------------- detection


def test_mediapipe_finds_the_astronaut_face_where_expected():
    (found,) = face.detect_faces(astronaut(), "mediapipe", 0.5)
    assert np.allclose((found.x, found.y, found.w, found.h), ASTRONAUT_FACE, atol=6)
    assert found.score > 0.8


def test_haar_finds_the_astronaut_face_near_the_same_place():
    (found,) = face.detect_faces(astronaut(), "opencv_haar", 0.5)
    assert found.score is None
    assert np.allclose(centre((found.x, found.y, found.w, found.h)), centre(ASTRONAUT_FACE), atol=20)  # Haar boxes sit higher
    assert 70 < found.w < 130


@pytest.mark.parametrize("detector", face.DETECTORS)
def test_no_face_on_the_cat(detector):
    assert face.detect_faces(chelsea(), detector, 0.5) == []


def test_min_confidence_filters_mediapipe_detections():
    (found,) = face.detect_faces(astronaut(), "mediapipe", 0.5)
    assert face.detect_faces(astronaut(), "mediapipe", min(1.0, found.score + 0.01)) == []


def test_large_photos_are_detected_on_a_shrunk_copy_in_source_pixels():
    big = np.repeat(np.repeat(astronaut(), 4, axis=0), 4, axis=1)  # 2048², face at 4x the coordinates
    (found,) = face.detect_faces(big, "mediapipe", 0.5)
    assert np.allclose((found.x, found.y, found.w, found.h), np.array(ASTRONAUT_FACE) * 4, atol=24)


def test_two_faces_largest_or_fail():
    faces = face.detect_faces(two_faces(), "mediapipe", 0.5)
    assert len(faces) == 2
    _, _, box = crop_of(two_faces())
    assert box.x + box.size / 2 < 300, "the larger (left) face was cropped"
    with pytest.raises(EthMumbaiError) as info:
        crop_of(two_faces(), multiple_faces="fail")
    assert info.value.code == "MULTIPLE_FACES" and "2 faces" in info.value.message


# ---------------------------------------------------------------- the crop


def test_astronaut_crop_is_square_centred_on_the_face_with_the_margin():
    image, mask, box = crop_of(astronaut(), output_size=256, margin=0.6)
    assert image.shape == (1, 256, 256, 3) and mask.shape == (1, 256, 256)
    assert (box.source_width, box.source_height, box.output_size) == (512, 512, 256)
    assert abs(box.size - 95 * 2.2) < 12
    assert np.allclose((box.x + box.size / 2, box.y + box.size / 2), centre(ASTRONAUT_FACE), atol=6)
    # face_mask: 1 on the face box, which sits in the middle 1/2.2 of the crop.
    assert mask[0, 128, 128] == 1 and mask[0, 5, 5] == 0
    assert abs(mask.mean().item() - (1 / 2.2) ** 2) < 0.05


def test_crop_pixels_are_the_source_pixels_of_the_box():
    photo = astronaut()
    _, _, box = crop_of(photo)
    exact = crop.CropBox(512, 512, box.x, box.y, box.size, box.size)
    pixels = crop.extract(photo.astype(np.float32) / 255, exact)
    assert np.array_equal(pixels, photo[box.y:box.y + box.size, box.x:box.x + box.size] / np.float32(255))


def test_margin_changes_the_box_size():
    small = crop_of(astronaut(), margin=0.2)[2]
    large = crop_of(astronaut(), margin=1.0)[2]
    assert small.size < large.size
    assert abs(large.size / small.size - 3.0 / 1.4) < 0.1


def test_no_face_fails_with_a_clear_code():
    with pytest.raises(EthMumbaiError) as info:
        crop_of(chelsea())
    assert info.value.code == "NO_FACE_DETECTED"
    assert str(info.value).startswith("[NO_FACE_DETECTED] ")


def test_no_face_with_center_crop_takes_the_middle_square():
    image, mask, box = crop_of(chelsea(), on_no_face="center_crop")
    assert box == crop.CropBox(451, 300, 75, 0, 300, 256)
    assert image.shape == (1, 256, 256, 3) and float(mask.max()) == 0.0


def test_batches_are_refused():
    with pytest.raises(EthMumbaiError) as info:
        face.face_crop(torch.rand(2, 64, 64, 3), 64, 0.6, "auto", "largest", "center_crop", 0.5)
    assert info.value.code == "INVALID_INPUT"


# ---------------------------------------------------------------- padding and paste-back


def test_box_past_the_border_is_padded_by_edge_replication():
    frame = np.random.default_rng(1).random((40, 60, 3), dtype=np.float32)
    box = crop.CropBox(60, 40, -5, 30, 20, 20)  # 5 px past the left, 10 px past the bottom
    square = crop.extract(frame, box)
    assert np.array_equal(square[:10, 5:], frame[30:40, 0:15])
    assert np.array_equal(square[:10, :5], np.repeat(frame[30:40, :1], 5, axis=1))  # left edge repeated
    assert np.array_equal(square[10:, 5:], np.repeat(frame[39:40, 0:15], 10, axis=0))  # bottom edge repeated


def test_untouched_crop_pastes_back_bit_exact_even_past_the_border():
    frame = np.random.default_rng(2).random((40, 60, 3), dtype=np.float32)
    box = crop.CropBox(60, 40, 50, -4, 16, 16)
    pasted = crop.paste(frame, crop.extract(frame, box), np.ones((16, 16), np.float32), box)
    assert np.array_equal(pasted, frame)


def test_paste_changes_only_the_box_and_respects_alpha():
    frame = np.zeros((40, 60, 3), np.float32)
    box = crop.CropBox(60, 40, 10, 5, 20, 40)  # crop resized 20 -> 40, pasted back 40 -> 20
    alpha = np.zeros((40, 40), np.float32)
    alpha[:, 20:] = 1.0
    pasted = crop.paste(frame, np.ones((40, 40, 3), np.float32), alpha, box)
    assert pasted[5:25, 20:30].min() == 1.0  # right half of the box
    assert pasted[5:25, 10:20].max() == 0.0  # left half: alpha 0
    outside = pasted.copy()
    outside[5:25, 10:30] = 0
    assert outside.max() == 0.0


def test_paste_on_another_frame_size_is_refused():
    box = crop.CropBox(60, 40, 0, 0, 20, 20)
    with pytest.raises(EthMumbaiError) as info:
        crop.paste(np.zeros((41, 60, 3), np.float32), np.zeros((20, 20, 3), np.float32), np.ones((20, 20)), box)
    assert info.value.code == "INVALID_INPUT" and "41" in info.value.message


@pytest.mark.parametrize("fields", [(60, 40, 0, 0, 0, 20), (60, 40, 60, 0, 10, 20), (60, 40, -10, 0, 10, 20)],
                         ids=["empty", "right-of-frame", "left-of-frame"])
def test_impossible_boxes_are_refused(fields):
    with pytest.raises(EthMumbaiError):
        crop.CropBox(*fields)


# ---------------------------------------------------------------- model cache


def test_detector_models_are_built_once_and_reused():
    face.detect_faces(astronaut(), "mediapipe", 0.5)
    first = face._mediapipe_detector(0)
    face.detect_faces(astronaut(), "mediapipe", 0.5)
    assert face._mediapipe_detector(0) is first
    assert models.shared_model(("mediapipe_face", 0), lambda: pytest.fail("rebuilt")) is first


def test_concurrent_crops_agree():
    photo = astronaut()
    expected = crop_of(photo)[2]
    with ThreadPoolExecutor(4) as pool:
        boxes = list(pool.map(lambda _: crop_of(photo)[2], range(8)))
    assert boxes == [expected] * 8


# ---------------------------------------------------------------- without mediapipe


@pytest.fixture
def no_mediapipe(monkeypatch):
    """Make every mediapipe import fail, as on a Python without a mediapipe wheel."""
    for name in ("mediapipe", "mediapipe.python.solutions.face_detection",
                 "mediapipe.python.solutions.selfie_segmentation"):
        monkeypatch.setitem(sys.modules, name, None)


def test_without_mediapipe_auto_falls_back_to_haar(no_mediapipe):
    (found,) = face.detect_faces(astronaut(), "auto", 0.5)
    assert found.score is None  # a Haar detection
    assert np.allclose(centre((found.x, found.y, found.w, found.h)), centre(ASTRONAUT_FACE), atol=20)


def test_without_mediapipe_the_mediapipe_detector_names_the_package(no_mediapipe):
    with pytest.raises(EthMumbaiError) as info:
        crop_of(astronaut(), detector="mediapipe")
    assert info.value.code == "DEPENDENCY_MISSING" and "mediapipe==0.10.21" in info.value.message
