"""Which device and weight precision to train with."""

from __future__ import annotations

import logging
import sys

import torch

DEVICES = ("auto", "mps", "cuda", "cpu")
PRECISIONS = ("auto", "fp32", "bf16")

log = logging.getLogger(__name__)


def pick_device(requested: str = "auto") -> torch.device:
    """``auto``: Apple GPU (MPS), then CUDA, then CPU. An explicit choice that is absent is an error."""
    available = {
        "mps": torch.backends.mps.is_available(),
        "cuda": torch.cuda.is_available(),
        "cpu": True,
    }
    if requested == "auto":
        return torch.device(next(name for name in ("mps", "cuda", "cpu") if available[name]))
    if requested not in available:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {requested!r}")
    if not available[requested]:
        raise RuntimeError(f"device {requested!r} is not available in this PyTorch build")
    return torch.device(requested)


def pick_dtype(device: torch.device, requested: str = "auto") -> torch.dtype:
    """Weight/compute dtype of the frozen UNet; the LoRA weights themselves always train in fp32.

    ``auto``: bf16 on a CUDA GPU that supports it, else fp32. On MPS fp32 is the default: SDXL in
    fp16 overflows (NaN losses without loss scaling), and bf16 needs macOS 14+ and still has kernels
    missing or slow there, so bf16 is opt-in (``--precision bf16``). fp16 is not offered at all.
    """
    if requested == "fp32":
        return torch.float32
    if requested == "bf16":
        if device.type == "mps":
            log.warning("bf16 on MPS needs macOS 14+; if the loss turns NaN or ops fail, use --precision fp32")
        return torch.bfloat16
    if requested != "auto":
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {requested!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


class PeakMemory:
    """Peak memory of the training steps, by the framework's own counter for the device.

    CUDA: ``torch.cuda.max_memory_allocated`` since ``reset``. MPS has no peak counter, so
    ``torch.mps.driver_allocated_memory`` is sampled at each ``sample`` call (after the forward pass,
    after the backward pass, after the optimizer step). CPU: the process's peak resident set size
    (``getrusage``), which also counts the encoders if this process filled the cache.
    """

    def __init__(self, device: torch.device):
        self.device = device
        self.sampled = 0

    def reset(self) -> None:
        self.sampled = 0
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def sample(self) -> None:
        if self.device.type == "mps":
            self.sampled = max(self.sampled, torch.mps.driver_allocated_memory())

    def peak(self) -> tuple[int, str]:
        """(bytes, what was measured)."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device), "torch.cuda.max_memory_allocated"
        if self.device.type == "mps":
            return self.sampled, "torch.mps.driver_allocated_memory, sampled in each step"
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak * (1 if sys.platform == "darwin" else 1024), "process peak RSS (getrusage)"
