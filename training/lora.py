"""LoRA layers on the UNet's transformer Linear layers, saved with kohya ``lora_unet_…`` keys.

Layers are attached with forward hooks (``y = W x + scale · up(down(x))``), so the frozen base
weights are never copied or rewritten and the same model can be evaluated with and without them.
Key names come from ``comfy.lora.model_lora_keys_unet``: every saved key is one ComfyUI maps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

# kohya's default SDXL target (networks/lora.py: the Linear layers of Transformer2DModel blocks).
TARGETS = ("transformer", "attention")
_ATTENTION_SUFFIXES = (".to_q", ".to_k", ".to_v", ".to_out.0")


class LoRALayer(nn.Module):
    """``scale · up(down(x))``; up starts at zero so training starts from the base model exactly."""

    def __init__(self, in_features: int, out_features: int, rank: int, alpha: float):
        super().__init__()
        self.down = nn.Linear(in_features, rank, bias=False)
        self.up = nn.Linear(rank, out_features, bias=False)
        self.scale = alpha / rank
        self.multiplier = 1.0
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        nn.init.zeros_(self.up.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x.to(self.down.weight.dtype))) * (self.scale * self.multiplier)


def target_layers(diffusion_model: nn.Module, target: str) -> dict[str, nn.Linear]:
    """Module name (inside ``diffusion_model``) → Linear layer to adapt, in model order."""
    from comfy.ldm.modules.attention import SpatialTransformer

    if target not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    found: dict[str, nn.Linear] = {}
    for block_name, block in diffusion_model.named_modules():
        if not isinstance(block, SpatialTransformer):
            continue
        for name, layer in block.named_modules():
            full = f"{block_name}.{name}"
            if isinstance(layer, nn.Linear) and (target == "transformer" or full.endswith(_ATTENTION_SUFFIXES)):
                found[full] = layer
    if not found:
        raise ValueError("no transformer Linear layers found: is this an SDXL (or SD) UNet?")
    return found


def kohya_key(module_name: str) -> str:
    return "lora_unet_" + module_name.replace(".", "_")


@dataclass(frozen=True)
class NetworkSpec:
    rank: int
    alpha: float
    target: str = "transformer"


class LoRANetwork(nn.Module):
    """The trainable LoRA layers of one UNet, keyed by kohya name, and the hooks that apply them."""

    def __init__(self, base_model: nn.Module, spec: NetworkSpec):
        super().__init__()
        import comfy.lora

        self.spec = spec
        key_map = comfy.lora.model_lora_keys_unet(base_model, {})
        self.targets = target_layers(base_model.diffusion_model, spec.target)
        self.layers = nn.ModuleDict()
        for name, linear in self.targets.items():
            key = kohya_key(name)
            if key_map.get(key) != f"diffusion_model.{name}.weight":
                raise ValueError(f"ComfyUI maps {key} to {key_map.get(key)!r}, not diffusion_model.{name}.weight")
            self.layers[key] = LoRALayer(linear.in_features, linear.out_features, spec.rank, spec.alpha)
        self._hooks: list = []

    def attach(self) -> None:
        if self._hooks:
            return
        for name, linear in self.targets.items():
            lora = self.layers[kohya_key(name)]
            self._hooks.append(linear.register_forward_hook(
                lambda _module, args, out, lora=lora: out + lora(args[0]).to(out.dtype)))

    def detach(self) -> None:
        for hook in self._hooks:
            hook.remove()
        self._hooks.clear()

    def set_multiplier(self, value: float) -> None:
        for layer in self.layers.values():
            layer.multiplier = value

    def kohya_state_dict(self, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
        """``<key>.lora_down.weight`` [r, in], ``<key>.lora_up.weight`` [out, r], ``<key>.alpha``."""
        out = {}
        for key, layer in self.layers.items():
            out[f"{key}.lora_down.weight"] = layer.down.weight.detach().to("cpu", dtype, copy=True).contiguous()
            out[f"{key}.lora_up.weight"] = layer.up.weight.detach().to("cpu", dtype, copy=True).contiguous()
            out[f"{key}.alpha"] = torch.tensor(float(self.spec.alpha), dtype=dtype)
        return out
