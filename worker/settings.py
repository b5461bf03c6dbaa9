"""The worker's settings: every environment variable the RunPod adapter reads, read here once and validated.

A bad value fails the boot with a ``SettingsError`` that names the variable, never a bare ``ValueError``.
The driver's own locations (``COMFYUI_DIR``, ``WORKFLOWS_DIR``, ``MODELS_MANIFEST``) are read by
avatar_driver/paths.py, shared with the tests and the training kit; ``COMFYUI_ARGS`` by the driver's
``device_args`` (called from here without its CPU fallback) and ``MODEL_LOCATIONS`` by its ``parse_locations``;
the ``STORAGE_*`` block by ``StorageConfig.from_env`` (worker/storage.py), called from here.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from avatar_driver.locations import DEFAULT_LOCATIONS, Location, parse_locations
from avatar_driver.process import device_args
from worker.storage import StorageConfig

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(ValueError):
    """An environment variable has a value the worker cannot use; the message names it."""


@dataclass(frozen=True)
class Settings:
    # Deadline of every job (s); a job's own "timeout" may only shorten it.
    job_timeout: float = 300.0
    # Largest JSON result returned inline; RunPod's SDK warns above 20 MB (rp_tips.check_return_size).
    max_result_bytes: int = 20_000_000
    # WARMUP=1: run one tiny prompt at boot so the first job does not pay the model load.
    warmup: bool = False
    # How long ComfyUI may take to answer after a (re)start (s).
    boot_timeout: float = 180.0
    # ComfyUI's base directory (input/output/temp, its custom_nodes links).
    comfy_workdir: Path = Path(tempfile.gettempdir()) / "ethmumbai-comfyui"
    # None: a free port.
    comfy_port: int | None = None
    # Custom-node folders linked beside the pack (e.g. the tiny demo model class).
    comfy_plugins: tuple[Path, ...] = ()
    # RUNPOD_WEBHOOK_POST_OUTPUT: where the SDK posts progress (the platform, or a local collector); None: no updates.
    progress_url: str | None = None
    log_level: str = "INFO"
    storage: StorageConfig | None = None
    # ComfyUI's flags (COMFYUI_ARGS). Without --cpu among them the worker requires a CUDA GPU.
    comfyui_args: tuple[str, ...] = ()
    # Where model files are looked for, in order (MODEL_LOCATIONS; avatar_driver/locations.py).
    model_locations: tuple[Location, ...] = tuple(parse_locations(DEFAULT_LOCATIONS))
    # After this many jobs in a row failed because ComfyUI crashed or would not restart, ask RunPod for a new worker.
    refresh_after_failures: int = 3

    @property
    def cpu(self) -> bool:
        return "--cpu" in self.comfyui_args

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        def read(name: str, parse: Callable[[str], object], default, what: str):
            text = environ.get(name, "").strip()
            if not text:
                return default
            try:
                return parse(text)
            except ValueError:
                raise SettingsError(f"{name} must be {what}, got {text!r}") from None

        return cls(
            job_timeout=read("JOB_TIMEOUT", _positive(float), cls.job_timeout, "a positive number of seconds"),
            max_result_bytes=read("MAX_RESULT_BYTES", _positive(int), cls.max_result_bytes,
                                  "a positive whole number of bytes"),
            warmup=read("WARMUP", _flag, cls.warmup, "0 or 1"),
            boot_timeout=read("COMFY_BOOT_TIMEOUT", _positive(float), cls.boot_timeout, "a positive number of seconds"),
            comfy_workdir=Path(environ.get("COMFY_WORKDIR") or cls.comfy_workdir),
            comfy_port=read("COMFY_PORT", _port, None, "a TCP port number (1-65535)"),
            comfy_plugins=tuple(Path(p) for p in environ.get("COMFYUI_PLUGINS", "").split(os.pathsep) if p),
            progress_url=environ.get("RUNPOD_WEBHOOK_POST_OUTPUT") or None,
            log_level=read("WORKER_LOG_LEVEL", _log_level, cls.log_level, f"one of {', '.join(LOG_LEVELS)}"),
            storage=StorageConfig.from_env(environ),
            comfyui_args=tuple(device_args(environ, cpu_fallback=False)),
            model_locations=read("MODEL_LOCATIONS", lambda t: tuple(parse_locations(t)), cls.model_locations,
                                 "comma-separated folders, hf:<folder> for a Hugging Face cache"),
            refresh_after_failures=read("REFRESH_AFTER_FAILURES", _positive(int), cls.refresh_after_failures,
                                        "a positive whole number of jobs"),
        )


def _positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise ValueError(text)
        return value
    return parse


def _flag(text: str) -> bool:
    if text not in ("0", "1"):
        raise ValueError(text)
    return text == "1"


def _port(text: str) -> int:
    port = int(text)
    if not 1 <= port <= 65535:
        raise ValueError(text)
    return port


def _log_level(text: str) -> str:
    if text.upper() not in LOG_LEVELS:
        raise ValueError(text)
    return text.upper()
