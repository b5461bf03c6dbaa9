"""The coded-error base of the whole product, and the pack's own codes.

``str(err)`` is ``"[CODE] message"`` so the code survives ComfyUI's ``execution_error`` event
and the worker can parse it with ``^\\[([A-Z_]+)\\]``. Messages never contain image data.
The driver (``avatar_driver/errors.py``) extends ``CodedError`` with its own codes; this module imports nothing
of the repo, so the pack stays installable alone into an artist's ComfyUI.
"""

from __future__ import annotations

INVALID_INPUT = "INVALID_INPUT"
IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
UNSUPPORTED_IMAGE = "UNSUPPORTED_IMAGE"
NO_FACE_DETECTED = "NO_FACE_DETECTED"
NO_PERSON_DETECTED = "NO_PERSON_DETECTED"
MULTIPLE_FACES = "MULTIPLE_FACES"
MODEL_MISSING = "MODEL_MISSING"
DEPENDENCY_MISSING = "DEPENDENCY_MISSING"

CODES = frozenset({
    INVALID_INPUT, IMAGE_TOO_LARGE, UNSUPPORTED_IMAGE, NO_FACE_DETECTED, NO_PERSON_DETECTED, MULTIPLE_FACES,
    MODEL_MISSING, DEPENDENCY_MISSING,
})

# Warning codes: the job still succeeds and carries {"code", "message"} entries (face crop UI output).
LOW_RESOLUTION_FACE = "LOW_RESOLUTION_FACE"
WARNINGS = frozenset({LOW_RESOLUTION_FACE})


class CodedError(Exception):
    """An error with a machine-readable code; each subclass names the codes it may carry (``codes``)."""

    codes: frozenset[str] = frozenset()

    def __init__(self, code: str, message: str):
        if code not in self.codes:
            raise ValueError(f"unknown error code {code!r}")
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class EthMumbaiError(CodedError):
    """What the pack's nodes raise."""

    codes = CODES
