"""Owns the worker's ComfyUI process: configured by the worker's settings, booted with a deadline, restarted after
a crash, its output logged line by line with the running job's id (worker/logs.py). Settings: worker/settings.py.
ComfyUI reads its models through ``model_paths_config`` (the worker's model links and locations, see
avatar_driver/locations.py), written by the worker before the first start.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from avatar_driver import paths
from avatar_driver.client import ComfyClient, ComfyUnavailable
from avatar_driver.process import ComfyProcess, free_port
from worker.settings import Settings

log = logging.getLogger(__name__)


def process_for(settings: Settings, output: Callable[[str], None]) -> ComfyProcess:
    return ComfyProcess(workdir=settings.comfy_workdir, port=settings.comfy_port or free_port(),
                        plugins=[paths.PACK_DIR, *settings.comfy_plugins], extra_args=list(settings.comfyui_args),
                        model_paths_config=model_paths_config(settings), output=output)


def model_paths_config(settings: Settings) -> Path:
    return settings.comfy_workdir / "extra_model_paths.yaml"


def model_links_dir(settings: Settings) -> Path:
    return settings.comfy_workdir / "model-links"


class Supervisor:
    """One ComfyUI for the worker. ``generation`` counts (re)starts so a job can tell its server went away."""

    def __init__(self, process: ComfyProcess, boot_timeout: float):
        self.process = process
        self.boot_timeout = boot_timeout
        self.client = ComfyClient(process.url)
        self.generation = 0
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, output: Callable[[str], None]) -> Supervisor:
        return cls(process_for(settings, output), settings.boot_timeout)

    def ready(self) -> int:
        """Start ComfyUI if it is not running (waiting for a restart in progress); returns its generation."""
        with self._lock:
            if not self.process.alive():
                self._start()
            return self.generation

    def alive(self, generation: int) -> bool:
        """Is the ComfyUI of ``generation`` still the running one?"""
        return self.generation == generation and self.process.alive()

    def recover(self, generation: int) -> None:
        """After a job lost ComfyUI: restart it unless someone already did or it answers after all."""
        with self._lock:
            if generation != self.generation or (self.process.alive() and self.client.ready(timeout=5)):
                return
            log.warning("ComfyUI (pid %s) is gone or not answering: restarting it", self.process.pid)
            self._start()

    def recover_in_background(self, generation: int) -> None:
        threading.Thread(target=self._recover_logged, args=(generation,), name="comfy-recover", daemon=True).start()

    def _recover_logged(self, generation: int) -> None:
        try:
            self.recover(generation)
        except Exception:  # the next job retries through ready(); this thread must not die silently
            log.exception("restarting ComfyUI failed")

    def _start(self) -> None:
        self.process.stop()
        self.process.start()
        waited = self.process.wait_ready(self.boot_timeout)
        self.generation += 1
        log.info("ComfyUI ready at %s (pid %s) after %.1f s", self.process.url, self.process.pid, waited)

    def device_name(self) -> str | None:
        """ComfyUI's torch device as it names it (``cuda:0 NVIDIA H100 80GB HBM3 : cudaMallocAsync``, ``cpu``)."""
        try:
            devices = self.client.system_stats(timeout=5).get("devices") or [{}]
        except (ComfyUnavailable, ValueError):
            return None
        return devices[0].get("name")

    def stop(self) -> None:
        with self._lock:
            self.process.stop()
