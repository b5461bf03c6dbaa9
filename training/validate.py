"""Validation renders: fixed-seed photos and text prompts × LoRA strengths through the real avatar workflow.

The grid is rendered by a headless ComfyUI (``avatar_driver.process.ComfyProcess``) running the
published workflow (``workflows/ethmumbai_avatar/v<N>.api.json`` + params file) with the base
checkpoint and the LoRA under test swapped in, the way the worker runs jobs (``avatar_driver.runner``).
Below the photo rows, text-to-image rows render sample prompts with the trigger word through the same
graph's checkpoint, LoRA, text encoders, sampler and decoder from an empty latent: they show what the
LoRA learned without a photo holding the composition.

    python -m training.validate RUN_DIR --photos PHOTOS_DIR [--strengths 0,0.5,0.8,1] [--param size=768]

renders every checkpoint of a finished run (useful on a Mac that cannot hold the trainer and
ComfyUI in memory together: train with ``--validate-every 0``, then run this).
"""

from __future__ import annotations

import argparse
import base64
import copy
import io
import json
import logging
import os
import time
from pathlib import Path

import torch
import yaml
from PIL import Image

from avatar_driver import paths
from avatar_driver.client import ComfyClient
from avatar_driver.contract import Workflow, latest, load_workflows
from avatar_driver.process import ComfyProcess, device_args
from avatar_driver.runner import PromptRun
from training import imaging, plots
from training.dataset import dataset_trigger

DEFAULT_STRENGTHS = (0.0, 0.5, 0.8, 1.0)
# {trigger} is replaced by the run's trigger word.
DEFAULT_SAMPLE_PROMPTS = ("{trigger}, portrait of a smiling woman, head and shoulders",
                          "{trigger}, a tiger in a city street at night")
RENDER_TIMEOUT_S = 1800.0  # SDXL on a laptop CPU fallback can be very slow; a hang still ends

log = logging.getLogger(__name__)


def comfy_device_args(device: torch.device) -> list[str]:
    """ComfyUI flags matching the training device (``COMFYUI_ARGS`` wins, as in the worker)."""
    if "COMFYUI_ARGS" in os.environ:
        return device_args()
    return ["--cpu"] if device.type == "cpu" else []  # ComfyUI finds CUDA and MPS on its own


def photo_base64(path: Path) -> str:
    """The photo EXIF-rotated, as base64 PNG (what the workflow's base64 input node takes)."""
    out = io.BytesIO()
    Image.fromarray(imaging.load_rgb(path)).save(out, format="PNG")
    return base64.b64encode(out.getvalue()).decode("ascii")


def list_photos(folder: Path) -> list[Path]:
    photos = sorted(p for p in folder.iterdir() if p.suffix.lower() in imaging.IMAGE_SUFFIXES)
    if not photos:
        raise FileNotFoundError(f"no validation photos ({', '.join(sorted(imaging.IMAGE_SUFFIXES))}) in {folder}")
    return photos


def with_models(workflow: Workflow, prompt: dict, checkpoint: str, lora: str) -> dict:
    """``prompt`` with every checkpoint input set to the base model and every LoRA input to the LoRA under test
    (the params file's ``models`` list says which inputs load which folder; see docs/ARCHITECTURE.md)."""
    swap = {"checkpoints": checkpoint, "loras": lora}
    for model in workflow.model_inputs():
        if model.folder in swap:
            prompt[model.node]["inputs"][model.input] = swap[model.folder]
    return prompt


def reachable(prompt: dict, output_node: str) -> dict:
    """The nodes ``output_node`` depends on (the rest would run for nothing)."""
    keep, todo = set(), [output_node]
    while todo:
        node = todo.pop()
        if node not in keep:
            keep.add(node)
            todo += [value[0] for value in prompt[node]["inputs"].values() if isinstance(value, list)]
    return {node: prompt[node] for node in prompt if node in keep}


def text_to_image(workflow: Workflow, avatar_prompt: dict, text: str, size: int) -> dict:
    """The avatar prompt rewired to render ``text`` from an empty ``size``² latent: its own checkpoint, LoRA,
    text encoders, sampler settings, decoder and output node, without the photo, ControlNet and composite."""
    prompt = copy.deepcopy(avatar_prompt)
    (sampler,) = workflow.sampler_nodes
    positive, negative = workflow.targets("prompt")[0], workflow.targets("negative_prompt")[0]
    prompt[positive.node]["inputs"][positive.input] = text
    decoder = next(node for node, spec in prompt.items() if spec["inputs"].get("samples") == [sampler, 0])
    prompt["text_to_image_latent"] = {"class_type": "EmptyLatentImage",
                                      "inputs": {"width": size, "height": size, "batch_size": 1}}
    prompt[sampler]["inputs"] |= {"positive": [positive.node, 0], "negative": [negative.node, 0],
                                  "latent_image": ["text_to_image_latent", 0], "denoise": 1.0}
    prompt[workflow.output_node]["inputs"]["images"] = [decoder, 0]
    return reachable(prompt, workflow.output_node)


class Validator:
    """One ComfyUI server, started on first use, that renders contact sheets for LoRA files of a run."""

    def __init__(self, run_dir: Path, base_model: Path, photos: list[Path], device: torch.device,
                 strengths: tuple[float, ...] = DEFAULT_STRENGTHS, params: dict | None = None, seed: int = 42,
                 plugins: list[Path] = (), model_paths_config: Path | None = None, workflow_version: str | None = None,
                 prompts: list[str] = ()):
        self.run_dir = run_dir
        self.base_model = base_model
        self.photos = photos
        self.device = device
        self.strengths = tuple(strengths)
        self.params = dict(params or {})
        self.seed = seed
        self.prompts = list(prompts)
        for index, text in enumerate(self.prompts, start=1):
            log.info("validation: sample prompt %d: %r", index, text)
        self.plugins = [Path(p) for p in plugins]
        self.model_paths_config = model_paths_config
        workflows = load_workflows()
        self.workflow = workflows[workflow_version] if workflow_version else latest(workflows)
        self.workdir = run_dir / "validation" / "comfy"
        self.process: ComfyProcess | None = None

    def _model_paths(self) -> Path:
        """A second model-paths file: the base checkpoint's folder and the run's LoRA folders."""
        lora_dirs = (self.run_dir, self.run_dir / "checkpoints")
        config = {"ethmumbai_training": {
            "checkpoints": str(self.base_model.resolve().parent),
            "loras": "\n".join(str(d.resolve()) for d in lora_dirs),
        }}
        path = self.workdir / "training_model_paths.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(config))
        return path

    def start(self) -> ComfyProcess:
        if self.process is not None and self.process.alive():
            return self.process
        extra = comfy_device_args(self.device) + ["--extra-model-paths-config", str(self._model_paths())]
        kwargs = {"model_paths_config": self.model_paths_config} if self.model_paths_config else {}
        self.process = ComfyProcess(workdir=self.workdir, plugins=[paths.PACK_DIR, *self.plugins], extra_args=extra,
                                    log_path=self.workdir / "comfyui.log", **kwargs)
        self.process.start()
        log.info("validation: ComfyUI booted in %.1f s (log: %s)", self.process.wait_ready(600.0),
                 self.process.log_path)
        return self.process

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process.clear_io_dirs()
            self.process = None

    def __enter__(self) -> Validator:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def render_one(self, photo_b64: str, lora: str, strength: float, text: str | None = None) -> Image.Image:
        """One render of the avatar workflow on a photo, or with ``text``: text-to-image through its models."""
        process = self.start()
        params = self.workflow.defaults() | self.params | {"seed": self.seed, "lora_strength": strength}
        prompt = with_models(self.workflow, self.workflow.build(photo_b64, params), self.base_model.name, lora)
        if text is not None:
            prompt = text_to_image(self.workflow, prompt, text, int(params["size"]))
        run = PromptRun(ComfyClient(process.url), prompt, self.workflow.output_node,
                        self.workflow.sampler_nodes, process.alive)
        image = run.execute(time.monotonic() + RENDER_TIMEOUT_S).output["ethmumbai_images"][0]
        return Image.open(io.BytesIO(base64.b64decode(image["base64"]))).convert("RGB")

    def contact_sheet(self, lora: str, label: str) -> Path:
        """Render (photos + sample prompts) × strengths with ``lora`` (a file in the run folder or its
        checkpoints/); write each render to ``validation/<label>/`` and the labelled grid to
        ``validation/<label>.png``."""
        started = time.monotonic()
        folder = self.run_dir / "validation" / label
        folder.mkdir(parents=True, exist_ok=True)
        rows = []
        for photo in self.photos:
            encoded = photo_base64(photo)
            rows.append([self.render_one(encoded, lora, strength) for strength in self.strengths])
            for strength, image in zip(self.strengths, rows[-1], strict=True):
                image.save(folder / f"{photo.stem}_strength{strength:g}.png")
        for index, text in enumerate(self.prompts, start=1):
            rows.append([self.render_one("", lora, strength, text) for strength in self.strengths])
            for strength, image in zip(self.strengths, rows[-1], strict=True):
                image.save(folder / f"prompt{index}_strength{strength:g}.png")
        # Drop the cached photos and models between rounds: training needs the memory back.
        ComfyClient(self.process.url).free()
        path = folder.with_suffix(".png")
        plots.contact_sheet(path, rows, [p.name for p in self.photos] + self.prompts,
                            [f"strength {s:g}" for s in self.strengths],
                            f"{lora}  seed {self.seed}  workflow {self.workflow.version}")
        log.info("validation: %s (%d renders in %.1f s)", path, len(rows) * len(self.strengths),
                 time.monotonic() - started)
        return path


def parse_params(pairs: list[str]) -> dict:
    """``key=value`` workflow params; values parsed as JSON where possible (numbers), else kept as text."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ValueError(f"--param takes key=value, got {pair!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_strengths(text: str) -> tuple[float, ...]:
    return tuple(float(s) for s in text.split(","))


def main(argv: list[str] | None = None) -> int:
    from training.device import pick_device

    parser = argparse.ArgumentParser(prog="python -m training.validate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--photos", type=Path, required=True, help="folder of validation photos (faces)")
    parser.add_argument("--lora", action="append", default=[], help="LoRA file name(s); default: every checkpoint")
    parser.add_argument("--strengths", type=parse_strengths, default=DEFAULT_STRENGTHS)
    parser.add_argument("--param", action="append", default=[], help="workflow param key=value (e.g. size=768)")
    parser.add_argument("--seed", type=int, default=None, help="default: the run's validation seed")
    parser.add_argument("--prompt", action="append", default=None,
                        help="text-to-image sample prompt, {trigger} filled in (default: the run's sample prompts)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--model-paths-config", type=Path, default=None,
                        help="extra_model_paths.yaml for the workflow's other models (default: the run's, else models/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    config = json.loads((args.run_dir / "config.json").read_text())
    loras = args.lora or sorted(p.name for p in (args.run_dir / "checkpoints").glob("*.safetensors"))
    trigger = config.get("trigger") or dataset_trigger(Path(config["dataset"]))
    prompts = [p.format(trigger=trigger) for p in args.prompt or config.get("sample_prompts", DEFAULT_SAMPLE_PROMPTS)]
    with Validator(args.run_dir, Path(config["base_model"]), list_photos(args.photos), pick_device(args.device),
                   args.strengths, config["validation_params"] | parse_params(args.param),
                   config["validation_seed"] if args.seed is None else args.seed,
                   [Path(p) for p in config["plugins"]],
                   args.model_paths_config or (Path(config["model_paths_config"]) if config.get("model_paths_config")
                                               else None), prompts=prompts) as validator:
        for lora in loras:
            print(validator.contact_sheet(lora, Path(lora).stem))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
