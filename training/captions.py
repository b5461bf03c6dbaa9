"""Captions: from a CSV, a ``.txt`` beside the image (kohya convention) or a template; trigger word first."""

from __future__ import annotations

import csv
from pathlib import Path

from training.dataset import InputError

DEFAULT_TEMPLATE = "{trigger}"


def read_csv(path: Path) -> dict[str, str]:
    """``file,caption`` rows (header required) → caption by file key, as written in the CSV."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        missing = {"file", "caption"} - set(reader.fieldnames or [])
        if missing:
            raise InputError(f"{path}: needs the columns file,caption (missing {', '.join(sorted(missing))})")
        return {row["file"].strip(): row["caption"].strip() for row in reader if row["file"].strip()}


def csv_caption(table: dict[str, str], relative: Path) -> str | None:
    """The CSV caption of an image, matched by relative path, file name, then stem."""
    for key in (relative.as_posix(), relative.name, relative.stem):
        if key in table:
            return table[key]
    return None


def with_trigger(caption: str, trigger: str) -> str:
    """``caption`` starting with the trigger word (prepended once when absent)."""
    caption = " ".join(caption.split())
    if not trigger or caption == trigger or caption.startswith(f"{trigger},") or caption.startswith(f"{trigger} "):
        return caption
    return f"{trigger}, {caption}" if caption else trigger


def caption_for(source: Path, relative: Path, trigger: str, table: dict[str, str], template: str) -> tuple[str, str]:
    """(caption, where it came from: ``csv`` | ``txt`` | ``template``)."""
    text = csv_caption(table, relative)
    origin = "csv"
    if text is None and source.with_suffix(".txt").is_file():
        text, origin = source.with_suffix(".txt").read_text(encoding="utf-8").strip(), "txt"
    if text is None:
        text, origin = template.format(trigger=trigger, name=relative.stem), "template"
    return with_trigger(text, trigger), origin
