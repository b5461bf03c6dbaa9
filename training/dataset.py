"""A prepared dataset on disk: ``train/`` and ``val/`` folders of ``NAME.png`` + ``NAME.txt`` caption.

That is the kohya folder convention, so captions can be edited by hand after preparation; the
trainer reads the folders (not a manifest) and hashes them, so such edits change the dataset hash.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from avatar_driver.manifest import sha256_file

SPLITS = ("train", "val")


class InputError(Exception):
    """A problem with what the user gave (files, folders, options): printed as one line, no traceback."""


@dataclass(frozen=True)
class Item:
    image: Path
    caption: str
    width: int
    height: int


def split_items(root: Path, split: str) -> list[Item]:
    """The images of one split with their captions, in name order."""
    items = []
    for image in sorted((root / split).glob("*.png")):
        caption_file = image.with_suffix(".txt")
        if not caption_file.is_file():
            raise InputError(f"{image} has no caption file {caption_file.name} (write one, or delete the image)")
        try:
            with Image.open(image) as pil:
                pil.verify()  # reads the whole file: a truncated PNG fails here, not hours into training
                width, height = pil.size
        except (OSError, SyntaxError) as exc:  # PIL raises SyntaxError for some broken PNG chunks
            raise InputError(f"{image} is not a readable image ({exc}); delete it or prepare the dataset again") from exc
        items.append(Item(image, caption_file.read_text(encoding="utf-8").strip(), width, height))
    return items


def dataset_hash(root: Path) -> str:
    """sha256 over every split's file names and contents (images and captions)."""
    digest = hashlib.sha256()
    for split in SPLITS:
        folder = root / split
        if not folder.is_dir():
            continue
        for path in sorted(p for p in folder.iterdir() if p.suffix in (".png", ".txt")):
            digest.update(f"{split}/{path.name}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()


def dataset_trigger(root: Path) -> str:
    """The trigger word the dataset was prepared with (its report.json), or '' when unknown."""
    report = root / "report.json"
    if not report.is_file():
        return ""
    return json.loads(report.read_text()).get("settings", {}).get("trigger", "")
