"""Fixtures for the fetcher tests: one loopback file server for the session, files unique to each test."""

from __future__ import annotations

import os

import pytest

from tests.manifest.file_server import FileServer


@pytest.fixture(scope="session")
def file_server():
    server = FileServer().start()
    yield server
    server.stop()


@pytest.fixture
def served(file_server, request):
    """Serve fresh random bytes at a path unique to this test; returns (path, bytes)."""

    def add(size: int = 200_000) -> tuple[str, bytes]:
        path = f"/{request.node.name}/{len(file_server.files)}.bin"
        data = os.urandom(size)
        file_server.files[path] = data
        return path, data

    return add
