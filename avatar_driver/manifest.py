"""The models manifest (``models_manifest.yaml``): its schema, its one loader, and the file hasher that checks it.

``scripts/fetch_models.py`` is the command over this module; the worker (result-cache keys), the training kit
(sidecars, caches) and the demo models read the manifest and hash files through it.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from tqdm import tqdm

from avatar_driver import paths

CHUNK = 1 << 20
SHA256 = re.compile(r"^[0-9a-f]{64}$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class HfSource(_Strict):
    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$")
    file: str
    revision: str = Field(pattern=COMMIT.pattern, description="a commit hash, so the bytes cannot change")


class Source(_Strict):
    hf: HfSource | None = None
    url: str | None = Field(default=None, pattern=r"^https?://")

    @model_validator(mode="after")
    def _exactly_one(self) -> Source:
        if (self.hf is None) == (self.url is None):
            raise ValueError("source needs exactly one of `hf` or `url`")
        return self


class ModelEntry(_Strict):
    name: str = Field(pattern=r"^[a-z0-9_]+$")
    filename: str = Field(pattern=r"^[^/\\]+$")
    folder: Literal[tuple(paths.MODEL_FOLDERS)]  # type: ignore[valid-type]
    source: Source
    sha256: str | None = Field(pattern=SHA256.pattern)
    size: int | None = Field(gt=0)
    license: str
    required: bool
    used_by: list[str] = Field(description="workflow versions, e.g. v1")
    group: str | None = Field(default=None, pattern=r"^[a-z0-9_]+$")
    todo: str | None = None
    notes: str | None = None

    @model_validator(mode="after")
    def _pinned_or_todo(self) -> ModelEntry:
        if (self.sha256 is None or self.size is None) and not self.todo:
            raise ValueError(f"{self.name}: sha256 and size may be null only with a `todo` saying why")
        if self.required and not self.pinned:
            raise ValueError(f"{self.name}: a required model must have sha256 and size")
        return self

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None and self.size is not None

    @property
    def relpath(self) -> str:
        return f"{self.folder}/{self.filename}"


class Manifest(_Strict):
    version: Literal[1]
    models: list[ModelEntry]

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        names = [m.name for m in self.models]
        paths = [m.relpath for m in self.models]
        groups = {m.group for m in self.models if m.group}
        for label, values in (("name", names), ("folder/filename", paths)):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValueError(f"duplicate {label}: {', '.join(dupes)}")
        clash = sorted(groups & (set(names) | {"all", "required"}))
        if clash:
            raise ValueError(f"group names clash with entry names or keywords: {', '.join(clash)}")
        return self


def fetch_command(name: str) -> str:
    """The command that fetches a manifest entry (by entry, group or file name) into ``models/``."""
    return f"python scripts/fetch_models.py --only {name}"


class ManifestError(Exception):
    pass


def load_manifest(path: Path | None = None) -> Manifest:
    """The validated manifest at ``path`` (default: ``paths.models_manifest()``)."""
    path = path or paths.models_manifest()
    try:
        return Manifest.model_validate(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc


def sha256_file(path: Path, label: str = "") -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle, progress_bar(path.stat().st_size, f"sha256 {label or path.name}") as bar:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def progress_bar(total: int | None, desc: str) -> tqdm:
    """A byte-count bar (hashing here, downloads in scripts/fetch_models.py)."""
    # disable=None: bars only on a terminal, so Docker build logs and CI stay readable.
    return tqdm(total=total, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, leave=False, disable=None)
