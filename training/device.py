"""Which device and weight precision to train with."""

from __future__ import annotations

import logging

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
