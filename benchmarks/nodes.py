"""Median time of each ETHMumbai node on a 1024x1024 photo, on one CPU core (and the face crop on 12 MP).

    .venv/bin/python benchmarks/nodes.py [--repeat 15]

Each node's work is the one core/ function its execute() calls, so this times the node without a
ComfyUI server around it. The process is pinned to one core, with torch and OpenCV single-threaded.
Model load is timed separately (the first call); the medians are over warm calls.
The 12 MP case is a 4000x3000 photo with one 64 px face, which only the tiled pass finds (issue 13).

Ratios against baselines measured in the same run make the figures comparable across machines:
- ``machine``: a float32 Gaussian blur of the photo (a fixed amount of work);
- the lineart and PNG-encode alternatives the pack chose not to use (float-formula lineart,
  Pillow's default PNG compression).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

if hasattr(os, "sched_setaffinity"):
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, mediapipe's own threads included

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from skimage import data  # noqa: E402

from custom_nodes.ethmumbai.core import composite, face, image_io, lineart, segment  # noqa: E402
from custom_nodes.ethmumbai.core.tensors import as_uint8  # noqa: E402

SIZE = 1024
CHAIN_TARGET_MS = 150.0
MACHINE = "machine: float32 Gaussian blur sigma 6"
FLOAT_LINEART = "lineart in float32 (not used)"
PNG_LEVEL_6 = "PNG with Pillow's defaults (not used)"


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float, float]:
    """(first call, median and fastest of ``repeat`` further calls), in ms.

    The fastest run is the least disturbed by other processes on a shared machine.
    """
    start = time.perf_counter()
    fn()
    first = (time.perf_counter() - start) * 1000
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return first, statistics.median(runs), min(runs)


def photo_base64(fmt: str) -> str:
    """The astronaut photo at 1024x1024, as an upload would arrive."""
    pixels = cv2.resize(data.astronaut(), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    return image_io.base64.b64encode(out.getvalue()).decode()


def twelve_mp_photo() -> np.ndarray:
    """4000x3000: skimage's coffee photo stretched, with the astronaut's face at 64 px off centre."""
    canvas = cv2.resize(data.coffee(), (4000, 3000), interpolation=cv2.INTER_CUBIC)
    head = data.astronaut()[:300, 100:380]  # face (177..272, 82..177) of the 512 px photo: 95 px tall
    scale = 64 / 95
    small = cv2.resize(head, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    canvas[1800:1800 + small.shape[0], 1400:1400 + small.shape[1]] = small
    return canvas


def float_lineart(pixels: np.ndarray) -> np.ndarray:
    """The same lineart in float32 throughout: the baseline for the uint8 implementation."""
    x = pixels.astype(np.float32)
    darker = np.min(cv2.GaussianBlur(x, (0, 0), lineart.STANDARD_SIGMA) - x, axis=2).clip(0, 255)
    strong = darker[darker > lineart.STANDARD_NOISE_FLOOR]
    return (darker / max(16.0, float(np.median(strong))) * 127).clip(0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    repeat = parser.parse_args().repeat
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    jpeg, png = photo_base64("JPEG"), photo_base64("PNG")
    limits = (image_io.MAX_IMAGE_BYTES, image_io.MAX_IMAGE_PIXELS)  # the load node's defaults
    image, alpha = image_io.load_base64_image(jpeg, *limits)
    twelve_mp = torch.from_numpy(twelve_mp_photo().astype(np.float32) / 255.0).unsqueeze(0)
    crop_args = (SIZE, 0.6, "auto", "prominent", "fail", 0.5)
    face_image, face_mask, box, _ = face.face_crop(image, *crop_args)
    mask = segment.person_mask(face_image, 0.5, 8, face_mask=face_mask)
    background = composite.background_choices()[0]
    styled = composite.composite(face_image, mask, background, "#000000", "#ffffff", 4)

    nodes = {
        "EthMumbaiLoadImageBase64 (JPEG)": lambda: image_io.load_base64_image(jpeg, *limits),
        "EthMumbaiFaceCrop": lambda: face.face_crop(image, *crop_args),
        "EthMumbaiPersonMask": lambda: segment.person_mask(face_image, 0.5, 8, face_mask=face_mask),
        "EthMumbaiLineart (standard)": lambda: lineart.lineart(face_image, "standard", SIZE),
        "EthMumbaiBackgroundComposite": lambda: composite.composite(face_image, mask, background, "#000000",
                                                                    "#ffffff", 4),
        "EthMumbaiSaveImageBase64 (png)": lambda: image_io.save_base64_images(styled, "png", 95),
    }
    extras = {
        "EthMumbaiLoadImageBase64 (PNG)": lambda: image_io.load_base64_image(png, *limits),
        "EthMumbaiBackgroundComposite (paste-back)": lambda: composite.composite(
            face_image, mask, "solid", "#000000", "#ffffff", 4, image, box),
        "EthMumbaiSaveImageBase64 (jpeg q95)": lambda: image_io.save_base64_images(styled, "jpeg", 95),
        "EthMumbaiSaveImageBase64 (webp q95)": lambda: image_io.save_base64_images(styled, "webp", 95),
        "EthMumbaiFaceCrop (12 MP, 64 px face)": lambda: face.face_crop(twelve_mp, *crop_args),
    }

    def chain() -> None:
        loaded, _ = image_io.load_base64_image(jpeg, *limits)
        cropped, cropped_face, _, _ = face.face_crop(loaded, *crop_args)
        person = segment.person_mask(cropped, 0.5, 8, face_mask=cropped_face)
        lineart.lineart(cropped, "standard", SIZE)
        result = composite.composite(cropped, person, background, "#000000", "#ffffff", 4)
        image_io.save_base64_images(result, "png", 95)

    def preprocess() -> None:  # what runs before the diffusion model
        loaded, _ = image_io.load_base64_image(jpeg, *limits)
        cropped, cropped_face, _, _ = face.face_crop(loaded, *crop_args)
        segment.person_mask(cropped, 0.5, 8, face_mask=cropped_face)
        lineart.lineart(cropped, "standard", SIZE)

    face_u8 = as_uint8(face_image[0].numpy())
    photo_f32 = face_u8.astype(np.float32)
    baselines = {
        MACHINE: lambda: cv2.GaussianBlur(photo_f32, (0, 0), 6.0),
        FLOAT_LINEART: lambda: float_lineart(face_u8),
        PNG_LEVEL_6: lambda: Image.fromarray(as_uint8(styled[0].numpy())).save(
            io.BytesIO(), "PNG"),
    }

    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else "?"
    print(f"{SIZE}x{SIZE} photo, cores {cores}, torch threads {torch.get_num_threads()}, median of {repeat} warm runs\n")
    print(f"{'step':46} {'first ms':>9} {'median ms':>10} {'min ms':>8}")
    results = {}
    for group in (nodes, extras, baselines):
        for name, fn in group.items():
            first, median, fastest = timed(fn, repeat)
            results[name] = median
            print(f"{name:46} {first:9.1f} {median:10.1f} {fastest:8.1f}")
        print()
    _, chain_ms, chain_min = timed(chain, repeat)
    _, preprocess_ms, preprocess_min = timed(preprocess, repeat)
    machine = results[MACHINE]
    lineart_ms, png_ms = results["EthMumbaiLineart (standard)"], results["EthMumbaiSaveImageBase64 (png)"]
    verdict = "met" if chain_ms < CHAIN_TARGET_MS else "NOT met"
    print(f"sum of the six node medians: {sum(results[n] for n in nodes):.1f} ms")
    print(f"chain load>crop>mask>lineart>composite>save: median {chain_ms:.1f} ms, min {chain_min:.1f} ms"
          f" ({chain_ms / machine:.1f}x the machine baseline; target < {CHAIN_TARGET_MS:.0f} ms: {verdict})")
    print(f"preprocessing only, load>crop>mask>lineart: median {preprocess_ms:.1f} ms, min {preprocess_min:.1f} ms"
          f" ({preprocess_ms / machine:.1f}x)")
    print(f"lineart node vs float32 lineart: {results[FLOAT_LINEART] / lineart_ms:.1f}x faster")
    print(f"PNG save node vs level 6: {results[PNG_LEVEL_6] / png_ms:.1f}x faster")


if __name__ == "__main__":
    main()
