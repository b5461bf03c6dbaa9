"""Demo ComfyUI plugin (tests, benchmarks, the tiny-model demo): a tiny SDXL-shaped model class, so the real workflow runs on a CPU in seconds.

Imported by ComfyUI as a custom-node module (it adds no nodes). On import it puts ``TinySDXL`` at the front of
``comfy.supported_models.models``; ComfyUI's stock checkpoint detection then picks it for checkpoints whose UNet
matches ``UNET_CONFIG`` (written by ``avatar_driver/demo/tiny_models.py``) and nothing else. Everything else is stock
SDXL: ``model_base.SDXL`` (EPS), the SDXL latent format and tokenizer, a TAESD-layout VAE, ldm ControlNets and
kohya LoRAs. The configs below are the single source the generator builds from.
"""

import copy

import comfy.sd1_clip
import comfy.sdxl_clip
import comfy.supported_models
import comfy.supported_models_base
import torch

CONTEXT_DIM = 64  # clip_l hidden (32) + clip_g hidden (32), like SDXL's 768 + 1280
POOLED_DIM = 32  # clip_g projection
# SDXL's ADM vector: pooled clip_g + six 256-wide size/crop embeddings (model_base.SDXL.encode_adm).
ADM_IN_CHANNELS = POOLED_DIM + 6 * 256

# Everything comfy.model_detection.detect_unet_config reads back from an ldm-layout UNet, plus SDXL's
# extra config (64 channels per attention head). Transformers sit only where the width is 64.
UNET_CONFIG = {
    "use_checkpoint": False, "image_size": 32, "use_spatial_transformer": True, "legacy": False,
    "num_classes": "sequential", "adm_in_channels": ADM_IN_CHANNELS, "in_channels": 4, "out_channels": 4,
    "model_channels": 32, "num_res_blocks": [1, 1, 1], "channel_mult": [1, 2, 2],
    "transformer_depth": [0, 1, 1], "transformer_depth_output": [0, 0, 1, 1, 1, 1], "transformer_depth_middle": 1,
    "use_linear_in_transformer": True, "context_dim": CONTEXT_DIM, "num_heads": -1, "num_head_channels": 64,
    "use_temporal_resblock": False, "use_temporal_attention": False,
}

# Text encoders: the real vocabulary (the stock tokenizer emits ids up to 49407), everything else tiny.
_CLIP_COMMON = {
    "vocab_size": 49408, "max_position_embeddings": 77, "hidden_size": 32, "intermediate_size": 64,
    "num_attention_heads": 2, "num_hidden_layers": 3, "projection_dim": POOLED_DIM, "layer_norm_eps": 1e-05,
    "bos_token_id": 0, "eos_token_id": 49407, "pad_token_id": 1,
}
CLIP_L_CONFIG = {**_CLIP_COMMON, "hidden_act": "quick_gelu"}
CLIP_G_CONFIG = {**_CLIP_COMMON, "hidden_act": "gelu"}


class TinySDXLClipModel(comfy.sdxl_clip.SDXLClipModel):
    """SDXL's dual text encoder (same layer choices and outputs) on the tiny configs."""

    def __init__(self, device="cpu", dtype=None, model_options={}):  # noqa: B006 (ComfyUI's signature)
        torch.nn.Module.__init__(self)  # SDXLClipModel.__init__ would build the full-size encoders
        # SDClipModel writes into the config it is given: hand it copies.
        self.clip_l = comfy.sd1_clip.SDClipModel(
            layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
            textmodel_json_config=copy.deepcopy(CLIP_L_CONFIG), model_options={**model_options, "model_name": "clip_l"})
        self.clip_g = comfy.sd1_clip.SDClipModel(
            layer="hidden", layer_idx=-2, device=device, dtype=dtype, layer_norm_hidden_state=False,
            textmodel_json_config=copy.deepcopy(CLIP_G_CONFIG), special_tokens={"start": 49406, "end": 49407, "pad": 0},
            return_projected_pooled=True, model_options={**model_options, "model_name": "clip_g"})
        self.dtypes = {dtype}


class TinySDXL(comfy.supported_models.SDXL):
    # The keys detection compares (supported_models_base.BASE.matches); these values occur in no real model.
    unet_config = {key: UNET_CONFIG[key] for key in (
        "model_channels", "use_linear_in_transformer", "transformer_depth", "context_dim", "adm_in_channels",
        "use_temporal_attention")}

    def clip_target(self, state_dict={}):  # noqa: B006 (ComfyUI's signature)
        return comfy.supported_models_base.ClipTarget(comfy.sdxl_clip.SDXLTokenizer, TinySDXLClipModel)


if TinySDXL not in comfy.supported_models.models:
    comfy.supported_models.models.insert(0, TinySDXL)

# Tiny layers gain nothing from intra-op threads, and where the CPUs are shared (several test servers on two
# cores) OpenMP's spinning threads make each small op tens of times slower. One thread keeps runs quick and steady.
torch.set_num_threads(1)

NODE_CLASS_MAPPINGS = {}  # a model class only; the empty mapping tells ComfyUI the module loaded fine
