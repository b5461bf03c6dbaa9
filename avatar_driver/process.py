"""Start, watch and restart a headless ComfyUI server process.

Used by the worker at boot (and to recover after a crash) and by the tests, so both run ComfyUI
the same way. ComfyUI gets its own ``--base-directory`` (a work dir this module owns): its
input/output/temp/user folders and the scanned ``custom_nodes`` live there, never in the install.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from avatar_driver import paths
from avatar_driver.client import ComfyClient


def device_args(environ: Mapping[str, str] = os.environ, cpu_fallback: bool = True) -> list[str]:
    """ComfyUI flags for this machine: ``COMFYUI_ARGS`` if set, else ``--cpu`` where no NVIDIA GPU is present
    (``cpu_fallback``: tests and tools; the worker turns it off, so a broken GPU host never serves CPU jobs)."""
    if "COMFYUI_ARGS" in environ:
        return environ["COMFYUI_ARGS"].split()
    return [] if shutil.which("nvidia-smi") or not cpu_fallback else ["--cpu"]


def gpu_names() -> list[str]:
    """The NVIDIA GPUs ``nvidia-smi`` lists (the runpod SDK's own test), without touching CUDA in this process."""
    try:
        done = subprocess.run(["nvidia-smi", "--list-gpus"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in done.stdout.splitlines() if line.strip()] if done.returncode == 0 else []


def _forward_lines(stream: IO[bytes], output: Callable[[str], None]) -> None:
    """Hand every line of ``stream`` to ``output`` until it closes (the process exited)."""
    pending = b""
    while chunk := stream.read1(1 << 16):
        *lines, pending = re.split(rb"[\r\n]", pending + chunk)
        for line in filter(None, lines):
            output(line.decode("utf-8", errors="replace"))
    if pending:
        output(pending.decode("utf-8", errors="replace"))


class ComfyBootError(RuntimeError):
    """ComfyUI died while starting or did not answer before the boot deadline."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ComfyProcess:
    workdir: Path
    port: int = field(default_factory=free_port)
    comfy_dir: Path = field(default_factory=paths.comfyui_dir)
    model_paths_config: Path | None = field(default_factory=paths.model_paths_config)
    # Folders/files linked into <workdir>/custom_nodes; the pack is always one of them.
    plugins: list[Path] = field(default_factory=lambda: [paths.PACK_DIR])
    extra_args: list[str] = field(default_factory=lambda: device_args())
    # None: ComfyUI's output goes to this process's stdout (the worker's logs); else to this file.
    log_path: Path | None = None
    python: str = sys.executable
    # Instead of either: each line of ComfyUI's output (``\r``-redrawn progress bars too) is handed to this.
    output: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self._proc: subprocess.Popen | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def command(self) -> list[str]:
        cmd = [
            self.python, str(self.comfy_dir / "main.py"),
            "--listen", "127.0.0.1", "--port", str(self.port),
            "--disable-auto-launch", "--disable-metadata", "--disable-api-nodes",
            "--base-directory", str(self.workdir),
            # ComfyUI's default database lives inside its install (read-only in the image); nothing needs keeping.
            "--database-url", "sqlite:///:memory:",
        ]
        if self.model_paths_config is not None:
            cmd += ["--extra-model-paths-config", str(self.model_paths_config)]
        return cmd + self.extra_args

    def _prepare_workdir(self) -> None:
        nodes_dir = self.workdir / "custom_nodes"
        nodes_dir.mkdir(parents=True, exist_ok=True)
        for plugin in self.plugins:
            link = nodes_dir / plugin.name
            if link.is_symlink() or link.exists():
                if link.resolve() == plugin.resolve():
                    continue
                link.unlink()
            link.symlink_to(plugin.resolve())

    def start(self) -> None:
        if self.alive():
            return
        if not (self.comfy_dir / "main.py").is_file():
            raise ComfyBootError(
                f"ComfyUI not found at {self.comfy_dir}; run scripts/setup.sh or set COMFYUI_DIR"
            )
        self._prepare_workdir()
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = self.log_path.open("ab")
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        piped = self.output is not None and self._log is None
        self._proc = subprocess.Popen(
            self.command(), cwd=self.comfy_dir, env=env,
            stdout=subprocess.PIPE if piped else self._log, stderr=subprocess.STDOUT if self._log or piped else None,
        )
        if piped:
            threading.Thread(target=_forward_lines, args=(self._proc.stdout, self.output), name="comfy-output",
                             daemon=True).start()

    def wait_ready(self, timeout: float = 120.0, poll: float = 0.2) -> float:
        """Block until ComfyUI answers HTTP; return seconds waited. Fails fast if the process dies."""
        started = time.monotonic()
        client = ComfyClient(self.url)
        while True:
            if not self.alive():
                code = self._proc.returncode if self._proc else None
                raise ComfyBootError(f"ComfyUI exited during boot (exit code {code})")
            if client.ready():
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                self.stop()
                raise ComfyBootError(f"ComfyUI did not answer within {timeout:.0f} s")
            time.sleep(poll)

    def stop(self, grace: float = 10.0) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self, timeout: float = 120.0) -> float:
        self.stop()
        self.start()
        return self.wait_ready(timeout)

    def clear_io_dirs(self) -> None:
        """Remove anything ComfyUI left in its input/output/temp folders (user photos are private).

        The folders themselves stay: ComfyUI may be running another prompt, and jobs call this concurrently.
        """
        for name in ("input", "output", "temp"):
            folder = self.workdir / name
            for entry in list(folder.iterdir()) if folder.is_dir() else []:
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)

    def __enter__(self) -> ComfyProcess:
        self.start()
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
