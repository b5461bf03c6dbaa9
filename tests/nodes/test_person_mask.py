"""Person segmentation (core/segment.py) and mask feathering (core/masks.py)."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from custom_nodes.ethmumbai.core import masks, segment
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tests.nodes.images import ASTRONAUT_FACE, astronaut, to_tensor


def mask_of(pixels: np.ndarray, threshold: float = 0.5, feather: int = 0) -> np.ndarray:
    result = segment.person_mask(to_tensor(pixels), threshold, feather)
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
    hard, soft = mask_of(astronaut()), mask_of(astronaut(), feather=12)
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
