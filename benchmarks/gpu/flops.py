"""FLOPs of one evaluation of SDXL's UNet and of the SDXL ControlNet, counted on ComfyUI's own modules built on
PyTorch's meta device (no weights allocated, nothing computed): the roofline figures of RESULTS.md.

    .venv/bin/python -m benchmarks.gpu.flops [--latent 128] [--batch 1]

Architecture: ComfyUI 0.3.75's SDXL config (``comfy.model_detection``'s diffusers SDXL entry) for the UNet, the
same layout for the ldm ControlNet (the union ControlNet's blocks; its small condition transformer is left out).
Counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions, attention: 2 FLOPs a
multiply-add), one sample at ``--latent``² (128² latent = a 1024² image), text context 77 tokens.
"""

from __future__ import annotations

import argparse
import json
import sys

import torch
from torch.utils.flop_counter import FlopCounterMode

from avatar_driver import paths

SDXL_UNET = {  # comfy/model_detection.py, unet_config_from_diffusers_unet: SDXL
    "use_checkpoint": False, "image_size": 32, "out_channels": 4, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": 2816, "in_channels": 4, "model_channels": 320,
    "num_res_blocks": [2, 2, 2], "transformer_depth": [0, 0, 2, 2, 10, 10], "channel_mult": [1, 2, 4],
    "transformer_depth_middle": 10, "use_linear_in_transformer": True, "context_dim": 2048, "num_head_channels": 64,
    "transformer_depth_output": [0, 0, 0, 2, 2, 2, 10, 10, 10], "use_temporal_attention": False,
    "use_temporal_resblock": False,
}


def count(latent: int, batch: int) -> dict:
    sys.path.insert(0, str(paths.comfyui_dir()))
    import comfy.cli_args

    # Nothing runs: no GPU lookup on import, and the SDPA attention (what a GPU uses), whose FLOPs are counted.
    comfy.cli_args.args.cpu = True
    comfy.cli_args.args.use_pytorch_cross_attention = True
    import comfy.cldm.cldm
    import comfy.ldm.modules.diffusionmodules.openaimodel as openaimodel
    import comfy.ops

    ops = comfy.ops.disable_weight_init
    device = torch.device("meta")
    x = torch.randn(batch, 4, latent, latent, device=device)
    t = torch.ones(batch, device=device)
    context = torch.randn(batch, 77, 2048, device=device)
    y = torch.randn(batch, 2816, device=device)
    unet = openaimodel.UNetModel(**SDXL_UNET, device=device, operations=ops)
    control_config = {k: v for k, v in SDXL_UNET.items() if k not in ("out_channels", "transformer_depth_output")}
    control = comfy.cldm.cldm.ControlNet(hint_channels=3, **control_config, device=device, operations=ops)
    hint = torch.randn(batch, 3, latent * 8, latent * 8, device=device)
    figures = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as counter:
            unet(x, t, context=context, y=y)
        figures["unet_tflop"] = counter.get_total_flops() / 1e12
        with FlopCounterMode(display=False) as counter:
            control(x=x, hint=hint, timesteps=t, context=context, y=y)
        figures["controlnet_tflop"] = counter.get_total_flops() / 1e12
    return {"latent": latent, "batch": batch, **{k: round(v, 3) for k, v in figures.items()}}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--latent", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    print(json.dumps(count(args.latent, args.batch), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
