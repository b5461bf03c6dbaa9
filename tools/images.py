"""Test images: real photos from scikit-image and generated edge cases, as arrays, tensors or base64."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import numpy as np
import torch
from PIL import Image
from skimage import data

# Where mediapipe finds the astronaut's face on the 512x512 image (x, y, w, h).
ASTRONAUT_FACE = (177, 82, 95, 95)


def astronaut() -> np.ndarray:
    return data.astronaut()


def chelsea() -> np.ndarray:
    """A cat: no human face."""
    return data.chelsea()


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """uint8 ``[H,W,3]`` to a one-image IMAGE batch."""
    return torch.from_numpy(pixels.astype(np.float32) / 255.0).unsqueeze(0)


def encode(image: Image.Image | np.ndarray, fmt: str = "PNG", **save_args) -> bytes:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    out = io.BytesIO()
    image.save(out, fmt, **save_args)
    return out.getvalue()


def b64(data_bytes: bytes) -> str:
    return base64.b64encode(data_bytes).decode("ascii")


def decode_b64_image(text: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(text)))
    image.load()
    return image


def png_bomb(width: int, height: int) -> bytes:
    """A tiny, well-formed 1-bit PNG of ``width`` x ``height`` all-black pixels (compresses ~1000:1)."""
    return encode(Image.new("1", (width, height)), "PNG")


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose IHDR claims ``width`` x ``height`` RGB, followed by a token of pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
