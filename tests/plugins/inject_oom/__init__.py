"""Test-only ComfyUI plugin: makes the next KSampler run raise CUDA's out-of-memory error, on demand.

Imported by ComfyUI as a custom-node module (it adds no nodes). It wraps ``comfy.sample.sample``, which the stock
KSampler node calls: while the file named by ``ETHMUMBAI_INJECT_OOM_FILE`` exists, the next call deletes it and
raises ``torch.cuda.OutOfMemoryError``, so the error comes out of a real node inside a real prompt, and ComfyUI
handles it as it would a real one (it unloads its models and reports ``execution_error``).
"""

import os

import comfy.sample
import torch

_sample = comfy.sample.sample


def _sample_or_run_out_of_memory(*args, **kwargs):
    trigger = os.environ.get("ETHMUMBAI_INJECT_OOM_FILE")
    if trigger and os.path.exists(trigger):
        os.unlink(trigger)
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected by a test)")
    return _sample(*args, **kwargs)


comfy.sample.sample = _sample_or_run_out_of_memory
NODE_CLASS_MAPPINGS: dict = {}
