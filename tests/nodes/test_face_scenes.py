"""Faces as people upload them (issue 13), on generated scenes: the astronaut of skimage.data placed into
larger photos at several sizes, positions and tilts, in groups, and a cat thumbnail.

The core tests check the geometry; the scene tests run each case through the real ComfyUI with the pack.
"""

from __future__ import annotations

import io
import math
import re

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from custom_nodes.ethmumbai.core import crop, face
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tests.nodes.test_server import execution_error, load, node, pixels, save
from tools.comfy import run_prompt
from tools.images import astronaut, b64, cat_thumbnail, encode, scene, to_tensor

CODE = re.compile(r"^\[([A-Z_]+)\]")
W, H = 2400, 1600  # a 3.8 MP photo: every face below is under 5% of its height
OUTPUT = 512


def crop_args(**overrides) -> dict:
    return {"output_size": OUTPUT, "margin": 0.6, "detector": "auto", "multiple_faces": "prominent",
            "on_no_face": "fail", "min_confidence": 0.5} | overrides


# ---------------------------------------------------------------- turned crops: geometry


def smooth_frame(seed: int, height: int = 300, width: int = 400) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.random((height // 20, width // 20, 3), dtype=np.float32)
    return np.ascontiguousarray(crop.resize(small, width, height))


def spot(frame: np.ndarray, x: float, y: float) -> np.ndarray:
    """``frame`` with a bright Gaussian spot (sigma 2 px) centred on (x, y)."""
    yy, xx = np.mgrid[:frame.shape[0], :frame.shape[1]]
    bump = np.exp(-((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / 8.0).astype(np.float32)
    return np.clip(frame * (1 - bump[..., None]) + bump[..., None], 0, 1)


def centroid(image: np.ndarray, threshold: float = 0.65) -> tuple[float, float]:
    """The centre of the spot: the weighted mean of the pixels brighter than the (darkened) frame."""
    weight = np.clip(image.min(axis=2) - threshold, 0, None)
    yy, xx = np.mgrid[:image.shape[0], :image.shape[1]]
    return float((xx * weight).sum() / weight.sum() + 0.5), float((yy * weight).sum() / weight.sum() + 0.5)


@pytest.mark.parametrize("angle", [25.0, -25.0, 8.0])
@pytest.mark.parametrize("output_size", [120, 360, 48])
def test_turned_crop_round_trip_lands_every_point_back(angle, output_size):
    """extract then paste with a full alpha: geometry exact (a spot returns to within 0.15 px), values
    within interpolation error, and every pixel outside the turned square bit-exact."""
    box = crop.CropBox(400, 300, 140, 90, 120, output_size, angle)
    frame = spot(smooth_frame(1) * 0.6, 180.0, 130.0)  # a point off the box centre, so the turn moves it
    square = crop.extract(frame, box)
    assert square.shape == (output_size, output_size, 3)
    # (a 48 px crop shrinks the spot below 1 px, so its centre is measured only to ~0.4 px there)
    assert np.allclose(centroid(square), box.to_output(180.0, 130.0), atol=0.15 if output_size >= 120 else 0.4)

    pasted = crop.paste(frame, square, np.ones((output_size, output_size), np.float32), box)
    assert np.allclose(centroid(pasted), (180.0, 130.0), atol=0.15 * max(1, 120 / output_size))
    smooth = smooth_frame(1)
    smooth_pasted = crop.paste(smooth, crop.extract(smooth, box), np.ones((output_size,) * 2, np.float32), box)
    footprint = np.zeros((300, 400), np.uint8)
    corners = np.array([[box.x, box.y], [box.x + box.size, box.y], [box.x + box.size, box.y + box.size],
                        [box.x, box.y + box.size]], np.float64)
    centre = np.array([box.x + box.size / 2, box.y + box.size / 2])
    theta = math.radians(angle)  # the square's corners in the photo: turned by -angle (the crop turns by +angle)
    turn = np.array([[math.cos(theta), math.sin(theta)], [-math.sin(theta), math.cos(theta)]])
    polygon = (corners - centre) @ turn + centre
    cv2.fillPoly(footprint, [np.round(polygon - 0.5).astype(np.int32)], 1)
    inside = cv2.erode(footprint, np.ones((5, 5), np.uint8)).astype(bool)
    outside = ~cv2.dilate(footprint, np.ones((5, 5), np.uint8)).astype(bool)
    assert np.array_equal(smooth_pasted[outside], smooth[outside])
    tolerance = 0.01 if output_size >= 120 else 0.06  # a 48 px crop of a 120 px box loses detail
    assert np.abs(smooth_pasted - smooth)[inside].mean() < tolerance


def test_unturned_box_still_pastes_back_bit_exact():
    frame = smooth_frame(2)
    box = crop.CropBox(400, 300, 350, -20, 90, 90, 0.0)
    assert np.array_equal(crop.paste(frame, crop.extract(frame, box), np.ones((90, 90), np.float32), box), frame)


def test_turn_back_gives_the_photo_pose_of_a_turned_crop():
    """A crop turned upright, turned back on the background, matches the unturned crop of the same box."""
    frame = smooth_frame(3)
    turned = crop.CropBox(400, 300, 140, 90, 120, 240, 25.0)
    plain = crop.CropBox(400, 300, 140, 90, 120, 240, 0.0)
    back, alpha = crop.turn_back(crop.extract(frame, turned), np.ones((240, 240), np.float32), turned)
    middle = slice(50, 190)
    assert np.abs(back - crop.extract(frame, plain))[middle, middle].max() < 0.02
    assert alpha.shape == (240, 240) and alpha.min() > 0.999  # corners filled by replication, no hole
    assert crop.turn_back(back, alpha, plain)[0] is back  # no angle: untouched


# ---------------------------------------------------------------- choice rule, face_index, person check


def test_prominence_is_height_times_centrality():
    centred = face.Face(450, 350, 100, 100, 0.9)
    corner = face.Face(0, 0, 150, 150, 0.9)  # centre (75, 75): 150 x 0.58 = 88
    assert face.prominence(centred, 1000, 800) == 100
    assert face.prominence(face.Face(-50, -50, 100, 100, 0.9), 1000, 800) == 50  # centre on a corner: half
    assert face.rank_faces([corner, centred], "prominent", 1000, 800) == [centred, corner]
    assert face.rank_faces([centred, corner], "largest", 1000, 800) == [corner, centred]
    weak = face.Face(400, 300, 300, 300, 0.6)  # a large, centred, unconvincing detection ranks last
    assert face.rank_faces([weak, corner, centred], "prominent", 1000, 800)[-1] == weak


def test_face_index_out_of_range_names_the_count():
    with pytest.raises(EthMumbaiError) as info:
        face.face_crop(to_tensor(astronaut()), **crop_args(), face_index=1)
    assert info.value.code == "INVALID_INPUT" and "found 1 face " in info.value.message


def test_weak_detections_must_be_confirmed():
    (face_found,) = face.detect_faces(scene(W, H, [(64, (W - 38, 960))]), "mediapipe", 0.5)  # half off the edge
    assert face_found.score > 0.7, "confirmed by a second look"
    assert face.detect_faces(cat_thumbnail(), "mediapipe", 0.5) == []


def test_person_check_needs_a_person_on_the_face_box():
    from custom_nodes.ethmumbai.core.segment import person_mask
    person_crop, face_mask, _, _ = face.face_crop(to_tensor(astronaut()), **crop_args(output_size=256))
    face.require_person(person_mask(person_crop, 0.5, 8), face_mask)

    def columns(count: int) -> torch.Tensor:
        mask = torch.zeros(1, 64, 64)
        mask[:, :, :count] = 1.0
        return mask

    face_box = torch.zeros(1, 64, 64)
    face_box[:, 16:48, 16:48] = 1.0
    face.require_person(columns(26), face_box)  # 10 of the box's 32 columns: 31%
    with pytest.raises(EthMumbaiError) as info:
        face.require_person(columns(24), face_box)  # 8 of 32: 25%
    assert info.value.code == "NO_PERSON_DETECTED" and "covers 25% of the face box" in info.value.message
    face.require_person(torch.zeros(1, 64, 64), torch.zeros(1, 64, 64))  # a centred crop: nothing to check


def test_low_resolution_warning_names_the_face_size():
    thumbnail = scene(640, 480, [(60, (320, 240))])
    _, _, box, info = face.face_crop(to_tensor(thumbnail), **crop_args(output_size=1024))
    (warning,) = info["warnings"]
    assert warning["code"] == "LOW_RESOLUTION_FACE" and 50 <= warning["face_px"] <= 75
    assert f"{warning['face_px']} px" in warning["message"] and warning["min_face_px"] == 117
    assert 1024 / box.size > face.MAX_UPSCALE
    sharp = cv2.resize(astronaut(), (1024, 1024), interpolation=cv2.INTER_CUBIC)  # a 190 px face
    assert face.face_crop(to_tensor(sharp), **crop_args(output_size=1024))[3]["warnings"] == []


def test_crop_is_deterministic():
    photo = to_tensor(scene(1024, 1024, [(120, (500, 520))], angle=20))
    first, again = face.face_crop(photo, **crop_args()), face.face_crop(photo, **crop_args())
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1]) and first[2:] == again[2:]


def test_a_48_px_face_in_a_40_mp_photo_corner_is_found():
    photo = scene(7744, 5160, [(48, (60, 5100))])
    (found,) = face.detect_faces(photo, "auto", 0.5)
    assert abs(found.x + found.w / 2 - 60) < 16 and abs(found.y + found.h / 2 - 5100) < 16


# ---------------------------------------------------------------- scenes through ComfyUI


def scene_graph(photo: np.ndarray, **crop_overrides) -> dict:
    """load > crop > person mask (with the face mask) > composite on a colour (crop box: turned back) > save,
    plus the untouched crop pasted back into the photo."""
    return {
        "load": load(b64(encode(photo, "JPEG", quality=92))),
        "crop": node("EthMumbaiFaceCrop", image=["load", 0], **crop_args(**crop_overrides)),
        "person": node("EthMumbaiPersonMask", image=["crop", 0], threshold=0.5, feather=8, face_mask=["crop", 1]),
        "composite": node("EthMumbaiBackgroundComposite", foreground=["crop", 0], mask=["person", 0],
                          background="solid", color="#1B1464", color2="#F7931E", feather=4, crop_box=["crop", 2]),
        "paste": node("EthMumbaiBackgroundComposite", foreground=["crop", 0], mask=["person", 0],
                      background="solid", color="#000000", color2="#000000", feather=0, original=["load", 0],
                      crop_box=["crop", 2]),
        "out": save(["composite", 0]),
        "out_paste": save(["paste", 0]),
    }


def run_scene(comfy_server, photo: np.ndarray, **crop_overrides) -> tuple[dict, dict]:
    entry = run_prompt(comfy_server.url, scene_graph(photo, **crop_overrides))
    assert entry["status"]["status_str"] == "success", [data.get("exception_message")
                                                        for _, data in entry["status"]["messages"]]
    (info,) = entry["outputs"]["crop"]["ethmumbai_face"]
    return info, entry


def assert_on(info: dict, face_px: float, centre: tuple[float, float]) -> None:
    x, y, w, h = info["face_box"]
    assert abs(x + w / 2 - centre[0]) < 0.3 * face_px and abs(y + h / 2 - centre[1]) < 0.3 * face_px, info
    assert 0.75 * face_px < h < 1.35 * face_px, info


POSITIONS = {"centre": lambda px: (W / 2, H / 2), "corner": lambda px: (0.7 * px, 0.7 * px),
             "edge": lambda px: (W - 0.6 * px, 0.6 * H)}


@pytest.mark.parametrize("position", list(POSITIONS))
@pytest.mark.parametrize("face_px", [48, 64, 96])
def test_small_face_is_found_anywhere(comfy_server, face_px, position):
    centre = POSITIONS[position](face_px)
    info, entry = run_scene(comfy_server, scene(W, H, [(face_px, centre)]))
    assert info["faces_found"] == 1 and info["face_index"] == 0
    assert_on(info, face_px, centre)
    codes = [warning["code"] for warning in info["warnings"]]
    # 512 px from a box 2.2x the face: enlarged more than 4x below 58 px.
    assert codes == (["LOW_RESOLUTION_FACE"] if face_px < 58 else [])
    assert pixels(entry, "out").shape == (OUTPUT, OUTPUT, 3)


def test_64_px_face_in_a_12_mp_photo(comfy_server):
    info, _ = run_scene(comfy_server, scene(4000, 3000, [(64, (1500, 1900))]))
    assert info["faces_found"] == 1
    assert_on(info, 64, (1500, 1900))


GROUP3 = [(120, (600, 800)), (90, (1200, 800)), (60, (1900, 900))]


def test_group_of_three_picks_the_most_prominent_and_face_index_the_others(comfy_server):
    photo = scene(W, H, GROUP3)
    # prominence: 120 px x 0.82 (a quarter of the width off centre) = 99 beats 90 px x 1.0 = 90
    for index, (face_px, centre) in enumerate(GROUP3):
        info, _ = run_scene(comfy_server, photo, face_index=index)
        assert info["faces_found"] == 3 and info["face_index"] == index
        assert_on(info, face_px, centre)
    error = execution_error(run_prompt(comfy_server.url, scene_graph(photo, face_index=3)))
    assert error["exception_message"].startswith("[INVALID_INPUT] face_index 3 is out of range: found 3 faces")


def test_group_of_two_a_centred_face_beats_a_larger_one_in_the_corner(comfy_server):
    corner, centre = (130, (230, 230)), (100, (W / 2, H / 2))
    photo = scene(W, H, [corner, centre])
    info, _ = run_scene(comfy_server, photo)
    assert info["faces_found"] == 2
    assert_on(info, *centre)  # 100 x 1.0 > 130 x ~0.57
    info, _ = run_scene(comfy_server, photo, multiple_faces="largest")
    assert_on(info, *corner)


@pytest.fixture(scope="module")
def upright_angle(comfy_server) -> float:
    info, _ = run_scene(comfy_server, scene(1024, 1024, [(160, (512, 512))]))
    return info["angle"]


@pytest.mark.parametrize("tilt", [25, -25])
def test_tilted_head_is_cropped_upright_and_pasted_back_exactly(comfy_server, upright_angle, tilt):
    photo = scene(1024, 1024, [(160, (512, 512))], angle=tilt)
    info, entry = run_scene(comfy_server, photo)
    # The photo turns the head by `tilt` counter-clockwise; the crop turns it back by the same amount.
    assert abs(info["angle"] - (upright_angle - tilt)) < 6, (info, upright_angle)
    assert_on(info, 160, (512, 512))
    # Paste-back of the untouched crop through the person mask: the photo again, within interpolation
    # error where the turned crop lands, bit-exact outside it (rows above the turned square).
    pasted = pixels(entry, "out_paste")
    original = np.asarray(Image.open(io.BytesIO(encode(photo, "JPEG", quality=92))), np.float32) / 255
    assert np.abs(pasted - original).mean() < 0.005
    assert np.abs(pasted - original)[400:620, 400:620].mean() < 0.02, "the crop lands back on the face"
    assert np.array_equal(pasted[:200], original[:200])


def test_cat_thumbnail_never_gives_an_avatar(comfy_server):
    """The cat's face scores 0.6 on the whole frame; looked at again it is no face."""
    error = execution_error(run_prompt(comfy_server.url, scene_graph(cat_thumbnail())))
    assert CODE.match(error["exception_message"]).group(1) == "NO_FACE_DETECTED", error["exception_message"]
    assert error["node_type"] == "EthMumbaiFaceCrop"


def test_a_face_box_without_a_person_stops_the_job(comfy_server):
    """The person check in the server: the cat's centred crop, with a face box over the whole square."""
    graph = scene_graph(cat_thumbnail(), on_no_face="center_crop")
    graph["box"] = node("SolidMask", value=1.0, width=OUTPUT, height=OUTPUT)
    graph["person"]["inputs"]["face_mask"] = ["box", 0]
    error = execution_error(run_prompt(comfy_server.url, graph))
    assert CODE.match(error["exception_message"]).group(1) == "NO_PERSON_DETECTED", error["exception_message"]
    assert error["node_type"] == "EthMumbaiPersonMask"
    mirrored = np.ascontiguousarray(cat_thumbnail()[:, ::-1])  # another photo: ComfyUI runs the crop again
    healthy = run_scene(comfy_server, mirrored, on_no_face="center_crop")[0]  # the crop's own mask: empty
    assert healthy["faces_found"] == 0 and healthy["face_box"] is None

