"""A generated raw style-image folder: faces (scikit-image's astronaut, varied), no-face images and bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

EXIF_ORIENTATION = 0x0112
ROTATE_CW_TO_DISPLAY = 6


def write_raw_folder(raw: Path) -> Path:
    """Writes the folder and a captions CSV beside it; returns the CSV path.

    Expected: kept astronaut.png, astronaut_mirror.jpg, astronaut_warm.png (faces), cat.png, coffee.png (no
    face); dropped astronaut_exif.jpg (an EXIF-rotated copy of astronaut.png: a duplicate only once the
    rotation is applied), small.png (too small), broken.jpg (unreadable), clip.gif (unsupported).
    """
    raw.mkdir(parents=True)
    astronaut = data.astronaut()
    Image.fromarray(astronaut).save(raw / "astronaut.png")
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(raw / "astronaut_mirror.jpg", quality=92)
    closer = np.asarray(Image.fromarray(astronaut[0:400, 60:460]).resize((600, 600)), dtype=np.int16)
    Image.fromarray(np.clip(closer + [30, 10, -20], 0, 255).astype(np.uint8)).save(raw / "astronaut_warm.png")
    rotated = Image.fromarray(np.ascontiguousarray(np.rot90(astronaut, 1)))
    exif = rotated.getexif()
    exif[EXIF_ORIENTATION] = ROTATE_CW_TO_DISPLAY
    rotated.save(raw / "astronaut_exif.jpg", quality=92, exif=exif)
    Image.fromarray(data.chelsea()).save(raw / "cat.png")
    Image.fromarray(data.coffee()).save(raw / "coffee.png")
    Image.fromarray(astronaut[:200, :200]).save(raw / "small.png")
    (raw / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    (raw / "clip.gif").write_bytes(b"GIF89a")
    captions = raw.parent / "captions.csv"
    captions.write_text("file,caption\nastronaut.png,woman in an orange space suit\n"
                        "cat,\"ethmumbai_style, a tabby cat\"\nmissing.png,no such image\n")
    return captions
