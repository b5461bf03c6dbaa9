"""Background composite and paste-back (core/composite.py), the bundled backgrounds and their overlays."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from custom_nodes.ethmumbai.core import composite, crop, face
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tools.images import astronaut, to_tensor

ASSETS = list(composite.catalogue(composite.BACKGROUND_DIR))


def blend(fg, mask, background="solid", colour="#000000", colour2="#ffffff", feather=0, **paste):
    return composite.composite(fg, mask, background, colour, colour2, feather, **paste)


def test_choices_are_the_catalogue_entries_then_solid_and_gradient():
    assert ASSETS == ["ethmumbai_night.png", "ethmumbai_sunset.png"], "names in the workflow's background enum"
    assert composite.background_choices() == [*ASSETS, "solid", "gradient"]


def test_every_png_in_the_folder_is_a_background_or_an_overlay_of_one():
    entries = composite.catalogue(composite.BACKGROUND_DIR)
    listed = {*entries, *(entry["overlay"]["file"] for entry in entries.values() if "overlay" in entry)}
    assert {path.name for path in composite.BACKGROUND_DIR.glob("*.png")} == listed


@pytest.mark.parametrize("name", ASSETS)
def test_bundled_backgrounds_and_overlays_are_small_square_pngs(name):
    overlay_file = composite.catalogue(composite.BACKGROUND_DIR)[name]["overlay"]["file"]
    for file, mode in ((name, "RGB"), (overlay_file, "RGBA")):
        path = composite.BACKGROUND_DIR / file
        assert path.stat().st_size < 300_000
        with Image.open(path) as image:
            assert image.format == "PNG" and image.mode == mode and image.size == (1024, 1024)
            assert not image.info.get("parameters") and not image.text


@pytest.mark.parametrize("size", [1024, 512, 300])
@pytest.mark.parametrize("name", ASSETS)
def test_overlay_stays_inside_the_circle_profile_sites_crop_to(name, size):
    layer = composite.overlay(name, size, size)
    y, x = np.divmod(layer.index, size)
    radius = np.hypot(x + 0.5 - size / 2, y + 0.5 - size / 2)
    assert radius.max() <= size / 2, "nothing of the brand is cut off by a circular crop"
    assert len(layer.index) > 0.02 * size * size, "there is a brand to see"


@pytest.mark.parametrize("name", ASSETS)
def test_overlay_is_drawn_over_the_person(name):
    """A person filling the whole frame (mask all ones) still shows every opaque overlay pixel as drawn."""
    person = torch.full((1, 256, 256, 3), 0.5)
    out = blend(person, torch.ones(1, 256, 256), name)[0].numpy().reshape(-1, 3)
    layer = composite.overlay(name, 256, 256)
    opaque = layer.alpha[:, 0] == 1.0
    assert opaque.sum() > 500
    assert np.abs(out[layer.index[opaque]] - layer.rgb[opaque]).max() < 1e-6
    untouched = np.ones(256 * 256, bool)
    untouched[layer.index] = False
    assert np.all(out[untouched] == 0.5), "the person elsewhere"


def test_colour_backgrounds_have_no_overlay():
    out = blend(torch.full((1, 32, 32, 3), 0.25), torch.ones(1, 32, 32), "gradient")
    assert torch.all(out == 0.25)


def png(path, size, mode, colour):
    Image.new(mode, size, colour).save(path)


def test_a_designer_adds_a_background_with_two_pngs_and_a_json_entry(tmp_path, monkeypatch):
    png(tmp_path / "beach.png", (200, 100), "RGB", (0, 0, 255))
    badge = Image.new("RGBA", (40, 20))
    badge.paste((255, 0, 0, 255), (0, 0, 40, 20))
    badge.save(tmp_path / "beach_badge.png")
    (tmp_path / "backgrounds.json").write_text(json.dumps({
        "beach.png": {"label": "Beach", "overlay": {"file": "beach_badge.png", "center": [0.5, 0.75], "width": 0.4}},
    }))
    monkeypatch.setattr(composite, "BACKGROUND_DIR", tmp_path)
    assert composite.background_choices() == ["beach.png", "solid", "gradient"]
    out = blend(torch.ones(1, 100, 100, 3), torch.ones(1, 100, 100), "beach.png")[0].numpy()
    # The badge: 40% of the side wide (40 px), half as high, centred at (50, 75); drawn over the person.
    assert np.allclose(out[70:80, 31:69], [1, 0, 0])
    assert np.allclose(out[:60], 1.0) and np.allclose(out[:, :25], 1.0), "the person elsewhere"
    out = blend(torch.ones(1, 100, 100, 3), torch.zeros(1, 100, 100), "beach.png")[0].numpy()
    assert np.allclose(out[:60], [0, 0, 1]), "the background PNG behind"


@pytest.mark.parametrize("entry, problem", [
    ({"gone.png": {"label": "x"}}, "gone.png is not a file beside it"),
    ({"bg.png": {"label": "x", "overlay": {"file": "missing.png", "center": [0.5, 0.5], "width": 1}}},
     "missing.png is not a file beside it"),
    ({"bg.png": {"label": "x", "overlay": {"file": "bg.png", "width": 1}}}, "overlay needs center"),
    ({"../bg.png": {"label": "x"}}, "../bg.png is not a file beside it"),
])
def test_a_catalogue_mistake_names_the_file_and_the_entry(tmp_path, entry, problem):
    png(tmp_path / "bg.png", (8, 8), "RGB", (0, 0, 0))
    (tmp_path / "backgrounds.json").write_text(json.dumps(entry))
    with pytest.raises(ValueError) as info:
        composite.catalogue(tmp_path)
    assert "backgrounds.json" in str(info.value) and problem in str(info.value) and next(iter(entry)) in str(info.value)


def test_clean_edge_removes_the_old_backdrop_colour_from_the_soft_band():
    """A red person on a green backdrop with an 8 px soft edge, composited on black: with clean_edge the
    band carries red (the person's colour) at the mask's strength, and a tenth of the green."""
    ramp = np.clip((np.arange(256, dtype=np.float32) - 128) / 8 + 0.5, 0, 1)
    alpha = np.broadcast_to(ramp, (256, 256)).copy()
    photo = alpha[..., None] * np.array([1, 0, 0], np.float32) + (1 - alpha[..., None]) * np.array([0, 1, 0], np.float32)
    image, mask = torch.from_numpy(photo)[None], torch.from_numpy(alpha)[None]
    raw, clean = (blend(image, mask, clean_edge=flag)[0].numpy() for flag in (False, True))
    band = (alpha > 0.05) & (alpha < 0.95)
    assert raw[band][:, 1].mean() > 0.15, "raw: the old green shows in the band"
    assert clean[band][:, 1].mean() < raw[band][:, 1].mean() / 8 and clean[band][:, 1].max() < 0.04
    assert np.allclose(clean[band][:, 0], alpha[band], atol=0.04), "clean: red at the mask's strength"
    assert np.array_equal(raw[alpha == 1], clean[alpha == 1]), "the solid person is untouched"


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
    out = composite.make_background(name, "#000000", "#000000", 90, 160)
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
    crop_pixels, _, box, _ = face.face_crop(photo, 256, 0.6, "mediapipe", "largest", "fail", 0.5)
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
