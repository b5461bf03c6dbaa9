"""The one exception type the pack raises; its text carries a machine-readable code.

``str(err)`` is ``"[CODE] message"`` so the code survives ComfyUI's ``execution_error`` event
and the worker can parse it with ``^\\[([A-Z_]+)\\]``. Messages never contain image data.
"""

from __future__ import annotations

INVALID_INPUT = "INVALID_INPUT"
IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
UNSUPPORTED_IMAGE = "UNSUPPORTED_IMAGE"
NO_FACE_DETECTED = "NO_FACE_DETECTED"
MULTIPLE_FACES = "MULTIPLE_FACES"
MODEL_MISSING = "MODEL_MISSING"
DEPENDENCY_MISSING = "DEPENDENCY_MISSING"

CODES = frozenset({
    INVALID_INPUT, IMAGE_TOO_LARGE, UNSUPPORTED_IMAGE, NO_FACE_DETECTED, MULTIPLE_FACES, MODEL_MISSING,
    DEPENDENCY_MISSING,
})


class EthMumbaiError(Exception):
    def __init__(self, code: str, message: str):
        if code not in CODES:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"
