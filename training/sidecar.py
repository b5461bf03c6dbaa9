"""The JSON written next to a trained LoRA: what it was trained from and how, and its manifest entry.

``manifest_yaml`` is a ``models_manifest.yaml`` list item (same fields as scripts/fetch_models.py's
``ModelEntry``), ready to paste over the placeholder entry once the file is uploaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from avatar_driver.manifest import sha256_file
from avatar_driver.paths import REPO_ROOT

MANIFEST = REPO_ROOT / "models_manifest.yaml"
DEFAULT_ENTRY = {"license": "MIT (project-trained)", "required": False, "used_by": ["v1"]}


def describe(path: Path, sha256: str | None = None) -> dict:
    return {"file": path.name, "sha256": sha256 or sha256_file(path), "size": path.stat().st_size}


def existing_entry(name: str, manifest: Path = MANIFEST) -> dict:
    """The manifest's current entry called ``name`` (e.g. the LoRA's placeholder), or {}."""
    if not manifest.is_file():
        return {}
    models = (yaml.safe_load(manifest.read_text()) or {}).get("models") or []
    return next((m for m in models if m.get("name") == name), {})


def manifest_entry(lora: dict, name: str, notes: str, release_url: str | None = None,
                   manifest: Path = MANIFEST) -> dict:
    """A pinned ``loras`` entry; source, licence, ``required`` and ``used_by`` kept from the existing entry."""
    current = existing_entry(name, manifest)
    entry = {"name": name, "filename": lora["file"], "folder": "loras"}
    if release_url:
        entry["source"] = {"url": release_url}
    elif current.get("source"):
        entry["source"] = current["source"]
    else:
        entry["source"] = {"url": f"https://example.invalid/{lora['file']}"}
        entry["todo"] = "upload the LoRA and put its download URL in source.url"
    entry |= {"sha256": lora["sha256"], "size": lora["size"]}
    entry |= {key: current.get(key, default) for key, default in DEFAULT_ENTRY.items()}
    entry["notes"] = notes
    return entry


def write(path: Path, body: dict) -> None:
    body = body | {"manifest_yaml": yaml.safe_dump([body["manifest_entry"]], sort_keys=False, width=1000)}
    path.write_text(json.dumps(body, indent=2) + "\n")
