"""The worker's settings: read once from the environment, validated, and a bad value names its variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from worker.settings import Settings, SettingsError


def test_defaults_without_any_variable():
    settings = Settings.from_env({})
    assert (settings.job_timeout, settings.max_result_bytes, settings.warmup, settings.boot_timeout) == (
        300.0, 20_000_000, False, 180.0)
    assert settings.comfy_port is None and settings.storage is None and settings.progress_url is None


def test_values_are_parsed():
    settings = Settings.from_env({
        "JOB_TIMEOUT": "12.5", "MAX_RESULT_BYTES": "2000", "WARMUP": "1", "COMFY_BOOT_TIMEOUT": "0.1",
        "COMFY_PORT": "8189", "COMFYUI_PLUGINS": "/a:/b", "COMFY_WORKDIR": "/tmp/w", "WORKER_LOG_LEVEL": "debug",
        "RUNPOD_WEBHOOK_POST_OUTPUT": "http://127.0.0.1:1/p/$ID", "STORAGE_BUCKET": "b",
    })
    assert (settings.job_timeout, settings.max_result_bytes, settings.warmup, settings.boot_timeout) == (
        12.5, 2000, True, 0.1)
    assert (settings.comfy_port, settings.comfy_plugins, settings.comfy_workdir) == (
        8189, (Path("/a"), Path("/b")), Path("/tmp/w"))
    assert settings.log_level == "DEBUG" and settings.storage.bucket == "b"


@pytest.mark.parametrize("name, value", [
    ("JOB_TIMEOUT", "5m"), ("JOB_TIMEOUT", "-1"), ("MAX_RESULT_BYTES", "20MB"), ("MAX_RESULT_BYTES", "1.5"),
    ("WARMUP", "yes"), ("COMFY_BOOT_TIMEOUT", "0"), ("COMFY_PORT", "80000"), ("COMFY_PORT", "http"),
    ("WORKER_LOG_LEVEL", "LOUD"),
])
def test_a_bad_value_names_its_variable(name, value):
    with pytest.raises(SettingsError, match=rf"^{name} must be .*, got '{value}'$"):
        Settings.from_env({name: value})
