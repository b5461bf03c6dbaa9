"""Benchmark-only ComfyUI plugin: counts the model evaluations a prompt costs, by wrapping the functions that run
them, and serves the counts over HTTP (``GET /ethmumbai_bench/evaluations``; ``POST`` resets them).

- UNet: ``comfy.model_base.BaseModel.apply_model``, counted per batch row (ComfyUI batches the conditional and
  unconditional pass of a step into one call when memory allows: two evaluations, one call);
- ControlNet: the ldm control model's ``forward`` (``comfy.cldm.cldm.ControlNet``, which the union ControlNet is),
  per batch row; ``ControlBase.get_control`` returns early outside ``start_percent``..``end_percent`` without it;
- sampler wall time: ``comfy.samplers.CFGGuider.sample``, which every sampler node runs through.

Imported by ComfyUI as a custom-node module (adds no nodes). Never part of the product's plugins.
"""

import functools
import time

import comfy.cldm.cldm
import comfy.model_base
import comfy.samplers
from aiohttp import web
from server import PromptServer

COUNTS = {"unet": 0, "unet_calls": 0, "controlnet": 0, "controlnet_calls": 0, "sampler_s": 0.0}


def _counting(function, rows_key: str, calls_key: str):
    @functools.wraps(function)
    def wrapper(self, x, *args, **kwargs):
        COUNTS[rows_key] += int(x.shape[0])
        COUNTS[calls_key] += 1
        return function(self, x, *args, **kwargs)
    return wrapper


def _timed(function):
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            COUNTS["sampler_s"] += time.perf_counter() - started
    return wrapper


comfy.model_base.BaseModel.apply_model = _counting(comfy.model_base.BaseModel.apply_model, "unet", "unet_calls")
comfy.cldm.cldm.ControlNet.forward = _counting(comfy.cldm.cldm.ControlNet.forward, "controlnet", "controlnet_calls")
comfy.samplers.CFGGuider.sample = _timed(comfy.samplers.CFGGuider.sample)


@PromptServer.instance.routes.get("/ethmumbai_bench/evaluations")
async def read_counts(request):
    return web.json_response(COUNTS)


@PromptServer.instance.routes.post("/ethmumbai_bench/evaluations")
async def reset_counts(request):
    COUNTS.update(dict.fromkeys(COUNTS, 0))
    COUNTS["sampler_s"] = 0.0
    return web.json_response(COUNTS)


NODE_CLASS_MAPPINGS = {}
