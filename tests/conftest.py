"""Test-wide settings and the shared ComfyUI server (pack loaded, no models)."""

from __future__ import annotations

import os

# Tests never reach a model hub: any implicit download must fail loudly, not hang.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

import pytest  # noqa: E402

from tests.helpers.comfy import start_comfy  # noqa: E402


@pytest.fixture(scope="session")
def comfy_server(tmp_path_factory):
    """A real headless ComfyUI 0.3.75 on CPU with the ETHMumbai pack, shared by the whole session."""
    proc = start_comfy(tmp_path_factory.mktemp("comfy"))
    yield proc
    proc.stop()
