"""The workflow contract: the published avatar workflow versions (API graph + params file), turning a job into a
prompt, and reading ComfyUI's answers in the contract's terms.

Each version is a pair ``<dir>/v<N>.api.json`` + ``<dir>/v<N>.params.json`` (see docs/ARCHITECTURE.md).
The params file is the only place that knows node ids; this module reads it and nothing else does: the worker,
``workflows.convert``, training and benchmarks ask it (model inputs, missing models, parameters, node ids).
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from avatar_driver import paths
from avatar_driver.manifest import load_manifest

WORKFLOW_NAME = "ethmumbai_avatar"
_VERSION_FILE = re.compile(r"^(v(\d+))\.params\.json$")
# Class types whose execution time is "sampling"; anything after the first of them is "encode".
SAMPLER_CLASSES = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
FACE_CROP_CLASS = "EthMumbaiFaceCrop"


@dataclass(frozen=True)
class Target:
    node: str
    input: str


@dataclass(frozen=True)
class ModelInput:
    """A node input that names a model file, and the ComfyUI models folder the file lives in."""

    node: str
    input: str
    folder: str  # ComfyUI model folder: checkpoints, loras, controlnet, ...


@dataclass(frozen=True)
class MissingModel:
    node: str
    input: str
    folder: str
    filename: str

    @property
    def message(self) -> str:
        return (f"model {self.filename!r} is missing from the {self.folder} folder; "
                f"fetch it with: python scripts/fetch_models.py --only {self.filename}")


def read_params(path: Path) -> dict:
    """A ``vN.params.json`` file, parsed (the one place that reads one)."""
    return json.loads(Path(path).read_text())


def model_inputs(spec: dict) -> list[ModelInput]:
    """The model-file inputs a params file lists (its ``models``), in file order."""
    return [ModelInput(str(m["node"]), m["input"], m["folder"]) for m in spec.get("models", [])]


@dataclass(frozen=True)
class Workflow:
    version: str  # "v1"
    semver: str  # "1.0.0"
    graph: dict
    spec: dict  # the params file

    @property
    def params(self) -> dict[str, dict]:
        return self.spec["params"]

    @property
    def output_node(self) -> str:
        return str(self.spec["output_node"])

    @cached_property
    def image_target(self) -> Target:
        return Target(str(self.spec["image_input"]["node"]), self.spec["image_input"]["input"])

    def targets(self, name: str) -> list[Target]:
        spec = self.params[name]
        entries = spec.get("targets") or [{"node": spec["node"], "input": spec["input"]}]
        return [Target(str(e["node"]), e["input"]) for e in entries]

    def model_inputs(self) -> list[ModelInput]:
        return model_inputs(self.spec)

    def model_files(self) -> dict[str, str]:
        """Model file name → its ComfyUI models folder, for every model the graph loads."""
        return {self.graph[m.node]["inputs"][m.input]: m.folder for m in self.model_inputs()}

    def missing_models(self, node_errors: dict) -> list[MissingModel]:
        """Every model file a ``/prompt`` rejection reports absent, in params-file order.

        ComfyUI checks every combo input of a prompt against the files it has, so a model file that is not on disk
        comes back from ``POST /prompt`` (HTTP 400) as a ``value_not_in_list`` error in ``node_errors``, e.g.
        ``{"5": {"errors": [{"type": "value_not_in_list", "extra_info": {"input_name": "ckpt_name",
        "received_value": "sd_xl_base_1.0.safetensors", ...}}], "class_type": "CheckpointLoaderSimple"}}``.
        Other errors, on any input, are not included.
        """
        missing = []
        for model in self.model_inputs():
            for error in (node_errors.get(model.node) or {}).get("errors", []):
                extra = error.get("extra_info") or {}
                if error.get("type") == "value_not_in_list" and extra.get("input_name") == model.input:
                    missing.append(MissingModel(model.node, model.input, model.folder,
                                                str(extra.get("received_value"))))
        return missing

    def defaults(self) -> dict:
        return {name: spec["default"] for name, spec in self.params.items() if "default" in spec}

    @cached_property
    def sampler_nodes(self) -> frozenset[str]:
        return frozenset(nid for nid, node in self.graph.items() if node.get("class_type") in SAMPLER_CLASSES)

    @cached_property
    def node_types(self) -> frozenset[str]:
        return frozenset(node["class_type"] for node in self.graph.values())

    def model_hashes(self) -> dict[str, str] | None:
        """Model file name → sha256 pinned in the models manifest (for the result cache's key).

        None if a model the graph loads has no pinned hash: without it a changed file would serve stale results.
        """
        pinned = {entry.filename: entry.sha256 for entry in load_manifest().models}
        hashes = {name: pinned.get(name) for name in self.model_files()}
        return hashes if all(hashes.values()) else None

    def build(self, image: str, params: dict, overrides: dict[str, dict] | None = None) -> dict:
        """The API prompt for one job: a copy of the graph with the image and every parameter set.

        ``overrides`` sets inputs of nodes by class type (worker-internal, e.g. the boot warm-up).
        """
        prompt = copy.deepcopy(self.graph)
        prompt[self.image_target.node]["inputs"][self.image_target.input] = image
        for name, value in params.items():
            for target in self.targets(name):
                prompt[target.node]["inputs"][target.input] = value
        for node in prompt.values():
            node["inputs"].update((overrides or {}).get(node["class_type"], {}))
        return prompt


def load_workflows(folder: Path | None = None) -> dict[str, Workflow]:
    """Every published version in ``<workflows>/ethmumbai_avatar``, oldest first."""
    folder = folder or paths.workflows_dir() / WORKFLOW_NAME
    found = []
    for path in folder.glob("v*.params.json"):
        match = _VERSION_FILE.match(path.name)
        if not match:
            continue
        spec = read_params(path)
        graph = json.loads((folder / f"{match.group(1)}.api.json").read_text())
        found.append((int(match.group(2)), Workflow(match.group(1), spec["version"], graph, spec)))
    if not found:
        raise FileNotFoundError(f"no workflow versions (v*.params.json) in {folder}")
    return {wf.version: wf for _, wf in sorted(found, key=lambda item: item[0])}


def latest(workflows: dict[str, Workflow]) -> Workflow:
    return list(workflows.values())[-1]

