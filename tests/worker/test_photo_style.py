"""The composite-only style ("photo") through the real local API: the face crop composited as is, no diffusion."""

from __future__ import annotations

import numpy as np

from custom_nodes.ethmumbai.core import composite, face, segment
from tests.worker.conftest import WORKFLOW, avatar_job
from tools.images import astronaut, decode_b64_image, to_tensor


def test_photo_style_is_the_crop_composited_with_the_packs_own_functions(worker_server):
    output = worker_server.succeed(avatar_job(seed=901, style="photo"))
    size = output["width"]
    got = np.asarray(decode_b64_image(output["image"]).convert("RGB"), np.float32) / 255.0

    # The same steps, run here with the pack's functions and the workflow's values.
    graph = WORKFLOW.graph
    crop_inputs = graph["2"]["inputs"]
    pixels, face_mask, _, _ = face.face_crop(to_tensor(astronaut()), size, crop_inputs["margin"], crop_inputs["detector"],
                                             crop_inputs["multiple_faces"], crop_inputs["on_no_face"],
                                             crop_inputs["min_confidence"])
    mask_inputs, composite_inputs = graph["3"]["inputs"], graph["15"]["inputs"]
    mask = segment.person_mask(pixels, mask_inputs["threshold"], mask_inputs["feather"], face_mask=face_mask)
    style_background = WORKFLOW.styles.presets["photo"].params.get("background", WORKFLOW.defaults()["background"])
    expected = composite.composite(pixels, mask, style_background, composite_inputs["color"],
                                   composite_inputs["color2"], composite_inputs["feather"])[0].numpy()
    difference = np.abs(got - expected).max(axis=2)
    # The same pixels but for PNG rounding and a handful at the mask's edge (the segmenter's float noise).
    assert difference.mean() < 0.5 / 255 and (difference > 2 / 255).mean() < 0.002, (difference.mean(),
                                                                                      (difference > 2 / 255).mean())


def test_photo_style_runs_no_model_so_the_seed_changes_nothing(worker_server):
    first = worker_server.succeed(avatar_job(seed=902, style="photo"))
    second = worker_server.succeed(avatar_job(seed=903, style="photo"))
    assert first["image"] == second["image"]
    assert "STYLE_LORA_MISSING" not in [warning["code"] for warning in first["warnings"]]
