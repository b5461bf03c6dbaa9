"""Base64 in and out: decode untrusted uploads safely, encode results with no metadata.

Order of the checks on the way in, cheapest first, so hostile input is refused before any large
allocation: string length (byte limit) → base64 alphabet → magic bytes (format) → dimensions read
from the file header (pixel limit, decompression bombs) → animation → full decode.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from .errors import IMAGE_TOO_LARGE, INVALID_INPUT, UNSUPPORTED_IMAGE, EthMumbaiError
from .tensors import as_float, as_uint8, batch_arrays

OUTPUT_FORMATS = ("png", "webp", "jpeg")
# Default input limits of a photo (the load node's defaults; the worker's result cache decodes no more than this).
MAX_IMAGE_BYTES = 20_000_000
MAX_IMAGE_PIXELS = 40_000_000
# zlib's run-length strategy after PNG's row filters: on a 1024² photo about 65 ms and 1.22 MB,
# against 400 ms and 1.24 MB with Pillow's defaults (level 6, default strategy). Lossless either way.
PNG_ZLIB = {"compress_level": 1, "compress_type": zlib.Z_RLE}

_PIL_FORMATS = {"png": "PNG", "jpeg": "JPEG", "webp": "WEBP"}
_WHITESPACE = re.compile(r"\s")
_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")
_JPEG_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}  # SOFn, not DHT/JPG/DAC
_JPEG_STANDALONE_MARKERS = frozenset(range(0xD0, 0xDA)) | {0x01}  # RSTn, SOI, EOI, TEM: no length field


# ---------------------------------------------------------------- decoding


def load_base64_image(text: str, max_bytes: int, max_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a base64 (or ``data:`` URI) PNG/JPEG/WebP into IMAGE ``[1,H,W,3]`` and MASK ``[1,H,W]``.

    The mask is the alpha channel (1 = opaque), all ones for images without alpha. EXIF
    orientation is applied.
    """
    return load_image_bytes(decode_base64(text, max_bytes), max_pixels)


def load_image_file(path: Path, max_bytes: int, max_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same decode as :func:`load_base64_image`, from a file (the editor's upload loader)."""
    try:
        size = path.stat().st_size
    except OSError:
        raise EthMumbaiError(INVALID_INPUT, f"photo {path.name!r} is not in ComfyUI's input folder: "
                                            "drop a photo on the Load Image node and run again") from None
    if size > max_bytes:
        raise EthMumbaiError(IMAGE_TOO_LARGE, f"photo is {size} bytes, over the limit of {max_bytes} bytes: "
                                              "use a smaller file or raise max_bytes")
    if size == 0:
        raise EthMumbaiError(UNSUPPORTED_IMAGE, "image is empty (0 bytes): send a PNG, JPEG or WebP photo")
    return load_image_bytes(path.read_bytes(), max_pixels)


def load_image_bytes(data: bytes, max_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    image = open_image(data, max_pixels)
    rgb, alpha = to_rgb_and_alpha(image)
    mask = alpha if alpha is not None else torch.ones(rgb.shape[:2], dtype=torch.float32)
    return rgb.unsqueeze(0), mask.unsqueeze(0)


def decode_base64(text: str, max_bytes: int) -> bytes:
    """Base64 text (raw or data URI) to bytes, refusing oversized input before decoding it."""
    if not isinstance(text, str):
        raise EthMumbaiError(INVALID_INPUT, f"image must be a base64 string, got {type(text).__name__}")
    payload = _strip_data_uri(text.strip())
    if _WHITESPACE.search(payload):  # MIME-style line breaks are legal in base64
        payload = "".join(payload.split())
    size = len(payload) * 3 // 4 - (len(payload) - len(payload.rstrip("=")))
    if size > max_bytes:
        raise EthMumbaiError(IMAGE_TOO_LARGE, f"image is about {size} bytes, over the limit of {max_bytes} bytes: "
                                              "send a smaller file")
    if not payload.isascii():
        raise EthMumbaiError(INVALID_INPUT, "image is not valid base64 (non-ASCII characters)")
    payload = payload.translate(_URLSAFE_TO_STANDARD)
    if len(payload) % 4:
        payload += "=" * (-len(payload) % 4)  # senders often drop the padding
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise EthMumbaiError(INVALID_INPUT, "image is not valid base64") from None
    if not data:
        raise EthMumbaiError(UNSUPPORTED_IMAGE, "image is empty (0 bytes): send a PNG, JPEG or WebP photo")
    return data


def _strip_data_uri(text: str) -> str:
    if not text[:5].lower() == "data:":
        return text
    header, sep, payload = text.partition(",")
    if not sep:
        raise EthMumbaiError(INVALID_INPUT, "malformed data URI: no comma before the payload")
    if ";base64" not in header.lower():
        raise EthMumbaiError(INVALID_INPUT, "data URI is not base64-encoded (missing ';base64')")
    return payload


def sniff_format(data: bytes) -> str:
    """``png``, ``jpeg`` or ``webp`` from the magic bytes; anything else is UNSUPPORTED_IMAGE."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith((b"GIF87a", b"GIF89a")):
        kind = "GIF"
    elif b"<svg" in data[:1024].lower():
        kind = "SVG"
    else:
        kind = "unrecognised data"
    raise EthMumbaiError(UNSUPPORTED_IMAGE, f"{kind} is not a supported image: send PNG, JPEG or WebP")


def header_size(data: bytes, fmt: str) -> tuple[int, int]:
    """(width, height) read from the file header alone, without decoding any pixels."""
    try:
        if fmt == "png":
            if data[12:16] != b"IHDR":
                raise ValueError("no IHDR chunk")
            return struct.unpack(">II", data[16:24])
        if fmt == "webp":
            return _webp_size(data)
        return _jpeg_size(data)
    except (ValueError, struct.error, IndexError):
        raise EthMumbaiError(UNSUPPORTED_IMAGE, f"corrupt or truncated {fmt.upper()} header") from None


def _webp_size(data: bytes) -> tuple[int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 ":  # lossy: 3-byte frame tag, start code, 14-bit sizes
        if data[23:26] != b"\x9d\x01\x2a":
            raise ValueError("bad VP8 start code")
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L":  # lossless: signature byte, then 14-bit (size - 1) fields
        if data[20] != 0x2F:
            raise ValueError("bad VP8L signature")
        bits = struct.unpack("<I", data[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":  # extended: 24-bit (canvas size - 1) fields
        if len(data) < 30:
            raise ValueError("short VP8X chunk")
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError("unknown WebP chunk")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos = 2
    while True:
        while data[pos] != 0xFF:  # tolerate junk between segments, as decoders do
            pos += 1
        while data[pos] == 0xFF:  # fill bytes
            pos += 1
        marker = data[pos]
        pos += 1
        if marker in _JPEG_STANDALONE_MARKERS:
            continue
        if marker == 0xDA:
            raise ValueError("scan data before any frame header")
        length = struct.unpack(">H", data[pos:pos + 2])[0]
        if marker in _JPEG_SOF_MARKERS:
            height, width = struct.unpack(">HH", data[pos + 3:pos + 7])
            return width, height
        pos += length


def open_image(data: bytes, max_pixels: int) -> Image.Image:
    """Fully decoded, EXIF-oriented PIL image, after the format, pixel-limit and animation checks."""
    fmt = sniff_format(data)
    width, height = header_size(data, fmt)
    if width * height > max_pixels:
        raise EthMumbaiError(
            IMAGE_TOO_LARGE,
            f"image is {width}x{height} = {width * height} pixels, over the limit of {max_pixels} pixels: "
            "send a smaller photo",
        )
    if width == 0 or height == 0:
        raise EthMumbaiError(UNSUPPORTED_IMAGE, f"{fmt.upper()} header claims an empty {width}x{height} image")
    try:
        with warnings.catch_warnings():
            # Our own pixel limit has already been applied; Pillow's global one must not override it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=[_PIL_FORMATS[fmt]])
            if fmt != "jpeg" and getattr(image, "n_frames", 1) > 1:
                raise EthMumbaiError(UNSUPPORTED_IMAGE, f"animated {fmt.upper()} is not supported: send a still image")
            image.load()
    except EthMumbaiError:
        raise
    except Image.DecompressionBombError:
        raise EthMumbaiError(IMAGE_TOO_LARGE, "image is over Pillow's decompression-bomb limit") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, EOFError... on bad data
        raise EthMumbaiError(UNSUPPORTED_IMAGE, f"corrupt or truncated {fmt.upper()} ({type(exc).__name__}): "
                                                  "save the photo again as PNG or JPEG") from None
    ImageOps.exif_transpose(image, in_place=True)
    return image


def to_rgb_and_alpha(image: Image.Image) -> tuple[torch.Tensor, torch.Tensor | None]:
    """RGB float32 ``[H,W,3]`` in 0..1 and alpha ``[H,W]`` (None when the image has no transparency).

    16-bit greyscale keeps its full precision; CMYK, palette, 1-bit and greyscale become RGB.
    """
    if image.mode.startswith("I"):  # 16-bit (I;16*) or 32-bit integer greyscale from 16-bit PNGs
        grey = torch.from_numpy(np.asarray(image).astype(np.float32)).div_(65535.0).clamp_(0.0, 1.0)
        return grey.unsqueeze(-1).expand(-1, -1, 3).contiguous(), None
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    values = torch.from_numpy(as_float(np.asarray(image.convert("RGBA") if has_alpha else image.convert("RGB"))))
    if has_alpha:
        return values[..., :3].contiguous(), values[..., 3].contiguous()
    return values, None


# ---------------------------------------------------------------- encoding


def encode_image(pixels: np.ndarray, fmt: str, quality: int) -> bytes:
    """uint8 ``[H,W,C]`` (C = 1, 3 or 4) to PNG/WebP/JPEG bytes with no metadata at all.

    ``quality`` applies to WebP and JPEG; PNG is lossless. JPEG has no alpha, so it is dropped.
    """
    if fmt not in OUTPUT_FORMATS:
        raise EthMumbaiError(INVALID_INPUT, f"format must be one of {', '.join(OUTPUT_FORMATS)}, got {fmt!r}")
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    elif pixels.shape[-1] == 4 and fmt == "jpeg":
        pixels = pixels[..., :3]
    image = Image.fromarray(np.ascontiguousarray(pixels))
    out = io.BytesIO()
    if fmt == "png":
        image.save(out, "PNG", **PNG_ZLIB)
    else:
        image.save(out, _PIL_FORMATS[fmt], quality=int(quality))
    return out.getvalue()


def save_base64_images(images: torch.Tensor, fmt: str, quality: int) -> list[dict]:
    """Each image of an IMAGE batch as ``{"base64", "format", "width", "height"}``; nothing touches disk."""
    results = []
    for pixels in batch_arrays(images):
        data = encode_image(as_uint8(pixels), fmt, quality)
        height, width = pixels.shape[:2]
        results.append({
            "base64": base64.b64encode(data).decode("ascii"), "format": fmt, "width": width, "height": height,
        })
    return results
