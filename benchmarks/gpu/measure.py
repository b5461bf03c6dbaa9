"""Measuring instruments of the GPU benchmark: memory polling, image comparison, run statistics."""

from __future__ import annotations

import base64
import io
import math
import shutil
import statistics
import subprocess
import threading
import time

import numpy as np
import psutil
from PIL import Image

POLL_S = 0.1


class MemoryPoller:
    """Samples memory in use every 100 ms in a thread; ``peak(t0, t1)`` is the largest sample in a window.

    With a GPU: ``nvidia-smi`` memory.used of the card (MiB; ComfyUI's own torch peak is not reachable from
    outside its process, and the card runs nothing else). Without: resident memory of the tracked process
    and its children (MiB), so the CPU trial exercises the same code.
    """

    def __init__(self) -> None:
        self.gpu = shutil.which("nvidia-smi") is not None
        self.unit = "GPU MiB (nvidia-smi memory.used)" if self.gpu else "RSS MiB (ComfyUI process tree)"
        self.samples: list[tuple[float, float]] = []
        self._pid: int | None = None
        self._stop = threading.Event()
        self._proc: subprocess.Popen | None = None
        self._thread = threading.Thread(target=self._run_gpu if self.gpu else self._run_cpu, daemon=True)

    def start(self) -> MemoryPoller:
        self._thread.start()
        return self

    def track(self, pid: int | None) -> None:
        self._pid = pid

    def peak(self, t0: float, t1: float | None = None) -> float | None:
        t1 = time.monotonic() if t1 is None else t1
        window = [v for t, v in self.samples if t0 <= t <= t1]
        return round(max(window), 1) if window else None

    def stop(self) -> None:
        self._stop.set()
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(5)
        self._thread.join(5)

    def _run_gpu(self) -> None:
        self._proc = subprocess.Popen(
            ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", f"-lms={int(POLL_S * 1000)}"],
            stdout=subprocess.PIPE, text=True)
        for line in self._proc.stdout:
            if self._stop.is_set():
                break
            try:
                self.samples.append((time.monotonic(), float(line.split(",")[0])))
            except ValueError:
                continue

    def _run_cpu(self) -> None:
        while not self._stop.wait(POLL_S):
            if self._pid is None:
                continue
            try:
                root = psutil.Process(self._pid)
                rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            except psutil.Error:
                continue
            self.samples.append((time.monotonic(), rss / 2**20))


def decode_image(b64: str) -> np.ndarray:
    """RGB uint8 pixels of a base64 PNG/JPEG/WebP."""
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB of two uint8 images (inf when identical)."""
    if a.shape != b.shape:
        raise ValueError(f"images differ in size: {a.shape} vs {b.shape}")
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def median(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return round(statistics.median(values), 3) if values else None


def spread(values: list[float]) -> float | None:
    """(max - min) / median: how far apart runs of one configuration land; a smaller difference is noise."""
    values = [v for v in values if v is not None]
    return round((max(values) - min(values)) / statistics.median(values), 3) if len(values) > 1 else None


def rate(steps: list[tuple[float, int]]) -> float | None:
    """Sampler iterations per second from (time, step) progress events, first step excluded (it pays set-up)."""
    if len(steps) < 2 or steps[-1][0] <= steps[0][0]:
        return None
    return round((steps[-1][1] - steps[0][1]) / (steps[-1][0] - steps[0][0]), 3)


def image_stats(pixels: np.ndarray) -> list[float]:
    """Mean and standard deviation of the pixels: a flat or black image shows here."""
    return [round(float(pixels.mean()), 1), round(float(pixels.std()), 1)]
