"""Machine-readable job errors: the driver's codes on top of the pack's, and how ComfyUI failures map to them.

``WorkerError`` extends the pack's ``CodedError`` (custom_nodes/ethmumbai/core/errors.py): the pack's codes are
defined there, the driver's here, each once. How a failed job is returned is the worker's business
(worker/handler.py).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from custom_nodes.ethmumbai.core.errors import CODES as PACK_CODES
from custom_nodes.ethmumbai.core.errors import MODEL_MISSING, CodedError
from custom_nodes.ethmumbai.core.errors import WARNINGS as PACK_WARNINGS

COMFY_VALIDATION = "COMFY_VALIDATION"  # ComfyUI refused the prompt (node_errors), other than a missing model
COMFY_EXECUTION = "COMFY_EXECUTION"  # a node raised something that is not one of the pack's coded errors
TIMEOUT = "TIMEOUT"  # the job's deadline passed; the prompt was interrupted and removed
COMFY_CRASHED = "COMFY_CRASHED"  # the ComfyUI process died or became unreachable during the job
OUTPUT_TOO_LARGE = "OUTPUT_TOO_LARGE"  # the result exceeds the payload limit and no storage is configured
STORAGE_ERROR = "STORAGE_ERROR"  # the object store failed
GPU_OUT_OF_MEMORY = "GPU_OUT_OF_MEMORY"  # CUDA ran out of memory inside a node; ComfyUI's memory is freed after it
CANCELLED = "CANCELLED"  # RunPod cancelled the job (or its execution timeout passed); the prompt was stopped

CODES = PACK_CODES | {COMFY_VALIDATION, COMFY_EXECUTION, TIMEOUT, COMFY_CRASHED, OUTPUT_TOO_LARGE, STORAGE_ERROR,
                      GPU_OUT_OF_MEMORY, CANCELLED}
# Worth sending again as they are: the failure was the server's state, not the job's.
RETRYABLE = frozenset({GPU_OUT_OF_MEMORY, COMFY_CRASHED})
# How ComfyUI names torch's out-of-memory exception in ``execution_error.exception_type`` (torch.cuda's is an alias).
OOM_EXCEPTION_TYPES = frozenset({"torch.OutOfMemoryError", "torch.cuda.OutOfMemoryError"})

# Warnings: the job still succeeded; the output's ``warnings`` lists them as {code, message, ...}. The pack's
# (LOW_RESOLUTION_FACE, from the face crop's report) are defined in its errors module.
STYLE_LORA_MISSING = "STYLE_LORA_MISSING"  # the style LoRA is not installed: rendered without it (prompt only)
CACHE_DISABLED = "CACHE_DISABLED"  # a model the job used has no pinned sha256: the result cache is off for it
DEMO_MODELS = "DEMO_MODELS"  # the worker runs the tiny random demo models: the image is texture, not an avatar
WARNINGS = PACK_WARNINGS | {STYLE_LORA_MISSING, CACHE_DISABLED, DEMO_MODELS}

_CODE_PREFIX = re.compile(r"^\[([A-Z_]+)\]\s*")
# Defence in depth: error texts are echoed to clients and logs, so any long base64-like run is cut out.
_BASE64_RUN = re.compile(r"[A-Za-z0-9+/=_-]{120,}")
MAX_MESSAGE_CHARS = 600


class WorkerError(CodedError):
    """A failed prompt or job, with any code of the pack or the driver; its message is cleaned for clients."""

    codes = CODES

    def __init__(self, code: str, message: str):
        super().__init__(code, clean_message(message))


def clean_message(text: str) -> str:
    text = _BASE64_RUN.sub("<redacted>", str(text).strip())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS - 3] + "..."


def from_exception_message(exception_message: str, node_type: str | None = None,
                           exception_type: str | None = None) -> WorkerError:
    """A node's exception text (``execution_error.exception_message``) to an error; ``[CODE] msg`` keeps its code,
    CUDA's out-of-memory is ``GPU_OUT_OF_MEMORY``."""
    text = (exception_message or "").strip()
    if exception_type in OOM_EXCEPTION_TYPES:
        where = f" in {node_type}" if node_type else ""
        return WorkerError(GPU_OUT_OF_MEMORY, f"the GPU ran out of memory{where}; memory is being freed, please "
                                              f"retry ({text.splitlines()[0] if text else 'out of memory'})")
    match = _CODE_PREFIX.match(text)
    if match and match.group(1) in CODES:
        return WorkerError(match.group(1), text[match.end():])
    where = f" in {node_type}" if node_type else ""
    return WorkerError(COMFY_EXECUTION, f"ComfyUI failed{where}: {text or 'unknown error'}")


def rejection_error(error: dict, node_errors: dict, missing: Sequence) -> WorkerError:
    """ComfyUI refused the prompt. A model file not on disk is MODEL_MISSING (named, with its fetch command); the
    rest COMFY_VALIDATION. ``missing``: the workflow contract's ``missing_models(node_errors)``."""
    if missing:
        return WorkerError(MODEL_MISSING, "; ".join(m.message for m in missing))
    problems = [f"node {node_id} ({entry.get('class_type')}): {item.get('message')}: {item.get('details')}"
                for node_id, entry in node_errors.items() for item in entry.get("errors", [])]
    if problems:
        return WorkerError(COMFY_VALIDATION, "; ".join(problems))
    error = error or {}
    message = "; ".join(filter(None, [error.get("message", "invalid prompt"), error.get("details")]))
    if "does not exist" in message:  # ComfyUI 0.3.75's words for a node class it has not loaded
        message += "; a custom node the workflow needs is not installed in this ComfyUI or failed to import " \
                   "(the worker's start-up log names it)"
    return WorkerError(COMFY_VALIDATION, message)
