"""cache_key: the same photo and request give one key however the photo was encoded; any real change gives another."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tools.images import astronaut, b64, chelsea, encode
from worker.storage import cache_key

PARAMS = {"seed": 42, "steps": 4, "cfg": 7.0, "prompt": "a portrait", "background": "solid"}
MODELS = {"sdxl.safetensors": "ab" * 32, "lora.safetensors": "cd" * 32}


def key(image, params=PARAMS, version="v1", models=MODELS) -> str:
    return cache_key(image, params, version, models)


@pytest.fixture(scope="module")
def photo() -> bytes:
    return encode(astronaut())


def exif_rotated_png(pixels: np.ndarray) -> bytes:
    """The pixels stored turned a quarter counter-clockwise, with EXIF orientation 6 saying how to turn them back."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    return encode(np.ascontiguousarray(np.rot90(pixels)), exif=exif.tobytes())


def test_lossless_re_encodings_of_the_same_pixels_share_a_key(photo):
    base = key(photo)
    assert len(base) == 64 and int(base, 16) >= 0
    assert key(encode(astronaut(), compress_level=9)) == base
    assert key(encode(astronaut(), "WEBP", lossless=True)) == base
    assert key(exif_rotated_png(astronaut())) == base
    assert key(b64(photo)) == base  # the job's base64 text
    assert key("data:image/png;base64," + b64(photo)) == base


def test_the_request_is_canonical(photo):
    base = key(photo)
    assert key(photo, dict(reversed(PARAMS.items()))) == base
    assert key(photo, {**PARAMS, "cfg": 7}) == base  # 7 and 7.0 are one cfg
    assert key(photo, {**PARAMS, "return": "url", "user": "alice"}) == base  # delivery, not pixels


@pytest.mark.parametrize("change", [
    {"params": {**PARAMS, "seed": 43}},
    {"params": {**PARAMS, "prompt": "a portrait "}},
    {"params": {**PARAMS, "cfg": 7.5}},
    {"params": {k: v for k, v in PARAMS.items() if k != "background"}},
    {"version": "v2"},
    {"models": {**MODELS, "lora.safetensors": "ce" * 32}},
    {"models": {}},
])
def test_any_change_to_params_version_or_models_changes_the_key(photo, change):
    assert key(photo, **change) != key(photo)


def test_any_change_to_the_pixels_changes_the_key(photo):
    pixels = astronaut().copy()
    pixels[100, 100, 0] ^= 1
    assert key(encode(pixels)) != key(photo)
    assert key(encode(chelsea())) != key(photo)
    rgba = np.dstack([astronaut(), np.full(astronaut().shape[:2], 255, np.uint8)])
    assert key(encode(rgba)) == key(photo)  # opaque alpha: the same all-ones mask as no alpha
    rgba[0, 0, 3] = 0  # same colours, one transparent pixel: the mask output differs
    assert key(encode(rgba)) != key(photo)


def test_an_image_the_workflow_would_refuse_is_refused_with_its_code():
    with pytest.raises(EthMumbaiError) as err:
        key(b"GIF89a not supported")
    assert err.value.code == "UNSUPPORTED_IMAGE"
    with pytest.raises(EthMumbaiError) as err:
        key("not base64 !!")
    assert err.value.code == "INVALID_INPUT"
