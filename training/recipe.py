"""The opt-in recipe options SDXL LoRA practitioners use (kohya, SimpleTuner, diffusers' SDXL LoRA script).

Each is a small pure function of tensors and a seeded generator, so a run stays reproducible and resumable:
noise offset, min-SNR-γ loss weights, caption dropout, linear learning-rate warm-up and an EMA of the LoRA weights.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


def make_noise(shape: torch.Size, generator: torch.Generator, offset: float = 0.0) -> torch.Tensor:
    """Gaussian noise, plus ``offset`` × one Gaussian value per sample and channel (noise offset).

    The offset shifts each channel's mean, which lets the model learn images darker or brighter overall
    than the average (Guttenberg, "Diffusion with offset noise", 2023). With 0 no extra numbers are drawn,
    so runs without the option keep the same random stream.
    """
    noise = torch.randn(shape, generator=generator)
    if offset:
        noise = noise + offset * torch.randn((shape[0], shape[1]) + (1,) * (len(shape) - 2), generator=generator)
    return noise


def min_snr_weights(sigmas: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-sample loss weights min(SNR, γ) / SNR for ε-prediction (Hang et al., "Efficient Diffusion
    Training via Min-SNR Weighting Strategy", 2023). ComfyUI's σ is sqrt((1 - ᾱ) / ᾱ), so SNR = ᾱ / (1 - ᾱ) = 1/σ²."""
    snr = 1.0 / sigmas.double() ** 2
    return (torch.clamp(snr, max=gamma) / snr).float()


def dropout_mask(count: int, rate: float, generator: torch.Generator) -> list[bool]:
    """Which of ``count`` samples train on the empty caption (caption dropout); no draw when the rate is 0."""
    if rate <= 0:
        return [False] * count
    return (torch.rand(count, generator=generator) < rate).tolist()


def warmup_lr(step: int, base: float, warmup_steps: int) -> float:
    """Learning rate of training step ``step`` (1-based): rises linearly to ``base`` over the first
    ``warmup_steps`` steps (base/W, 2·base/W, …, base), then stays. A function of the step alone, so a
    resumed run continues the same ramp."""
    if warmup_steps <= 0:
        return base
    return base * min(1.0, step / warmup_steps)


class EMA:
    """Exponential moving average of a module's parameters, in fp32 on the parameters' device.

    The decay grows with the step, min(decay, (1 + step) / (10 + step)) as in diffusers' ``EMAModel``,
    so a short run is not dominated by the starting weights.
    """

    def __init__(self, module: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {name: p.detach().float().clone() for name, p in module.named_parameters()}

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step))

    @torch.no_grad()
    def update(self, module: nn.Module, step: int) -> None:
        d = self.decay_at(step)
        for name, p in module.named_parameters():
            self.shadow[name].mul_(d).add_(p.detach().float(), alpha=1.0 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {name: t.cpu() for name, t in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, t in state.items():
            self.shadow[name].copy_(t)

    @contextmanager
    def applied(self, module: nn.Module) -> Iterator[None]:
        """Inside the block the module holds the EMA weights; the raw ones come back after it."""
        raw = {name: p.detach().clone() for name, p in module.named_parameters()}
        with torch.no_grad():
            for name, p in module.named_parameters():
                p.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in module.named_parameters():
                    p.copy_(raw[name])
