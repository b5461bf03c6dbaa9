"""The workflow contract: the published avatar workflow versions (API graph + params file), turning a job into a
prompt, and reading ComfyUI's answers in the contract's terms.

Each version is a pair ``<dir>/v<N>.api.json`` + ``<dir>/v<N>.params.json`` (see docs/ARCHITECTURE.md).
The params file is the only place that knows node ids; this module reads it and nothing else does: the worker,
``workflows.convert``, training and benchmarks ask it (model inputs, missing models, parameters, node ids).

A job's prompt (``Workflow.prompt``): param defaults < style preset < speed preset < the job's own params; the
style's LoRA goes into the style-LoRA slot (the optional model in the ``loras`` folder); the presets' graph edits
rewire inputs; an optional model that is not installed (or a LoRA slot the style leaves empty) is bypassed; then
every node the output no longer reaches is pruned, so no model is loaded or validated for it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from avatar_driver import paths
from avatar_driver.errors import WARNINGS
from avatar_driver.manifest import fetch_command, load_manifest

WORKFLOW_NAME = "ethmumbai_avatar"
_VERSION_FILE = re.compile(r"^(v(\d+))\.params\.json$")
# Class types whose execution time is "sampling"; anything after the first of them is "encode".
SAMPLER_CLASSES = frozenset({"KSampler", "KSamplerAdvanced", "SamplerCustom", "SamplerCustomAdvanced"})
FACE_CROP_CLASS = "EthMumbaiFaceCrop"
# The face crop's UI output (the pack's nodes/face_crop.py UI_KEY): [{faces_found, face_index, face_box, angle,
# warnings}]; the node is an output node, so ComfyUI reports it on every run, cached or not.
FACE_REPORT_KEY = "ethmumbai_face"


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
    optional: bool = False  # absent file: bypass the node (``bypass``) instead of failing with MODEL_MISSING
    warning: str | None = None  # the warning code a job gets when it ran without this model
    bypass: Mapping[int, str] = field(default_factory=dict)  # output slot -> the input whose source replaces it


@dataclass(frozen=True)
class GraphEdit:
    """Link ``node.input`` to output ``slot`` of node ``source`` (a preset's ``graph`` entry)."""

    node: str
    input: str
    source: str
    slot: int


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    description: str
    params: Mapping
    lora: str | None = None  # style presets: the file for the style-LoRA slot; None runs without a LoRA
    graph: tuple[GraphEdit, ...] = ()


@dataclass(frozen=True)
class Presets:
    """A params file's ``styles`` or ``speeds``: named presets and the one a job gets by default."""

    default: str
    presets: Mapping[str, Preset]

    def get(self, name: str | None) -> Preset:
        return self.presets[name or self.default]

    def others(self) -> list[str]:
        """The preset names other than the default, in file order."""
        return [name for name in self.presets if name != self.default]


@dataclass(frozen=True)
class JobWarning:
    code: str
    message: str
    details: Mapping = field(default_factory=dict)  # more fields for the caller, e.g. LOW_RESOLUTION_FACE's face_px

    def as_output(self) -> dict:
        """The job output's ``warnings`` entry: ``{"code", "message", ...details}``."""
        return {**self.details, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class FaceReport:
    """What the face crop found: the faces it could choose from, the one used ([x, y, w, h] in the photo's pixels;
    None for a centred crop without a face) and its warnings."""

    faces_found: int
    face_box: list[int] | None
    warnings: tuple[JobWarning, ...] = ()

    @classmethod
    def from_ui(cls, info: Mapping) -> FaceReport:
        warnings = tuple(JobWarning(w["code"], w["message"], {k: v for k, v in w.items() if k not in ("code", "message")})
                         for w in info.get("warnings", []))
        return cls(int(info["faces_found"]), info.get("face_box"), warnings)

    def as_output(self) -> dict:
        """The job output's face fields (and what a result cache entry keeps; ``from_ui`` reads it back)."""
        return {"faces_found": self.faces_found, "face_box": self.face_box,
                "warnings": [w.as_output() for w in self.warnings]}


@dataclass(frozen=True)
class Prompt:
    """One job's API prompt and what went into it."""

    graph: dict
    params: dict  # every param's value after defaults, presets and the job's own values
    models: dict[str, str]  # model file -> folder, for the models this prompt loads (after bypass and pruning)
    warnings: tuple[JobWarning, ...] = ()
    fingerprint: str = ""  # sha256 of the graph without the photo: equal for prompts that differ only in the photo


@dataclass(frozen=True)
class MissingModel:
    node: str
    input: str
    folder: str
    filename: str

    @property
    def message(self) -> str:
        return (f"model {self.filename!r} is missing from the {self.folder} folder; "
                f"fetch it with: {fetch_command(self.filename)}")


def read_params(path: Path) -> dict:
    """A ``vN.params.json`` file, parsed (the one place that reads one)."""
    return json.loads(Path(path).read_text())


def model_inputs(spec: dict) -> list[ModelInput]:
    """The model-file inputs a params file lists (its ``models``), in file order."""
    return [ModelInput(str(m["node"]), m["input"], m["folder"], bool(m.get("optional", False)), m.get("warning"),
                       {int(slot): name for slot, name in m.get("bypass", {}).items()})
            for m in spec.get("models", [])]


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
        """Model file name → its ComfyUI models folder, for every model the graph can load (a preset's too)."""
        return {self.graph[m.node]["inputs"][m.input]: m.folder for m in self.model_inputs()}

    def _optional_files(self) -> set[str]:
        return {self.graph[m.node]["inputs"][m.input] for m in self.model_inputs() if m.optional}

    def required_models(self) -> dict[str, str]:
        """The models a job with the default style and speed cannot run without (a worker refuses to report
        ready without them): what its prompt loads, less the optional ones. A model only a preset loads (the
        turbo speed's LoRA) is not among them: a job that picks the preset without it fails with MODEL_MISSING."""
        optional = self._optional_files()
        return {name: folder for name, folder in self.prompt("", {}).models.items() if name not in optional}

    def preset_models(self) -> dict[str, str]:
        """The models only a preset loads (the turbo speed's LoRA): neither required nor optional. A worker
        serves without them; the jobs that pick the preset fail with MODEL_MISSING."""
        left_out = set(self.required_models()) | self._optional_files()
        return {name: folder for name, folder in self.model_files().items() if name not in left_out}

    @cached_property
    def style_lora(self) -> ModelInput | None:
        """The slot a style's ``lora`` fills: the optional model in the ``loras`` folder (at most one)."""
        return next((m for m in self.model_inputs() if m.optional and m.folder == "loras"), None)

    @cached_property
    def styles(self) -> Presets | None:
        return _presets(self.spec.get("styles"))

    @cached_property
    def speeds(self) -> Presets | None:
        return _presets(self.spec.get("speeds"))

    def optional_folders(self) -> set[str]:
        """The model folders whose contents decide whether an optional model is bypassed."""
        return {m.folder for m in self.model_inputs() if m.optional}

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

    def face_report(self, reports: Mapping[str, dict]) -> FaceReport | None:
        """The face crop's report among a run's UI outputs by node id (``Outcome.reports``); None without one."""
        for node_id, node in self.graph.items():
            if node.get("class_type") == FACE_CROP_CLASS and (info := reports.get(node_id, {}).get(FACE_REPORT_KEY)):
                return FaceReport.from_ui(info[0])
        return None

    @cached_property
    def node_types(self) -> frozenset[str]:
        return frozenset(node["class_type"] for node in self.graph.values())

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

    def _chosen(self, style: str | None, speed: str | None) -> list[Preset]:
        return [group.get(name) for group, name in ((self.styles, style), (self.speeds, speed)) if group]

    def resolve(self, params: Mapping, style: str | None = None, speed: str | None = None) -> dict:
        """Every param's value: defaults < style preset < speed preset < ``params`` (the job's own)."""
        resolved = self.defaults()
        for preset in self._chosen(style, speed):
            resolved.update(preset.params)
        return {**resolved, **params}

    def prompt(self, image: str, params: Mapping, style: str | None = None, speed: str | None = None,
               installed: Mapping[str, set[str]] | None = None, overrides: dict[str, dict] | None = None) -> Prompt:
        """The prompt for one job. ``params``: only the values the job set itself; ``style``/``speed``: preset
        names (None: the defaults); ``installed``: model folder -> the files ComfyUI has, for the optional models'
        folders (None: assume every model is there)."""
        chosen = self._chosen(style, speed)
        resolved = self.resolve(params, style, speed)
        graph = self.build(image, resolved, overrides)
        for preset in chosen:
            for edit in preset.graph:
                graph[edit.node]["inputs"][edit.input] = [edit.source, edit.slot]
        _prune(graph, self.output_node)  # a model the edits cut off is neither loaded nor missed
        warnings = []
        for model in (m for m in self.model_inputs() if m.optional and m.node in graph):
            if model == self.style_lora and self.styles is not None:
                if chosen[0].lora is None:  # a prompt-only style
                    _bypass(graph, model)
                    continue
                graph[model.node]["inputs"][model.input] = chosen[0].lora
            filename = graph[model.node]["inputs"][model.input]
            if installed is not None and filename not in installed.get(model.folder, set()):
                _bypass(graph, model)
                warnings.append(JobWarning(model.warning, f"{filename!r} is not in the {model.folder} models folder "
                                                          "of this worker: rendered without it"))
        _prune(graph, self.output_node)
        used = {graph[m.node]["inputs"][m.input]: m.folder for m in self.model_inputs() if m.node in graph}
        return Prompt(graph, resolved, used, tuple(warnings), self._fingerprint(graph))

    def _fingerprint(self, graph: dict) -> str:
        without_photo = copy.deepcopy(graph)
        without_photo[self.image_target.node]["inputs"][self.image_target.input] = ""
        return hashlib.sha256(json.dumps(without_photo, sort_keys=True).encode()).hexdigest()


def graph_roots(spec: dict) -> list[str]:
    """The nodes a published graph is built to reach: the output node, and the source of every preset's graph
    edit (a node only a preset wires in, like the turbo LoRA, has no consumer in the graph itself)."""
    groups = [group for group in (_presets(spec.get("styles")), _presets(spec.get("speeds"))) if group]
    sources = [edit.source for group in groups for preset in group.presets.values() for edit in preset.graph]
    return list(dict.fromkeys([str(spec["output_node"]), *sources]))


def pinned_hashes() -> dict[str, str | None]:
    """Model file name → the sha256 pinned for it in the models manifest (None: not pinned yet)."""
    return {entry.filename: entry.sha256 for entry in load_manifest().models}


def _presets(section: dict | None) -> Presets | None:
    if section is None:
        return None
    presets = {
        name: Preset(name, entry.get("label", name), entry.get("description", ""), entry.get("params", {}),
                     entry.get("lora"),
                     tuple(GraphEdit(str(e["node"]), e["input"], str(e["link"][0]), int(e["link"][1]))
                           for e in entry.get("graph", [])))
        for name, entry in section["presets"].items()
    }
    return Presets(section["default"], presets)


def _bypass(graph: dict, model: ModelInput) -> None:
    """Drop the model's node, feeding each consumer of a bypassed output slot from the node's own input source."""
    node = graph.pop(model.node)
    for consumer in graph.values():
        for name, value in consumer["inputs"].items():
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == model.node:
                consumer["inputs"][name] = node["inputs"][model.bypass[int(value[1])]]


def _prune(graph: dict, output_node: str) -> None:
    """Remove every node the output node does not (transitively) take an input from."""
    reached, todo = set(), [output_node]
    while todo:
        node_id = todo.pop()
        if node_id in reached:
            continue
        reached.add(node_id)
        todo.extend(str(value[0]) for value in graph[node_id]["inputs"].values()
                    if isinstance(value, list) and len(value) == 2)
    for node_id in set(graph) - reached:
        del graph[node_id]


def _check(workflow: Workflow, path: Path) -> None:
    """Refuse a params file whose models, presets or graph edits do not fit its graph, naming the problem (an artist
    edits presets by hand: a typo must fail at boot and in the tests, not in the first job that picks the preset)."""
    def fail(what: str) -> None:
        raise ValueError(f"{path.name}: {what}")

    graph = workflow.graph
    for model in workflow.model_inputs():
        if model.node not in graph or model.input not in graph[model.node]["inputs"]:
            fail(f"model input {model.node}.{model.input} is not in the graph")
        if model.optional:
            if model.warning not in WARNINGS:
                fail(f"optional model {model.node} needs a warning code, one of {sorted(WARNINGS)}")
            consumed = {v[1] for n in graph.values() for v in n["inputs"].values()
                        if isinstance(v, list) and len(v) == 2 and str(v[0]) == model.node}
            inputs = graph[model.node]["inputs"]
            linked = all(isinstance(inputs.get(name), list) for name in model.bypass.values())
            if not consumed <= set(model.bypass) or not linked:
                fail(f"optional model {model.node}: 'bypass' must map each used output slot {sorted(consumed)} to a "
                     "linked input of the node")
    if sum(m.optional and m.folder == "loras" for m in workflow.model_inputs()) > 1:
        fail("at most one optional model in the loras folder (the style-LoRA slot)")
    for kind, group in (("styles", workflow.styles), ("speeds", workflow.speeds)):
        if group is None:
            continue
        if group.default not in group.presets:
            fail(f"{kind}: the default {group.default!r} is not one of the presets")
        for preset in group.presets.values():
            where = f"{kind}.{preset.name}"
            if unknown := set(preset.params) - set(workflow.params):
                fail(f"{where}: unknown params {sorted(unknown)}")
            if preset.lora is not None and (kind != "styles" or workflow.style_lora is None):
                fail(f"{where}: 'lora' needs a style preset and an optional model in the loras folder")
            for edit in preset.graph:
                if edit.node not in graph or edit.source not in graph:
                    fail(f"{where}: graph edit {edit} names a node that is not in the graph")


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
        workflow = Workflow(match.group(1), spec["version"], graph, spec)
        _check(workflow, path)
        found.append((int(match.group(2)), workflow))
    if not found:
        raise FileNotFoundError(f"no workflow versions (v*.params.json) in {folder}")
    return {wf.version: wf for _, wf in sorted(found, key=lambda item: item[0])}


def latest(workflows: dict[str, Workflow]) -> Workflow:
    return list(workflows.values())[-1]

