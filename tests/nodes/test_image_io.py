"""Base64 loading and saving (core/image_io.py) on real photos and generated edge cases."""

from __future__ import annotations

import base64
import io
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from custom_nodes.ethmumbai.core import image_io
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tools.images import astronaut, b64, decode_b64_image, encode, png_bomb, png_header_claiming

LIMITS = {"max_bytes": 20_000_000, "max_pixels": 40_000_000}


def load(data: bytes | str, **limits):
    text = data if isinstance(data, str) else b64(data)
    return image_io.load_base64_image(text, **{**LIMITS, **limits})


def error_of(data: bytes | str, **limits) -> EthMumbaiError:
    with pytest.raises(EthMumbaiError) as info:
        load(data, **limits)
    message = str(info.value)
    assert message.startswith(f"[{info.value.code}] ")
    assert len(message) < 300, "error messages stay short and never echo the input"
    return info.value


# ---------------------------------------------------------------- accepted inputs


def test_png_raw_base64_round_trips_exactly():
    photo = astronaut()
    image, mask = load(encode(photo))
    assert image.shape == (1, 512, 512, 3) and image.dtype == torch.float32
    assert np.array_equal((image[0].numpy() * 255).round().astype(np.uint8), photo)
    assert mask.shape == (1, 512, 512) and bool((mask == 1).all())


@pytest.mark.parametrize("wrap", [
    lambda s: "data:image/png;base64," + s,
    lambda s: "DATA:image/png;BASE64," + s,
    lambda s: "\n".join(s[i:i + 76] for i in range(0, len(s), 76)),  # MIME line breaks
    lambda s: s.rstrip("="),  # padding dropped
    lambda s: s.replace("+", "-").replace("/", "_"),  # URL-safe alphabet
    lambda s: "  " + s + "\n",
], ids=["data-uri", "data-uri-caps", "line-breaks", "no-padding", "urlsafe", "surrounding-space"])
def test_base64_variants_decode_to_the_same_image(wrap):
    png = encode(np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3))
    expected, _ = load(png)
    image, _ = load(wrap(b64(png)))
    assert torch.equal(image, expected)


@pytest.mark.parametrize("fmt", ["JPEG", "WEBP"])
def test_lossy_formats_decode_close_to_the_photo(fmt):
    photo = astronaut()
    image, _ = load(encode(photo, fmt, quality=95))
    assert image.shape == (1, 512, 512, 3)
    assert np.abs(image[0].numpy() - photo / 255.0).mean() < 0.03


def test_cmyk_jpeg_becomes_rgb():
    photo = astronaut()
    image, mask = load(encode(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95))
    assert image.shape == (1, 512, 512, 3)
    assert np.abs(image[0].numpy() - photo / 255.0).mean() < 0.05
    assert bool((mask == 1).all())


def test_palette_png_with_transparency_gives_rgb_and_alpha_mask():
    palette = Image.new("P", (8, 4))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.paste(1, (4, 0, 8, 4))  # right half: index 1 (blue), left half index 0 (red)
    image, mask = load(encode(palette, "PNG", transparency=0))  # index 0 transparent
    assert np.allclose(image[0, 0, 6].numpy(), [0, 0, 1])
    assert mask[0, :, :4].max() == 0 and mask[0, :, 4:].min() == 1


def test_palette_png_without_transparency_has_a_full_mask():
    image, mask = load(encode(Image.fromarray(astronaut()).quantize(64), "PNG"))
    assert image.shape == (1, 512, 512, 3) and bool((mask == 1).all())


def test_16_bit_greyscale_keeps_its_precision():
    ramp = np.linspace(0, 65535, 64 * 32).astype(np.uint16).reshape(32, 64)
    image, mask = load(encode(Image.fromarray(ramp), "PNG"))
    assert image.shape == (1, 32, 64, 3)
    expected = ramp / 65535.0
    for channel in range(3):
        assert np.abs(image[0, ..., channel].numpy() - expected).max() < 1e-6
    # More distinct levels than 8 bits could hold: the 16-bit data was not squashed.
    assert len(np.unique(image[0, ..., 0].numpy())) > 256
    assert bool((mask == 1).all())


@pytest.mark.parametrize("mode", ["L", "1"])
def test_greyscale_and_bilevel_become_three_equal_channels(mode):
    grey = Image.fromarray(astronaut()).convert(mode)
    image, _ = load(encode(grey, "PNG"))
    pixels = image[0].numpy()
    assert pixels.shape == (512, 512, 3)
    assert np.array_equal(pixels[..., 0], pixels[..., 1]) and np.array_equal(pixels[..., 1], pixels[..., 2])
    assert np.allclose(pixels[..., 0], np.asarray(grey.convert("L")) / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_channel_becomes_the_mask(mode):
    alpha = np.tile(np.linspace(0, 255, 16).astype(np.uint8), (8, 1))
    rgba = np.dstack([astronaut()[:8, :16], alpha])
    source = Image.fromarray(rgba, "RGBA").convert(mode)
    image, mask = load(encode(source, "PNG"))
    assert image.shape == (1, 8, 16, 3)
    assert np.allclose(mask[0].numpy(), alpha / 255.0, atol=1e-6)


def test_exif_orientation_is_applied():
    # 60 wide, 30 tall: left half red, right half blue. Orientation 6 = "rotate 90° clockwise to view".
    pixels = np.zeros((30, 60, 3), np.uint8)
    pixels[:, :30] = (255, 0, 0)
    pixels[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6
    image, _ = load(encode(pixels, "JPEG", quality=95, exif=exif.tobytes()))
    assert image.shape == (1, 60, 30, 3)  # upright: now taller than wide
    top, bottom = image[0, 5, 15].numpy(), image[0, 55, 15].numpy()
    assert top[0] > 0.8 and top[2] < 0.2, "the left (red) half is on top after a clockwise turn"
    assert bottom[2] > 0.8 and bottom[0] < 0.2


# ---------------------------------------------------------------- limits and bombs


def test_byte_limit_is_checked_before_base64_decoding(monkeypatch):
    def no_decoding(*_args, **_kwargs):
        raise AssertionError("base64 was decoded despite the byte limit")

    monkeypatch.setattr(image_io.base64, "b64decode", no_decoding)
    err = error_of(encode(astronaut()), max_bytes=10_000)
    assert err.code == "IMAGE_TOO_LARGE" and "10000 bytes" in err.message


def test_decompression_bomb_header_is_refused_before_pillow_opens_it(monkeypatch):
    def no_opening(*_args, **_kwargs):
        raise AssertionError("Pillow was asked to open a decompression bomb")

    monkeypatch.setattr(image_io.Image, "open", no_opening)
    err = error_of(png_header_claiming(20000, 20000))
    assert err.code == "IMAGE_TOO_LARGE"
    assert "20000x20000" in err.message and "40000000" in err.message


def test_real_png_bomb_is_refused():
    bomb = png_bomb(10000, 10000)  # 100 megapixels in a file of a few kB
    assert len(bomb) < 100_000
    assert error_of(bomb).code == "IMAGE_TOO_LARGE"


def test_pixel_limit_is_configurable():
    png = encode(astronaut())
    assert error_of(png, max_pixels=512 * 512 - 1).code == "IMAGE_TOO_LARGE"
    assert load(png, max_pixels=512 * 512)[0].shape == (1, 512, 512, 3)


def test_jpeg_header_size_is_read_from_the_frame_header():
    jpeg = bytearray(encode(astronaut()[:100, :200], "JPEG"))
    assert image_io.header_size(bytes(jpeg), "jpeg") == (200, 100)
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 5:sof + 9] = struct.pack(">HH", 60000, 60000)
    assert error_of(bytes(jpeg)).code == "IMAGE_TOO_LARGE"


@pytest.mark.parametrize("save_args, chunk", [
    ({"quality": 80}, b"VP8 "), ({"lossless": True}, b"VP8L"), ({"quality": 80, "exact": True}, b"VP8X"),
], ids=["lossy", "lossless", "extended"])
def test_webp_header_size_for_each_chunk_type(save_args, chunk):
    pixels = astronaut()[:100, :200]
    if chunk == b"VP8X":  # alpha forces the extended format
        pixels = np.dstack([pixels, np.full((100, 200), 128, np.uint8)])
    webp = encode(pixels, "WEBP", **save_args)
    assert webp[12:16] == chunk
    assert image_io.header_size(webp, "webp") == (200, 100)


def test_webp_canvas_bomb_is_refused():
    webp = bytearray(encode(np.dstack([astronaut()[:16, :16], np.full((16, 16), 9, np.uint8)]), "WEBP"))
    assert webp[12:16] == b"VP8X"
    webp[24:30] = (16000 - 1).to_bytes(3, "little") * 2
    assert error_of(bytes(webp)).code == "IMAGE_TOO_LARGE"


# ---------------------------------------------------------------- refused inputs


@pytest.mark.parametrize("text", ["hello world!", "data:image/png;base64,@@@@", "QUJD=QUJD", "A"],
                         ids=["punctuation", "data-uri-junk", "inner-padding", "bad-length"])
def test_text_that_is_not_base64_is_invalid_input(text):
    assert error_of(text).code == "INVALID_INPUT"


def test_data_uri_that_is_not_base64_is_invalid_input():
    err = error_of("data:image/svg+xml;utf8,<svg></svg>")
    assert err.code == "INVALID_INPUT" and "base64" in err.message


def test_non_string_input_is_invalid_input():
    with pytest.raises(EthMumbaiError) as info:
        image_io.load_base64_image(b"abc", **LIMITS)
    assert info.value.code == "INVALID_INPUT"


@pytest.mark.parametrize("text", ["", "data:image/png;base64,"], ids=["empty", "empty-data-uri"])
def test_zero_byte_image_is_unsupported(text):
    err = error_of(text)
    assert err.code == "UNSUPPORTED_IMAGE" and "0 bytes" in err.message


def test_svg_is_unsupported():
    svg = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"></svg>'
    err = error_of(svg)
    assert err.code == "UNSUPPORTED_IMAGE" and "SVG" in err.message


def test_gif_is_unsupported():
    err = error_of(encode(astronaut()[:32, :32], "GIF"))
    assert err.code == "UNSUPPORTED_IMAGE" and "GIF" in err.message


def test_animated_gif_is_unsupported():
    frames = [Image.fromarray(astronaut()[:32, :32]), Image.fromarray(astronaut()[32:64, :32])]
    out = io.BytesIO()
    frames[0].save(out, "GIF", save_all=True, append_images=frames[1:], duration=100)
    assert error_of(out.getvalue()).code == "UNSUPPORTED_IMAGE"


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_animated_png_and_webp_are_unsupported(fmt):
    frames = [Image.fromarray(astronaut()[:32, :32]), Image.fromarray(astronaut()[32:64, :32])]
    out = io.BytesIO()
    frames[0].save(out, fmt, save_all=True, append_images=frames[1:], duration=100)
    err = error_of(out.getvalue())
    assert err.code == "UNSUPPORTED_IMAGE" and "animated" in err.message


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_truncated_file_is_unsupported(fmt):
    data = encode(astronaut(), fmt)
    err = error_of(data[: len(data) // 2])
    assert err.code == "UNSUPPORTED_IMAGE"


def test_truncated_header_is_unsupported():
    assert error_of(encode(astronaut())[:20]).code == "UNSUPPORTED_IMAGE"


def test_corrupt_png_data_is_unsupported():
    data = bytearray(encode(astronaut()))
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(64)
    err = error_of(bytes(data))
    assert err.code == "UNSUPPORTED_IMAGE" and "corrupt" in err.message


def test_unknown_binary_is_unsupported():
    assert error_of(np.random.default_rng(0).bytes(2000)).code == "UNSUPPORTED_IMAGE"


# ---------------------------------------------------------------- saving


def saved(pixels: np.ndarray, fmt: str, quality: int = 95) -> dict:
    (entry,) = image_io.save_base64_images(torch.from_numpy(pixels.astype(np.float32) / 255.0)[None], fmt, quality)
    return entry


def png_chunk_types(data: bytes) -> list[bytes]:
    kinds, pos = [], 8
    while pos < len(data):
        length = struct.unpack(">I", data[pos:pos + 4])[0]
        kinds.append(data[pos + 4:pos + 8])
        pos += 12 + length
    return kinds


def test_png_output_is_lossless_and_has_no_metadata_chunks():
    photo = astronaut()
    entry = saved(photo, "png")
    assert (entry["format"], entry["width"], entry["height"]) == ("png", 512, 512)
    data = base64.b64decode(entry["base64"])
    assert png_chunk_types(data) == [b"IHDR"] + [b"IDAT"] * (len(png_chunk_types(data)) - 2) + [b"IEND"]
    assert np.array_equal(np.asarray(decode_b64_image(entry["base64"])), photo)


def test_jpeg_output_has_no_exif_and_follows_quality():
    photo = astronaut()
    high, low = saved(photo, "jpeg", 95), saved(photo, "jpeg", 20)
    data = base64.b64decode(high["base64"])
    assert data.startswith(b"\xff\xd8") and b"Exif" not in data and b"\xff\xe1" not in data[:1000]
    assert len(low["base64"]) < len(high["base64"]) / 2
    assert decode_b64_image(high["base64"]).size == (512, 512)


def test_webp_output_has_only_image_chunks():
    data = base64.b64decode(saved(astronaut(), "webp", 80)["base64"])
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert data[12:16] in (b"VP8 ", b"VP8L") and b"EXIF" not in data and b"XMP " not in data


def test_rgba_keeps_alpha_in_png_and_drops_it_in_jpeg():
    rgba = np.dstack([astronaut()[:16, :16], np.full((16, 16), 77, np.uint8)])
    assert decode_b64_image(saved(rgba, "png")["base64"]).mode == "RGBA"
    assert decode_b64_image(saved(rgba, "jpeg")["base64"]).mode == "RGB"


def test_every_image_of_a_batch_is_encoded():
    batch = torch.rand(3, 8, 12, 3)
    entries = image_io.save_base64_images(batch, "png", 95)
    assert [(e["width"], e["height"]) for e in entries] == [(12, 8)] * 3


def test_unknown_output_format_is_invalid_input():
    with pytest.raises(EthMumbaiError) as info:
        image_io.save_base64_images(torch.rand(1, 4, 4, 3), "gif", 95)
    assert info.value.code == "INVALID_INPUT"


# ---------------------------------------------------------------- the editor's upload loader (a file)


def test_a_file_decodes_exactly_like_its_base64(tmp_path):
    rgba = np.dstack([astronaut(), np.tile(np.arange(512, dtype=np.uint8)[:, None] // 2, (1, 512))])
    data = encode(rgba)
    (tmp_path / "me.png").write_bytes(data)
    from_file = image_io.load_image_file(tmp_path / "me.png", **LIMITS)
    from_base64 = load(data)
    assert all(torch.equal(a, b) for a, b in zip(from_file, from_base64, strict=True))


@pytest.mark.parametrize("content, limits, code, words", [
    (None, {}, "INVALID_INPUT", "drop a photo"),
    (b"", {}, "UNSUPPORTED_IMAGE", "0 bytes"),
    (encode(astronaut()), {"max_bytes": 1000}, "IMAGE_TOO_LARGE", "raise max_bytes"),
    (encode(astronaut()), {"max_pixels": 1000}, "IMAGE_TOO_LARGE", "512x512"),
    (b"GIF89a" + bytes(100), {}, "UNSUPPORTED_IMAGE", "PNG, JPEG or WebP"),
])
def test_a_bad_file_gets_the_same_coded_errors(tmp_path, content, limits, code, words):
    path = tmp_path / "photo.png"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(EthMumbaiError) as info:
        image_io.load_image_file(path, **{**LIMITS, **limits})
    assert info.value.code == code and words in info.value.message
