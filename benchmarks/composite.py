"""Composite quality before and after edge refinement, island removal and the brand overlay (issue 20).

    .venv/bin/python benchmarks/composite.py [--repeat 7] [--sheet artifacts/composite_sheet.png]

Generated scenes: a person from a ``skimage.data`` photo pasted, through a known outline, onto a
coloured ``skimage.data`` texture, so both the true outline and the old backdrop are known. Each
scene goes through the face crop (1024²) and is composited as is (the composite-only style) on each
bundled background, once the 1.0.0 way (coarse mask feathered, every island kept, raw edge colour,
the name drawn in the background) and once the current way (the defaults). Reported per scene:

- halo: mean RGB distance (0..255) between the composite and the new background in a band
  ``BAND`` px wide just outside the true outline (overlay pixels left out);
- edge error: mean |alpha - true alpha| within ``BAND`` px of the true outline, both sides (so a
  mask that shrinks away from the halo does not pass for a good one);
- fragments: parts of the mask that lie mostly on the old backdrop: count and area in pixels;
- brand: share of the brand's pixels left visible (1.0.0: the name and mark in the background,
  hidden where the person covers them; now: the overlay drawn over the person);
- time: mask + composite at 1024² on one core, median of warm runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from skimage import data  # noqa: E402

from custom_nodes.ethmumbai.assets.make_backgrounds import NAME, ether_diamond  # noqa: E402
from custom_nodes.ethmumbai.core import composite, crop, face, segment  # noqa: E402
from custom_nodes.ethmumbai.core.masks import keep_connected  # noqa: E402

SIZE = 1024
UPSCALE = 2  # scenes are built at twice the photos' size, so the face crop is not a blurry 5x enlargement
BAND = 16  # px at 1024²: about the width of the 1.0.0 feathered edge
MASK_ARGS = (0.5, 8)  # the workflow's threshold and feather
COMPOSITE_FEATHER = 4  # the workflow's composite feather
BACKGROUNDS = ("ethmumbai_night.png", "ethmumbai_sunset.png")
# Where 1.0.0 drew the brand into each background: the name (y, size, colour) and the mark (x, y, height, colour).
LEGACY_BRAND = {
    "ethmumbai_night.png": ((60, 104, (0, 214, 255)), (512, 430, 420, (124, 77, 255))),
    "ethmumbai_sunset.png": ((60, 104, (255, 255, 255)), (880, 150, 170, (255, 255, 255))),
}


@dataclass(frozen=True)
class Scene:
    name: str
    pixels: np.ndarray  # uint8 RGB: the person on the texture
    alpha: np.ndarray  # float32: the true outline the person was pasted through
    margin: float  # the face crop's margin (small = a large head)


def _tinted(texture: np.ndarray, dark: tuple[int, int, int], light: tuple[int, int, int]) -> np.ndarray:
    shade = (texture.astype(np.float32) / 255.0)[..., None]
    return (np.array(dark) * (1 - shade) + np.array(light) * shade).astype(np.float32) / 255.0


def _true_alpha(photo: np.ndarray) -> np.ndarray:
    """A clean outline of the person at twice the photo's size: the segmenter's mask of the original photo,
    one part, pulled in by 3 px (so none of the photo's own backdrop comes along), smoothed, anti-aliased."""
    hard = keep_connected((segment.person_probability(photo) >= 0.5).astype(np.float32), None)
    hard = cv2.erode(hard, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    hard = cv2.resize(hard, None, fx=UPSCALE, fy=UPSCALE, interpolation=cv2.INTER_LINEAR)
    smooth = (cv2.GaussianBlur(hard, (0, 0), 6.0) >= 0.5).astype(np.float32)
    return cv2.GaussianBlur(smooth, (0, 0), 0.8)


def scenes() -> list[Scene]:
    """Three scenes on light textured walls, where a backdrop fringe shows most on a dark new background:
    the astronaut on pale grass, the cameraman on pale brick, the astronaut close up on pale gravel
    (a large head: the face crop's margin is small)."""
    astronaut = data.astronaut()
    camera = np.repeat(data.camera()[..., None], 3, axis=2)
    made = []
    for name, photo, texture, margin in (
        ("astronaut", astronaut, _tinted(data.grass(), (150, 185, 140), (235, 250, 220)), 0.6),
        ("cameraman", camera, _tinted(data.brick(), (190, 150, 140), (250, 230, 215)), 0.6),
        ("close-up", astronaut, _tinted(data.gravel(), (170, 170, 190), (245, 245, 250)), 0.2),
    ):
        alpha = _true_alpha(photo)
        size = alpha.shape[1::-1]
        photo = cv2.resize(photo, size, interpolation=cv2.INTER_CUBIC).astype(np.float32) / 255.0
        weight = alpha[..., None]
        pixels = weight * photo + (1 - weight) * cv2.resize(texture, size, interpolation=cv2.INTER_CUBIC)
        made.append(Scene(name, np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8), alpha, margin))
    return made


def crop_scene(scene: Scene) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """The face crop at 1024² (as the workflow makes it), its face mask, and the true alpha in the crop."""
    image = torch.from_numpy(scene.pixels.astype(np.float32) / 255.0)[None]
    pixels, face_mask, box, _ = face.face_crop(image, SIZE, scene.margin, "auto", "largest", "fail", 0.5)
    return pixels, face_mask, crop.extract(scene.alpha, box)


def mask_and_composite(pixels: torch.Tensor, face_mask: torch.Tensor, background: str,
                       legacy: bool) -> tuple[np.ndarray, np.ndarray]:
    """(alpha, composite) the 1.0.0 way (``legacy``) or with the current defaults; the crop composited as is."""
    if legacy:
        mask = segment.person_mask(pixels, *MASK_ARGS, refine="none", islands="keep")
        out = composite.composite(pixels, mask, background, "#000000", "#ffffff", COMPOSITE_FEATHER,
                                  clean_edge=False)
    else:
        mask = segment.person_mask(pixels, *MASK_ARGS, face_mask=face_mask)
        out = composite.composite(pixels, mask, background, "#000000", "#ffffff", COMPOSITE_FEATHER)
    return mask[0].numpy(), out[0].numpy()


def legacy_brand(background: str) -> np.ndarray:
    """The 1.0.0 layout's name and mark as an RGBA layer (drawn in the background, under the person)."""
    (title_y, title_size, title_colour), (mark_x, mark_y, mark_height, mark_colour) = LEGACY_BRAND[background]
    layer = Image.new("RGBA", (SIZE, SIZE))
    draw = ImageDraw.Draw(layer)
    font = ImageFont.load_default(size=title_size)
    draw.text(((SIZE - draw.textlength(NAME, font=font)) / 2, title_y), NAME, font=font, fill=(*title_colour, 255))
    ether_diamond(draw, mark_x, mark_y, mark_height, (*mark_colour, 255), 8)
    return np.asarray(layer, np.float32) / 255.0


def legacy_composite(pixels: np.ndarray, alpha: np.ndarray, background: str) -> np.ndarray:
    """The 1.0.0 look for the contact sheet: the name and mark in the background, the person over them."""
    brand = legacy_brand(background)
    back = composite.make_background(background, "#000000", "#000000", SIZE, SIZE)
    back = back * (1 - brand[..., 3:]) + brand[..., :3] * brand[..., 3:]
    weight = cv2.GaussianBlur(alpha, (0, 0), COMPOSITE_FEATHER / 2)[..., None]
    return weight * pixels + (1 - weight) * back


def halo(out: np.ndarray, true_alpha: np.ndarray, background: str) -> float:
    """Mean RGB distance (0..255) from the new background just outside the true outline."""
    person = (true_alpha > 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND + 1,) * 2)
    band = (cv2.dilate(person, kernel) > 0) & (person == 0) & (true_alpha < 0.02)
    layer = composite.overlay(background, SIZE, SIZE)
    if layer is not None:
        band.reshape(-1)[layer.index] = False
    back = composite.make_background(background, "#000000", "#000000", SIZE, SIZE)
    return float(np.linalg.norm(out - back, axis=2)[band].mean() * 255)


def edge_error(alpha: np.ndarray, true_alpha: np.ndarray) -> float:
    """Mean |alpha - true alpha| within BAND px of the true outline, both sides."""
    person = (true_alpha > 0.5).astype(np.uint8)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * BAND + 1,) * 2)
    near = cv2.dilate(person, kernel) != cv2.erode(person, kernel)
    return float(np.abs(alpha - true_alpha)[near].mean())


def fragments(alpha: np.ndarray, true_alpha: np.ndarray) -> tuple[int, int]:
    """(count, area in px) of the mask's parts that lie mostly outside the true outline."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats((alpha > 0.5).astype(np.uint8), connectivity=8)
    inside = np.bincount(labels[true_alpha > 0.5], minlength=count)
    stray = [label for label in range(1, count) if inside[label] < stats[label, cv2.CC_STAT_AREA] / 2]
    return len(stray), int(sum(stats[label, cv2.CC_STAT_AREA] for label in stray))


def brand_visible(out: np.ndarray, alpha: np.ndarray, background: str, legacy: bool) -> float:
    """Share of the brand's opaque pixels that the composite shows."""
    if legacy:
        brand = legacy_brand(background)[..., 3] > 0.5
        return float((alpha[brand] < 0.5).mean())
    layer = composite.overlay(background, SIZE, SIZE)
    opaque = layer.alpha[:, 0] > 0.99
    shown = out.reshape(-1, 3)[layer.index[opaque]]
    return float((np.abs(shown - layer.rgb[opaque]).max(axis=1) <= 2 / 255).mean())


def measure(scene: Scene, background: str, legacy: bool) -> dict:
    pixels, face_mask, true_alpha = crop_scene(scene)
    alpha, out = mask_and_composite(pixels, face_mask, background, legacy)
    count, area = fragments(alpha, true_alpha)
    return {"halo": halo(out, true_alpha, background), "edge_error": edge_error(alpha, true_alpha),
            "fragments": count, "fragment_area": area, "brand": brand_visible(out, alpha, background, legacy),
            "alpha": alpha, "out": out, "crop": pixels[0].numpy()}


def contact_sheet(scene_list: list[Scene], path: Path, tile: int = 300) -> None:
    """Rows: the scenes; columns: the scene, then before | after on each background."""
    header, columns = 28, ["scene"] + [f"{when} · {bg.removeprefix('ethmumbai_').removesuffix('.png')}"
                                       for bg in BACKGROUNDS for when in ("1.0.0", "now")]
    sheet = Image.new("RGB", (tile * len(columns), header + tile * len(scene_list)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default(size=18)
    for column, label in enumerate(columns):
        draw.text((column * tile + 8, 4), label, font=font, fill=(0, 0, 0))
    for row, scene in enumerate(scene_list):
        tiles = [scene.pixels.astype(np.float32) / 255.0]
        for background in BACKGROUNDS:
            before, after = measure(scene, background, True), measure(scene, background, False)
            tiles += [legacy_composite(before["crop"], before["alpha"], background), after["out"]]
        for column, pixels in enumerate(tiles):
            image = Image.fromarray(np.clip(pixels * 255 + 0.5, 0, 255).astype(np.uint8)).resize((tile, tile))
            sheet.paste(image, (column * tile, header + row * tile))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)


def median_ms(fn, repeat: int) -> float:
    fn()
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - start) * 1000)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--sheet", type=Path, help="also write a contact sheet PNG here (e.g. under artifacts/)")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, mediapipe's own threads included
    torch.set_num_threads(1)
    cv2.setNumThreads(1)

    scene_list = scenes()
    print(f"{SIZE}² face crops composited as is; halo band {BAND} px; before = 1.0.0, after = now\n")
    print(f"{'scene':10} {'background':22} {'halo':>13} {'edge error':>13} {'fragments':>11} "
          f"{'fragment px':>13} {'brand shown':>13}")
    for scene in scene_list:
        for background in BACKGROUNDS:
            before, after = measure(scene, background, True), measure(scene, background, False)
            cells = [f"{before[key]:5.1f} → {after[key]:5.1f}" for key in ("halo",)]
            cells.append(f"{before['edge_error']:.3f} → {after['edge_error']:.3f}")
            cells.append(f"{before['fragments']:3d} → {after['fragments']:3d}")
            cells.append(f"{before['fragment_area']:5d} → {after['fragment_area']:5d}")
            cells.append(f"{before['brand']:5.0%} → {after['brand']:5.0%}")
            print(f"{scene.name:10} {background:22} {cells[0]:>13} {cells[1]:>13} {cells[2]:>11} "
                  f"{cells[3]:>13} {cells[4]:>13}")

    pixels, face_mask, _ = crop_scene(scene_list[0])
    timings = {legacy: median_ms(lambda legacy=legacy: mask_and_composite(pixels, face_mask, BACKGROUNDS[0], legacy),
                                 args.repeat) for legacy in (True, False)}
    print(f"\nmask + composite at {SIZE}², one core, median of {args.repeat}: "
          f"1.0.0 {timings[True]:.0f} ms → now {timings[False]:.0f} ms ({timings[False] / timings[True]:.2f}x)")
    if args.sheet:
        contact_sheet(scene_list, args.sheet)
        print(f"contact sheet: {args.sheet}")


if __name__ == "__main__":
    main()
