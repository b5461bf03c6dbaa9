"""ComfyUI used as a library: its checkpoint loader, model classes, conditioning and LoRA key names.

Training reuses the exact code that renders the avatar (the same model detection, latent scaling,
SDXL size conditioning and LoRA key mapping), so what the LoRA learns is what ComfyUI applies.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from avatar_driver import paths

# What ComfyUI logs when LoraLoader meets a key it cannot use (comfy/lora.py, comfy/sd.py).
UNLOADED_MARKERS = ("lora key not loaded", "NOT LOADED")


# --attention choice -> the ComfyUI CLI flag that selects it. "auto" keeps ComfyUI's own choice: PyTorch SDPA
# on NVIDIA, sub-quadratic attention on MPS and the CPU (what it does when it is imported as a library).
ATTENTION_FLAGS = {"auto": None, "sdpa": "use_pytorch_cross_attention", "sub-quadratic": "use_quad_cross_attention"}


def import_comfy(device: torch.device, plugins: list[Path] = (), attention: str = "auto") -> str:
    """Put ComfyUI on ``sys.path`` set up for ``device`` and ``attention``, then import each plugin (e.g. a
    test model class). Returns the name of the attention function ComfyUI's UNet layers use.

    ComfyUI reads its device and attention choice from its CLI arguments when ``comfy.model_management``
    is first imported; as a library it parses none, so they are set before that import.
    """
    if attention not in ATTENTION_FLAGS:
        raise ValueError(f"attention must be one of {', '.join(ATTENTION_FLAGS)}, got {attention!r}")
    comfy_dir = paths.comfyui_dir()
    if not (comfy_dir / "comfy" / "sd.py").is_file():
        raise FileNotFoundError(f"ComfyUI not found at {comfy_dir}; run scripts/setup.sh or set COMFYUI_DIR")
    if str(comfy_dir) not in sys.path:
        sys.path.insert(0, str(comfy_dir))
    import comfy.cli_args

    if "comfy.model_management" not in sys.modules:
        comfy.cli_args.args.cpu = device.type == "cpu"
        if ATTENTION_FLAGS[attention]:
            setattr(comfy.cli_args.args, ATTENTION_FLAGS[attention], True)
    import comfy.ldm.modules.attention
    import comfy.lora  # noqa: F401
    import comfy.sd  # noqa: F401

    for plugin in plugins:
        import_plugin(Path(plugin))
    return comfy.ldm.modules.attention.optimized_attention.__name__


def import_plugin(path: Path) -> None:
    """Import a ComfyUI custom-node folder (or ``.py`` file) once, for its import-time registrations."""
    name = f"ethmumbai_training_plugin_{path.stem}"
    if name in sys.modules:
        return
    if path.is_dir():
        spec = importlib.util.spec_from_file_location(name, path / "__init__.py",
                                                      submodule_search_locations=[str(path)])
    else:
        spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import plugin {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)


def load_checkpoint(path: Path, dtype: torch.dtype, with_clip: bool = True, with_vae: bool = True):
    """(ModelPatcher, CLIP | None, VAE | None) from a checkpoint file, the UNet weights in ``dtype``."""
    import comfy.sd

    if not path.is_file():
        raise FileNotFoundError(f"base model {path} not found (python scripts/fetch_models.py fetches the manifest's)")
    out = comfy.sd.load_checkpoint_guess_config(str(path), output_vae=with_vae, output_clip=with_clip,
                                                 model_options={"dtype": dtype})
    patcher, clip, vae, _ = out
    if patcher is None or getattr(patcher.model, "model_config", None) is None:
        raise ValueError(f"{path}: ComfyUI does not recognise this checkpoint (a custom model class needs --plugin)")
    return patcher, clip, vae


def free_memory() -> None:
    """Let ComfyUI drop the models it manages (text encoders, VAE) and return cached device memory."""
    import comfy.model_management

    comfy.model_management.unload_all_models()
    comfy.model_management.soft_empty_cache()


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(UNLOADED_MARKERS):
            self.messages.append(message)


@contextmanager
def unloaded_key_log() -> Iterator[list[str]]:
    """Collect ComfyUI's "lora key not loaded" / "NOT LOADED" warnings raised inside the block."""
    handler = _Collect()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.messages
    finally:
        root.removeHandler(handler)


def lora_load_check(patcher, clip, lora_sd: dict[str, torch.Tensor]) -> tuple[int, list[str]]:
    """Load the LoRA the way LoraLoader does (``comfy.sd.load_lora_for_models``, strength 1): the number
    of model weights it patches, and its "not loaded" warnings (empty when every key is used)."""
    import comfy.sd

    with unloaded_key_log() as messages:
        model, _ = comfy.sd.load_lora_for_models(patcher, clip, lora_sd, 1.0, 1.0)
    return len(model.patches), messages
