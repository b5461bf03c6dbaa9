"""Run as ``python -m tests.training.sdxl_keys``: the LoRA layers for the REAL SDXL UNet architecture.

Builds SDXL's UNet through ComfyUI's own model detection on the meta device (no weights, no memory), attaches
the training kit's LoRA network for each target set, saves its kohya state dict and loads it back with
``comfy.lora.load_lora``. Prints one JSON line per target: layers, keys, weights patched, keys not loaded.
Runs in a subprocess so the test process never imports ComfyUI.
"""

from __future__ import annotations

import json

import torch

from training import comfy_runtime
from training.lora import TARGETS, LoRANetwork, NetworkSpec

# What comfy.model_detection.detect_unet_config reads from sd_xl_base_1.0.safetensors.
SDXL_UNET = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "out_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "channel_mult": [1, 2, 4], "transformer_depth": [0, 0, 2, 2, 10, 10],
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "transformer_depth_middle": 10,
    "use_linear_in_transformer": True, "context_dim": 2048, "use_temporal_resblock": False,
    "use_temporal_attention": False,
}


def main() -> None:
    comfy_runtime.import_comfy(torch.device("cpu"))
    import comfy.lora
    import comfy.model_detection

    config = comfy.model_detection.model_config_from_unet_config(dict(SDXL_UNET))
    model = config.get_model({}, "", device=torch.device("meta"))
    for target in TARGETS:
        network = LoRANetwork(model, NetworkSpec(rank=16, alpha=16, target=target))
        lora = network.kohya_state_dict()
        with comfy_runtime.unloaded_key_log() as unloaded:
            patches = comfy.lora.load_lora(lora, comfy.lora.model_lora_keys_unet(model, {}))
        print(json.dumps({"model_class": type(config).__name__, "target": target, "layers": len(network.layers),
                          "keys": len(lora), "patched": len(patches), "unloaded": unloaded,
                          "fp16_bytes": sum(t.numel() * t.element_size() for t in lora.values())}))


if __name__ == "__main__":
    main()
