"""Person segmentation (core/segment.py), its edge refinement and island removal, and mask helpers (core/masks.py)."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch

from custom_nodes.ethmumbai.core import masks, segment
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tools.images import ASTRONAUT_FACE, astronaut, to_tensor


def mask_of(pixels: np.ndarray, threshold: float = 0.5, feather: int = 0, **options) -> np.ndarray:
    result = segment.person_mask(to_tensor(pixels), threshold, feather, **options)
    assert result.shape == (1, *pixels.shape[:2]) and result.dtype == torch.float32
    return result[0].numpy()


def test_mask_covers_the_astronaut_and_not_the_backdrop():
    mask = mask_of(astronaut())
    x, y, w, h = ASTRONAUT_FACE
    assert mask[y + h // 5:y + h * 4 // 5, x + w // 5:x + w * 4 // 5].min() == 1.0, "the face is in the mask"
    assert mask[320:, 100:300].mean() > 0.98, "so is the body"
    assert mask[:60, :60].max() == 0.0 and mask[:100, 400:].max() == 0.0, "the top corners are backdrop"
    assert set(np.unique(mask)) == {0.0, 1.0}, "no feather: a hard mask"


def test_threshold_grows_and_shrinks_the_mask():
    loose, strict = mask_of(astronaut(), 0.1).sum(), mask_of(astronaut(), 0.95).sum()
    assert loose > mask_of(astronaut(), 0.5).sum() > strict


def test_feather_softens_only_the_edge():
    hard, soft = mask_of(astronaut()), mask_of(astronaut(), feather=12, refine="none")
    partial = (soft > 0.01) & (soft < 0.99)
    assert partial.any()
    edge = masks.feather(hard, 12) != hard
    assert np.array_equal(partial & ~edge, np.zeros_like(partial)), "values in between only near the edge"
    assert abs(soft.mean() - hard.mean()) < 0.01, "feathering moves the edge by little"


def test_each_image_of_a_batch_gets_its_own_mask():
    photo = astronaut()
    batch = torch.cat([to_tensor(photo), to_tensor(np.ascontiguousarray(photo[:, ::-1]))])
    first, mirrored = segment.person_mask(batch, 0.5, 0).numpy()
    assert np.abs(first[:, ::-1] - mirrored).mean() < 0.02
    assert not np.array_equal(first, mirrored)


def test_large_photo_mask_is_at_full_size():
    big = np.repeat(np.repeat(astronaut(), 3, axis=0), 3, axis=1)
    mask = mask_of(big)
    small = mask_of(astronaut())
    assert np.abs(mask[::3, ::3] - small).mean() < 0.02


def test_feather_zero_is_identity_and_fit_resizes():
    mask = (np.random.default_rng(0).random((10, 20)) > 0.5).astype(np.float32)
    assert masks.feather(mask, 0) is mask
    assert masks.fit(mask, 20, 40).shape == (20, 40)


def test_without_mediapipe_the_mask_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "mediapipe.python.solutions.selfie_segmentation", None)
    with pytest.raises(EthMumbaiError) as info:
        mask_of(astronaut())
    assert info.value.code == "DEPENDENCY_MISSING" and "pip install 'mediapipe==0.10.21'" in info.value.message


# ---------------------------------------------------------------- refinement and islands


def test_guided_filter_puts_the_edge_where_the_photos_edge_is():
    """A photo with a vertical colour edge at x=100 and a mask whose edge is at x=104: the refined mask
    drops at the photo's edge (in one step), where an even blur falls gradually around x=104."""
    photo = np.zeros((64, 200, 3), np.float32)
    photo[:, :100] = [0.8, 0.3, 0.2]
    photo[:, 100:] = [0.2, 0.5, 0.9]
    coarse = np.zeros((64, 200), np.float32)
    coarse[:, :104] = 1.0
    refined = masks.guided_filter(photo, coarse, 8, 1e-3)
    assert refined.shape == coarse.shape
    steps = -np.diff(refined[32])
    assert np.argmax(steps) == 99 and steps[99] > 0.4 and refined[32, :99].min() > 0.99
    assert -np.diff(masks.feather(coarse, 8)[32]).max() < 0.15


def test_guided_filter_leaves_a_flat_mask_alone():
    photo = np.random.default_rng(1).random((40, 40, 3)).astype(np.float32)
    assert np.allclose(masks.guided_filter(photo, np.ones((40, 40), np.float32), 4, 1e-3), 1.0, atol=1e-4)


def test_keep_connected_keeps_the_part_touching_the_seeds_or_else_the_largest():
    mask = np.zeros((50, 50), np.float32)
    mask[5:15, 5:15] = 1  # small part
    mask[20:45, 20:45] = 1  # large part
    seeds = np.zeros_like(mask)
    seeds[8, 8] = 1
    assert masks.keep_connected(mask, seeds).sum() == 100
    assert masks.keep_connected(mask, None).sum() == 625
    assert masks.keep_connected(mask, np.zeros_like(mask)).sum() == 625, "seeds on no part: the largest"
    assert masks.keep_connected(np.zeros_like(mask), None).sum() == 0


def test_islands_drop_removes_detached_fragments_and_keep_keeps_them():
    """The close-up scene (benchmarks/composite.py): the segmenter finds parts of the wall beside the face."""
    from benchmarks.composite import crop_scene, fragments, scenes

    pixels, face_mask, true_alpha = crop_scene(scenes()[2])
    kept = segment.person_mask(pixels, 0.5, 8, islands="keep", face_mask=face_mask)[0].numpy()
    dropped = segment.person_mask(pixels, 0.5, 8, face_mask=face_mask)[0].numpy()
    assert fragments(kept, true_alpha)[0] >= 1
    assert fragments(dropped, true_alpha) == (0, 0)
    person = (true_alpha > 0.99) & (kept > 0.99)
    assert dropped[person].min() > 0.5 and np.abs(dropped - kept)[person].mean() < 0.001, "the person stays"

    # Seeds on a fragment choose it instead: the face mask decides what the person is.
    hard = segment.person_mask(pixels, 0.5, 0, islands="keep")[0].numpy()
    _, labels = cv2.connectedComponents(hard.astype(np.uint8))
    sizes = np.bincount(labels.ravel())[1:]
    small = 1 + int(np.argmin(sizes))
    chosen = segment.person_mask(pixels, 0.5, 0, face_mask=torch.from_numpy((labels == small)[None].astype(np.float32)))
    assert np.array_equal(chosen[0].numpy() > 0.5, labels == small)


def test_refined_edge_follows_the_photo_better_than_an_even_blur():
    """A generated scene with a known outline (benchmarks/composite.py): the refined mask is closer to it."""
    from benchmarks.composite import crop_scene, edge_error, scenes

    pixels, face_mask, true_alpha = crop_scene(scenes()[0])
    even = segment.person_mask(pixels, 0.5, 8, refine="none", face_mask=face_mask)[0].numpy()
    refined = segment.person_mask(pixels, 0.5, 8, face_mask=face_mask)[0].numpy()
    assert edge_error(refined, true_alpha) < 0.75 * edge_error(even, true_alpha)
    assert np.allclose(refined * 255, np.round(refined * 255), atol=1e-3), "8-bit levels, like any alpha"


@pytest.mark.parametrize("option", [{"refine": "sharp"}, {"islands": "some"}])
def test_unknown_refine_or_islands_is_invalid_input(option):
    with pytest.raises(EthMumbaiError) as info:
        mask_of(astronaut(), **option)
    assert info.value.code == "INVALID_INPUT"
