"""Issue 20's figures through a real ComfyUI with the pack, on generated scenes (benchmarks/composite.py).

Each scene goes through the face crop, then the person mask and the composite twice: the 1.0.0 way
(refine 'none', islands 'keep', clean_edge off) and with the defaults (plus the face mask wired in, as the
workflow does). The true outline of each scene is known, so the halo, the fragments and the brand's
visibility are measured on what the server returns.
"""

from __future__ import annotations

import pytest

from benchmarks.composite import (
    BACKGROUNDS,
    COMPOSITE_FEATHER,
    MASK_ARGS,
    SIZE,
    brand_visible,
    crop_scene,
    edge_error,
    fragments,
    halo,
    scenes,
)
from tests.nodes.test_server import face_crop, load, node, pixels, save
from tools.comfy import run_prompt
from tools.images import b64, encode


def graph(scene, background: str) -> dict:
    threshold, feather = MASK_ARGS
    mask_inputs = {"image": ["crop", 0], "threshold": threshold, "feather": feather}
    composite_inputs = {"foreground": ["crop", 0], "background": background, "color": "#000000",
                        "color2": "#FFFFFF", "feather": COMPOSITE_FEATHER}
    return {
        "load": load(b64(encode(scene.pixels))),
        "crop": face_crop(output_size=SIZE, margin=scene.margin),
        "mask_before": node("EthMumbaiPersonMask", **mask_inputs, refine="none", islands="keep"),
        "mask_after": node("EthMumbaiPersonMask", **mask_inputs, face_mask=["crop", 1]),
        "before": node("EthMumbaiBackgroundComposite", **composite_inputs, mask=["mask_before", 0],
                       clean_edge=False),
        "after": node("EthMumbaiBackgroundComposite", **composite_inputs, mask=["mask_after", 0]),
        "mask_before_image": node("MaskToImage", mask=["mask_before", 0]),
        "mask_after_image": node("MaskToImage", mask=["mask_after", 0]),
        "out_before": save(["before", 0]),
        "out_after": save(["after", 0]),
        "out_mask_before": save(["mask_before_image", 0]),
        "out_mask_after": save(["mask_after_image", 0]),
    }


@pytest.fixture(scope="module")
def results(comfy_server) -> dict:
    """``{scene name: (true alpha in the crop, {output: pixels})}`` for the astronaut and the close-up."""
    found = {}
    for scene, background in zip((scenes()[0], scenes()[2]), BACKGROUNDS, strict=True):
        entry = run_prompt(comfy_server.url, graph(scene, background))
        assert entry["status"]["status_str"] == "success", entry["status"]
        outputs = {name.removeprefix("out_"): pixels(entry, name) for name in entry["outputs"]
                   if name.startswith("out_")}  # the face crop reports too (ethmumbai_face)
        found[scene.name] = (crop_scene(scene)[2], background, outputs)
    return found


def test_the_halo_falls(results):
    true_alpha, background, out = results["astronaut"]
    before, after = halo(out["before"], true_alpha, background), halo(out["after"], true_alpha, background)
    assert after < 0.5 * before, (before, after)
    # Not by shrinking the mask away from the edge: the mask is also closer to the true outline.
    assert edge_error(out["mask_after"][..., 0], true_alpha) < edge_error(out["mask_before"][..., 0], true_alpha)


def test_the_fragments_go(results):
    true_alpha, _, out = results["close-up"]
    count, area = fragments(out["mask_before"][..., 0], true_alpha)
    assert count >= 1 and area > 50, "the segmenter finds pieces of the wall beside the face"
    assert fragments(out["mask_after"][..., 0], true_alpha) == (0, 0)


def test_the_brand_stays_fully_visible_over_a_large_head(results):
    true_alpha, background, out = results["close-up"]
    head = out["mask_after"][..., 0]
    assert head[: SIZE // 2].mean() > 0.8, "the head fills the top half"
    assert brand_visible(out["before"], out["mask_before"][..., 0], background, legacy=True) < 0.2, \
        "where 1.0.0 drew the name, the head covers it"
    assert brand_visible(out["after"], head, background, legacy=False) == 1.0
