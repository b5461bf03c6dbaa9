"""Boot: the worker fails fast when ComfyUI dies while starting, and gives up at its boot deadline."""

from __future__ import annotations

import pytest

from tools.worker_server import start_worker


def test_boot_fails_fast_when_comfyui_exits(tmp_path, worker_env):
    # An unknown flag makes ComfyUI exit at once; the long boot timeout must not be waited out.
    with pytest.raises(RuntimeError, match="exited with 1") as caught:
        start_worker(tmp_path, {**worker_env, "COMFYUI_ARGS": "--cpu --no-such-flag", "COMFY_BOOT_TIMEOUT": "3000"},
                     boot_timeout=300)
    assert "boot failed: ComfyUI exited during boot" in str(caught.value)


def test_boot_gives_up_at_its_deadline(tmp_path, worker_env):
    with pytest.raises(RuntimeError, match="exited with 1") as caught:
        start_worker(tmp_path, {**worker_env, "COMFY_BOOT_TIMEOUT": "0.1"}, boot_timeout=300)
    assert "boot failed: ComfyUI did not answer within" in str(caught.value)
