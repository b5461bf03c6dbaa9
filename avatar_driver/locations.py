"""Where model files are found: an ordered list of locations, resolved per file against the models manifest.

A location is either a models folder (``<root>/<folder>/<filename>``: the image's baked ``/app/models``, a network
volume's ``/runpod-volume/models``) or a Hugging Face cache (``hf:<hub dir>``: RunPod's cached models, where a file
is ``<hub>/models--<org>--<name>/snapshots/<revision>/<file>`` from the manifest's ``source.hf``, under the
repository's own file name, which may differ from the manifest's ``filename``, as the ControlNet's does).

The first location holding a file of the manifest's size wins (presence and size only: hashing 9 GB is
``fetch_models.py --verify``'s job, not every boot's). ComfyUI is pointed at the winners through a folder of
links named as the workflow expects (``ModelLinks``), listed before the folder locations themselves
(``model_paths_yaml``), which still serve files the manifest does not list (e.g. an extra LoRA on the volume).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from avatar_driver import paths
from avatar_driver.manifest import Manifest, ModelEntry

HF_PREFIX = "hf:"
SEPARATOR = ","  # not os.pathsep: ":" is also in "hf:"
# Baked into the image, a network volume, RunPod's cached models: docs/deploy.md compares them.
DEFAULT_LOCATIONS = SEPARATOR.join([str(paths.REPO_ROOT / "models"), "/runpod-volume/models",
                                    HF_PREFIX + "/runpod-volume/huggingface-cache/hub"])


@dataclass(frozen=True)
class Location:
    path: Path
    hf_cache: bool = False

    def candidate(self, folder: str, filename: str, entry: ModelEntry | None) -> Path | None:
        """Where this location would hold the file; None where it cannot (a file without a Hugging Face source)."""
        if not self.hf_cache:
            return self.path / folder / filename
        if entry is None or entry.source.hf is None:
            return None
        hf = entry.source.hf
        return self.path / f"models--{hf.repo.replace('/', '--')}" / "snapshots" / hf.revision / hf.file

    def __str__(self) -> str:
        return HF_PREFIX + str(self.path) if self.hf_cache else str(self.path)


def parse_locations(text: str) -> list[Location]:
    """Comma-separated locations, ``hf:`` marking a Hugging Face cache (``MODEL_LOCATIONS``)."""
    locations = []
    for item in filter(None, (part.strip() for part in text.split(SEPARATOR))):
        hf = item.startswith(HF_PREFIX)
        locations.append(Location(Path(item.removeprefix(HF_PREFIX)), hf))
    if not locations:
        raise ValueError("no model locations given")
    return locations


@dataclass(frozen=True)
class Resolved:
    folder: str
    filename: str
    path: Path | None  # None: not found at any location
    looked: list[Path] = field(default_factory=list)  # every candidate, in order
    wrong_size: list[str] = field(default_factory=list)  # candidates present but not the manifest's size

    @property
    def relpath(self) -> str:
        return f"{self.folder}/{self.filename}"

    def problem(self) -> str:
        """One line naming the missing file and where it was looked for."""
        sizes = f"; wrong size: {'; '.join(self.wrong_size)}" if self.wrong_size else ""
        return (f"model {self.relpath} not found; looked in {', '.join(map(str, self.looked)) or 'no location'}"
                f"{sizes}")


def resolve(locations: list[Location], folder: str, filename: str, manifest: Manifest) -> Resolved:
    entry = next((m for m in manifest.models if (m.folder, m.filename) == (folder, filename)), None)
    looked: list[Path] = []
    wrong: list[str] = []
    for location in locations:
        candidate = location.candidate(folder, filename, entry)
        if candidate is None:
            continue
        looked.append(candidate)
        if not candidate.is_file():  # follows links: a Hugging Face snapshot links into its blobs
            continue
        size = candidate.stat().st_size
        if entry is not None and entry.size is not None and size != entry.size:
            wrong.append(f"{candidate} is {size} bytes, the manifest says {entry.size}")
            continue
        return Resolved(folder, filename, candidate, looked, wrong)
    return Resolved(folder, filename, None, looked, wrong)


def model_paths_yaml(locations: list[Location], links_dir: Path) -> str:
    """ComfyUI's extra_model_paths config: the links first, then every folder location, in order."""
    roots = [links_dir] + [loc.path for loc in locations if not loc.hf_cache]
    sections = []
    for index, root in enumerate(roots):
        # A JSON string is a YAML string: safe for any path.
        lines = [f"location_{index}:", f"    base_path: {json.dumps(str(root))}"]
        lines += [f"    {folder}: {folder}/" for folder in paths.MODEL_FOLDERS]
        sections.append("\n".join(lines))
    return "\n".join(sections) + "\n"


class ModelLinks:
    """The model files a worker's workflows load, resolved over ``locations`` and linked for ComfyUI.

    ``refresh()`` re-resolves every file (a few ``stat`` calls) and fixes the links: a file gone from its location
    loses its link, so ComfyUI stops listing it and refuses a prompt that needs it (``MODEL_MISSING``), and a file
    that appeared (a volume attached late) is linked for the next job.
    """

    def __init__(self, locations: list[Location], manifest: Manifest, files: set[tuple[str, str]], links_dir: Path):
        self.locations = locations
        self.manifest = manifest
        self.files = sorted(files)  # (folder, filename)
        self.links_dir = links_dir

    def refresh(self) -> dict[tuple[str, str], Resolved]:
        found = {(folder, name): resolve(self.locations, folder, name, self.manifest) for folder, name in self.files}
        for (folder, name), item in found.items():
            link = self.links_dir / folder / name
            target = item.path.resolve() if item.path is not None else None
            if link.is_symlink() and Path(os.readlink(link)) == target:
                continue
            if link.is_symlink() or link.exists():
                link.unlink()
            if target is not None:
                link.parent.mkdir(parents=True, exist_ok=True)
                link.symlink_to(target)
        return found

    def write_config(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(model_paths_yaml(self.locations, self.links_dir))
        return path
