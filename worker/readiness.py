"""What the worker checks before it reports ready: a CUDA GPU unless told to use the CPU, and every required model
file where MODEL_LOCATIONS says, at the manifest's size. A worker that fails them exits at boot instead of taking
jobs it can only fail (which would drain the endpoint's queue faster than the healthy workers can serve it)."""

from __future__ import annotations

import logging

from avatar_driver import paths
from avatar_driver.contract import Workflow, latest
from avatar_driver.locations import ModelLinks, Resolved
from avatar_driver.manifest import fetch_command, load_manifest
from avatar_driver.process import gpu_names
from worker.settings import Settings

log = logging.getLogger(__name__)


class BootRefused(RuntimeError):
    """The worker must not report ready; the message says why."""


def check_device(settings: Settings) -> None:
    if settings.cpu:
        log.warning("running on the CPU (COMFYUI_ARGS has --cpu): for the demo and tests, far too slow to serve")
        return
    if not (gpus := gpu_names()):
        raise BootRefused("no CUDA GPU: nvidia-smi lists none (is this a GPU host with the NVIDIA runtime?). Set "
                          "COMFYUI_ARGS=--cpu to run on the CPU on purpose")
    log.info("GPU: %s", "; ".join(gpus))


def model_links(settings: Settings, workflows: dict[str, Workflow], links_dir) -> ModelLinks:
    """Every model file any published workflow loads, resolved over the settings' locations."""
    files = {(folder, name) for workflow in workflows.values() for name, folder in workflow.model_files().items()}
    return ModelLinks(list(settings.model_locations), load_manifest(paths.models_manifest()), files, links_dir)


def check_models(links: ModelLinks, workflows: dict[str, Workflow]) -> dict[tuple[str, str], Resolved]:
    """Resolve and link every model; refuse when a file the latest workflow needs is missing (one line each). An
    optional model (the style LoRA) may be absent: its jobs run without it and say so."""
    found = links.refresh()
    for item in found.values():
        if item.path is not None:
            log.info("model %s: %s", item.relpath, item.path)
        for passed_over in item.wrong_size:
            log.warning("model %s: passed over %s", item.relpath, passed_over)
    workflow = latest(workflows)
    required = {(folder, name) for name, folder in workflow.required_models().items()}
    missing = [found[key] for key in sorted(required) if found[key].path is None]
    for item in missing:
        log.error(item.problem())
    # A model only a preset loads (the turbo speed's LoRA): the worker serves without it, that preset does not.
    for name, folder in sorted(workflow.preset_models().items()):
        if found[(folder, name)].path is None:
            log.warning("%s: jobs whose preset loads it fail with MODEL_MISSING (fetch it with: %s)",
                        found[(folder, name)].problem(), fetch_command(name))
    if missing:
        raise BootRefused(f"{len(missing)} required model file(s) missing (MODEL_LOCATIONS: "
                          f"{', '.join(map(str, links.locations))}): refusing to report ready")
    return found
