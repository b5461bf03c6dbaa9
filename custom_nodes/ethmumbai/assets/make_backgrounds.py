"""Draw the bundled ETHMumbai backgrounds and their brand overlays (deterministic; run it again to regenerate).

    python custom_nodes/ethmumbai/assets/make_backgrounds.py

Each background is a scene (sky, skyline) that the person stands in front of, and an RGBA overlay
(a ring and a name banner with the ETH mark) that is drawn over the person, inside the circle that
profile-picture sites crop to. ``backgrounds/backgrounds.json`` places each overlay; a designer's
own background needs only its two PNGs and an entry there, not this script.
Everything is drawn here from gradients, polygons and Pillow's bundled font: no third-party art.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

SIZE = 1024
OUT_DIR = Path(__file__).resolve().parent / "backgrounds"
NAME = "ETHMumbai"


def vertical_gradient(stops: list[tuple[float, tuple[int, int, int]]]) -> Image.Image:
    """A SIZE² image whose rows blend through (position 0..1, RGB) colour stops."""
    rows = np.linspace(0.0, 1.0, SIZE)
    positions = [p for p, _ in stops]
    channels = [np.interp(rows, positions, [c[i] for _, c in stops]) for i in range(3)]
    column = np.stack(channels, axis=-1).round().astype(np.uint8)
    return Image.fromarray(np.repeat(column[:, None, :], SIZE, axis=1))


def ether_diamond(draw: ImageDraw.ImageDraw, cx: float, cy: float, height: float, colour, width: int) -> None:
    """The octahedron outline of the Ethereum mark, drawn as line segments."""
    half_w, top, mid, bottom = height * 0.3, cy - height / 2, cy + height * 0.08, cy + height / 2
    left, right, centre = (cx - half_w, mid), (cx + half_w, mid), (cx, mid + height * 0.12)
    apex, foot = (cx, top), (cx, bottom)
    for a, b in [(apex, left), (apex, right), (apex, centre), (left, centre), (right, centre),
                 (left, foot), (right, foot)]:
        draw.line([a, b], fill=colour, width=width)


def skyline(draw: ImageDraw.ImageDraw, base: int, colour, glow) -> None:
    """A flat silhouette: towers, and an arched gateway in the middle with light through its arch."""
    rng = random.Random(7)
    x = 0
    while x < SIZE:
        width = rng.randint(40, 90)
        draw.rectangle([x, base - rng.randint(60, 220), x + width, base], fill=colour)
        x += width + rng.randint(0, 12)
    gate_left, gate_right, gate_top = SIZE // 2 - 150, SIZE // 2 + 150, base - 260
    draw.rectangle([gate_left, gate_top, gate_right, base], fill=colour)
    for tower in (gate_left - 30, gate_right):
        draw.rectangle([tower, gate_top - 40, tower + 30, base], fill=colour)
    draw.chord([SIZE // 2 - 70, base - 200, SIZE // 2 + 70, base - 60], 180, 360, fill=glow)
    draw.rectangle([SIZE // 2 - 70, base - 130, SIZE // 2 + 70, base], fill=glow)


def brand_overlay(ring, banner, ink, mark) -> Image.Image:
    """SIZE² RGBA: a ring just inside the inscribed circle, and a banner with the ETH mark and the name.

    Everything opaque sits within the circle a profile-picture site crops to (radius SIZE/2), so the
    name and mark survive that crop; the banner sits at chest height, below the face.
    """
    image = Image.new("RGBA", (SIZE, SIZE))
    draw = ImageDraw.Draw(image)
    centre, radius = SIZE / 2, SIZE / 2 - 14
    draw.ellipse([centre - radius, centre - radius, centre + radius, centre + radius], outline=ring, width=12)
    font = ImageFont.load_default(size=84)
    text_width = draw.textlength(NAME, font=font)
    mark_width, gap, pad = 52, 22, 40
    width = pad + mark_width + gap + text_width + pad
    left, top, height = centre - width / 2, 800, 112
    draw.rounded_rectangle([left, top, left + width, top + height], radius=height / 2, fill=banner,
                           outline=ring, width=6)
    ether_diamond(draw, left + pad + mark_width / 2, top + height / 2, 84, mark, 6)
    draw.text((left + pad + mark_width + gap, top + height / 2), NAME, font=font, fill=ink, anchor="lm")
    return image


def sunset() -> tuple[Image.Image, Image.Image]:
    image = vertical_gradient([(0.0, (27, 20, 100)), (0.45, (158, 31, 99)), (0.75, (247, 147, 30)),
                               (1.0, (255, 205, 120))])
    draw = ImageDraw.Draw(image, "RGBA")
    draw.ellipse([SIZE / 2 - 210, 430, SIZE / 2 + 210, 850], fill=(255, 214, 102, 230))
    skyline(draw, 880, (36, 17, 66, 255), (255, 190, 90, 255))
    for i, y in enumerate(range(895, SIZE, 22)):  # sea
        draw.line([(0, y), (SIZE, y)], fill=(36, 17, 66, 90 + 12 * i), width=6)
    white, plum, orange = (255, 255, 255, 255), (36, 17, 66, 255), (247, 147, 30, 255)
    return image, brand_overlay(ring=white, banner=plum, ink=white, mark=orange)


def night() -> tuple[Image.Image, Image.Image]:
    image = vertical_gradient([(0.0, (8, 10, 36)), (0.6, (24, 28, 92)), (1.0, (60, 36, 120))])
    draw = ImageDraw.Draw(image, "RGBA")
    rng = random.Random(11)
    for _ in range(140):  # stars
        x, y, r = rng.randrange(SIZE), rng.randrange(SIZE * 2 // 3), rng.choice((1, 1, 2, 3))
        draw.ellipse([x - r, y - r, x + r, y + r], fill=(255, 255, 255, rng.randint(120, 255)))
    skyline(draw, 760, (14, 16, 52, 255), (0, 214, 255, 255))
    for step in range(0, SIZE + 1, 64):  # perspective grid on the floor
        draw.line([(SIZE / 2 + (step - SIZE / 2) * 0.25, 760), (step, SIZE)], fill=(0, 214, 255, 110), width=2)
    for i, y in enumerate((760, 790, 830, 885, 955)):
        draw.line([(0, y), (SIZE, y)], fill=(0, 214, 255, 70 + 25 * i), width=2)
    cyan, navy, violet = (0, 214, 255, 255), (8, 10, 36, 255), (124, 77, 255, 255)
    return image, brand_overlay(ring=cyan, banner=navy, ink=cyan, mark=violet)


BACKGROUNDS = {
    "ethmumbai_night.png": ("Night skyline", night),
    "ethmumbai_sunset.png": ("Sunset skyline", sunset),
}


def main() -> None:
    OUT_DIR.mkdir(exist_ok=True)
    catalogue = {}
    for name, (label, draw) in BACKGROUNDS.items():
        overlay_name = name.replace(".png", "_overlay.png")
        background, overlay = draw()
        for file, image in ((name, background), (overlay_name, overlay)):
            path = OUT_DIR / file
            image.save(path, optimize=True)
            print(f"{path}: {path.stat().st_size} bytes")
        catalogue[name] = {"label": label, "overlay": {"file": overlay_name, "center": [0.5, 0.5], "width": 1.0}}
    (OUT_DIR / "backgrounds.json").write_text(json.dumps(catalogue, indent=2) + "\n")


if __name__ == "__main__":
    main()
