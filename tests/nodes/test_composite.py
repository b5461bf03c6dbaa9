"""Background composite and paste-back (core/composite.py) and the bundled backgrounds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from custom_nodes.ethmumbai.core import composite, crop, face
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tests.nodes.images import astronaut, to_tensor

ASSETS = sorted(path.name for path in composite.BACKGROUND_DIR.glob("*.png"))


def blend(fg, mask, background="solid", colour="#000000", colour2="#ffffff", feather=0, **paste):
    return composite.composite(fg, mask, background, colour, colour2, feather, **paste)


def test_choices_are_the_bundled_pngs_then_solid_and_gradient():
    assert len(ASSETS) >= 1
    assert composite.background_choices() == [*ASSETS, "solid", "gradient"]


@pytest.mark.parametrize("name", ASSETS)
def test_bundled_backgrounds_are_small_square_rgb_pngs(name):
    path = composite.BACKGROUND_DIR / name
    assert path.stat().st_size < 300_000
    with Image.open(path) as image:
        assert image.format == "PNG" and image.mode == "RGB" and image.size == (1024, 1024)
        assert not image.info.get("parameters") and not image.text


def test_mask_selects_foreground_over_a_solid_colour():
    fg = torch.ones(1, 4, 6, 3)
    mask = torch.zeros(1, 4, 6)
    mask[:, :, 3:] = 1
    out = blend(fg, mask, colour="#FF8000")[0].numpy()
    assert np.allclose(out[:, 3:], 1.0)
    assert np.allclose(out[:, :3], [1.0, 128 / 255, 0.0])


def test_gradient_runs_from_colour_at_the_top_to_colour2_at_the_bottom():
    out = blend(torch.zeros(1, 50, 8, 3), torch.zeros(1, 50, 8), "gradient", "#000000", "#00FF00")[0].numpy()
    assert np.allclose(out[0], [0, 0, 0]) and np.allclose(out[-1], [0, 1, 0])
    assert np.all(np.diff(out[:, 0, 1]) > 0)


@pytest.mark.parametrize("name", ASSETS)
def test_asset_background_is_scaled_to_cover_the_foreground(name):
    out = blend(torch.zeros(1, 90, 160, 3), torch.zeros(1, 90, 160), name)[0].numpy()
    assert out.shape == (90, 160, 3)
    with Image.open(composite.BACKGROUND_DIR / name) as image:
        expected = np.asarray(image.convert("RGB").resize((160, 160), Image.Resampling.LANCZOS))[35:125] / 255
    assert np.abs(out - expected).mean() < 0.01


def test_feather_blends_the_edge():
    mask = torch.zeros(1, 64, 64)
    mask[:, :, 32:] = 1
    out = blend(torch.ones(1, 64, 64, 3), mask, feather=8)[0, 10, :, 0].numpy()
    assert out[0] == 0 and out[-1] == pytest.approx(1) and 0.3 < out[32] < 0.7
    assert np.all(np.diff(out) >= 0)


def test_mask_of_another_size_is_resized_to_the_foreground():
    out = blend(torch.ones(1, 64, 64, 3), torch.ones(1, 16, 16))
    assert out.shape == (1, 64, 64, 3) and torch.allclose(out, torch.ones(1))


def test_batches_pair_up_and_a_single_mask_is_shared():
    out = blend(torch.rand(3, 8, 8, 3), torch.ones(1, 8, 8))
    assert out.shape == (3, 8, 8, 3)
    with pytest.raises(EthMumbaiError):
        blend(torch.rand(3, 8, 8, 3), torch.ones(2, 8, 8))


@pytest.mark.parametrize("bad", ["red", "#12345", "#GGGGGG", ""])
def test_bad_colour_is_invalid_input(bad):
    with pytest.raises(EthMumbaiError) as info:
        blend(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4), colour=bad)
    assert info.value.code == "INVALID_INPUT"


@pytest.mark.parametrize("name", ["nope.png", "../../__init__.py"])
def test_unknown_background_is_invalid_input(name):
    with pytest.raises(EthMumbaiError) as info:
        blend(torch.zeros(1, 4, 4, 3), torch.zeros(1, 4, 4), name)
    assert info.value.code == "INVALID_INPUT"


def test_paste_back_puts_the_crop_where_it_came_from():
    photo = to_tensor(astronaut())
    crop_pixels, _, box = face.face_crop(photo, 256, 0.6, "mediapipe", "largest", "fail", 0.5)
    out = blend(crop_pixels, torch.ones(1, 256, 256), original=photo, crop_box=box)
    assert out.shape == photo.shape
    inside = (slice(box.y, box.y + box.size), slice(box.x, box.x + box.size))
    assert (out[0][inside] - photo[0][inside]).abs().mean() < 0.02, "only resampling error inside the box"
    outside = torch.ones(512, 512, dtype=torch.bool)
    outside[inside] = False
    assert torch.equal(out[0][outside], photo[0][outside]), "untouched outside the box"


def test_paste_back_is_exact_when_the_crop_was_not_resized():
    photo = to_tensor(astronaut())
    box = crop.CropBox(512, 512, 140, 40, 160, 160)
    square = torch.from_numpy(crop.extract(photo[0].numpy(), box))[None]
    assert torch.equal(blend(square, torch.ones(1, 160, 160), original=photo, crop_box=box), photo)


def test_paste_back_with_an_empty_mask_returns_the_original():
    photo = to_tensor(astronaut())
    box = crop.CropBox(512, 512, 140, 40, 160, 64)
    out = blend(torch.zeros(1, 64, 64, 3), torch.zeros(1, 64, 64), original=photo, crop_box=box)
    assert torch.equal(out, photo)


def test_paste_back_needs_both_original_and_crop_box():
    with pytest.raises(EthMumbaiError) as info:
        blend(torch.zeros(1, 4, 4, 3), torch.ones(1, 4, 4), original=torch.zeros(1, 4, 4, 3))
    assert info.value.code == "INVALID_INPUT"
