"""Test images: real photos from scikit-image and generated edge cases, as arrays, tensors or base64."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import cv2
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


# The astronaut's face centre and height on the 512x512 photo (ASTRONAUT_FACE).
_FACE_CENTRE = (ASTRONAUT_FACE[0] + ASTRONAUT_FACE[2] / 2, ASTRONAUT_FACE[1] + ASTRONAUT_FACE[3] / 2)


def backdrop(width: int, height: int) -> np.ndarray:
    """A natural-looking, face-free background: skimage's coffee photo stretched to ``width`` x ``height``."""
    return cv2.resize(data.coffee(), (width, height), interpolation=cv2.INTER_CUBIC)


def place_astronaut(canvas: np.ndarray, face_px: float, centre: tuple[float, float], angle: float = 0.0) -> None:
    """Paste the astronaut's head and shoulders into ``canvas`` so his face is ``face_px`` tall and
    centred on ``centre`` (x, y), turned ``angle`` degrees counter-clockwise about the face centre."""
    scale = face_px / ASTRONAUT_FACE[3]
    matrix = cv2.getRotationMatrix2D(_FACE_CENTRE, angle, scale)
    matrix[:, 2] += np.asarray(centre) - np.asarray(_FACE_CENTRE)
    # The head and shoulders (the photo's upper 400 rows, without the flag and the background's far left)
    # with a mask that fades out at its border, so the paste has no hard seam for a detector to see.
    head = astronaut()[:400, 60:420]
    alpha = np.zeros(head.shape[:2], np.float32)
    alpha[8:-8, 8:-8] = 1.0
    alpha = cv2.GaussianBlur(alpha, (0, 0), 4)
    offset = np.array([[1, 0, 60], [0, 1, 0]], np.float64)  # head pixel -> photo pixel
    full = matrix @ np.vstack([offset, [0, 0, 1]])
    size = (canvas.shape[1], canvas.shape[0])
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
    pixels = cv2.warpAffine(head, full, size, flags=cv2.INTER_LINEAR if angle else interpolation)
    weight = cv2.warpAffine(alpha, full, size, flags=cv2.INTER_LINEAR)[..., None]
    canvas[:] = np.clip(weight * pixels + (1 - weight) * canvas, 0, 255).astype(np.uint8)


def scene(width: int, height: int, faces: list[tuple[float, tuple[float, float]]] | None = None,
          angle: float = 0.0) -> np.ndarray:
    """A ``width`` x ``height`` photo: the backdrop with one astronaut per (face height, centre) in ``faces``."""
    canvas = backdrop(width, height)
    for face_px, centre in faces or []:
        place_astronaut(canvas, face_px, centre, angle)
    return canvas


def cat_thumbnail() -> np.ndarray:
    """The 128x85 thumbnail of skimage's cat that the face detector scores as a face (issue 13)."""
    return cv2.resize(chelsea(), (128, 85), interpolation=cv2.INTER_AREA)
