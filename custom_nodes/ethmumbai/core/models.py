"""Lazy, thread-safe sharing of detector models across prompts, and optional imports.

Models are built on first use and kept for the life of the process (ComfyUI runs many prompts in
one process), so model load is paid once. Each model carries its own lock because the mediapipe
graphs and OpenCV cascades are not safe to call from two threads at once.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from .errors import DEPENDENCY_MISSING, EthMumbaiError


@dataclass
class SharedModel:
    model: Any
    lock: threading.Lock = field(default_factory=threading.Lock)


_models: dict[Hashable, SharedModel] = {}
_models_lock = threading.Lock()


def shared_model(key: Hashable, factory: Callable[[], Any]) -> SharedModel:
    """The model cached under ``key``, built by ``factory()`` the first time (once, even under threads)."""
    with _models_lock:
        entry = _models.get(key)
        if entry is None:
            entry = _models[key] = SharedModel(factory())
        return entry


def optional_import(module: str, pip_spec: str, purpose: str) -> ModuleType:
    """Import an optional dependency or raise DEPENDENCY_MISSING naming the pip package."""
    try:
        return importlib.import_module(module)
    except (ImportError, OSError) as exc:
        raise EthMumbaiError(
            DEPENDENCY_MISSING,
            f"{purpose} needs the Python package {pip_spec!r} (pip install '{pip_spec}'); import of {module} failed: {exc}",
        ) from exc
