"""Fixtures for the manifest/fetcher tests: one loopback file server for the session, manifests in tmp dirs."""

from __future__ import annotations

import hashlib
import os

import pytest
import yaml

from tests.manifest.file_server import FileServer


@pytest.fixture(scope="session")
def file_server():
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture
def served(file_server, request):
    """Serve fresh random bytes at a path unique to this test; returns (path, bytes)."""

    def add(size: int = 200_000, path: str | None = None) -> tuple[str, bytes]:
        path = path or f"/{request.node.name}/{len(file_server.files)}.bin"
        data = os.urandom(size)
        file_server.files[path] = data
        return path, data

    return add


def entry(name: str, data: bytes, *, url: str | None = None, hf: dict | None = None, **fields) -> dict:
    """A manifest entry (dict) for ``data``: pinned to its real sha256 and size unless overridden."""
    source = {"hf": hf} if hf else {"url": url or "http://127.0.0.1:9/never-fetched"}
    return {
        "name": name, "filename": f"{name}.safetensors", "folder": "checkpoints", "source": source,
        "sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "license": "test",
        "required": True, "used_by": [], **fields,
    }


def write_manifest(path, *entries: dict):
    path.write_text(yaml.safe_dump({"version": 1, "models": list(entries)}))
    return path
