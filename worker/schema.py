"""The typed job input, built from the workflow's params file, and its published JSON Schema.

Only named parameters are accepted: the public API never takes a graph (running arbitrary graphs
is arbitrary code execution through custom nodes). Unknown fields are rejected.

``python -m worker.schema`` regenerates ``worker/schema.json``; a test keeps the two equal.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from avatar_driver.contract import Presets, Workflow, latest, load_workflows
from avatar_driver.errors import WorkerError
from custom_nodes.ethmumbai.core.errors import INVALID_INPUT

SCHEMA_PATH = Path(__file__).with_name("schema.json")
MAX_TIMEOUT_S = 3600
_TYPES = {"integer": int, "number": float, "string": str, "boolean": bool}
# JSON-Schema keywords of a params-file entry → pydantic Field arguments.
_CONSTRAINTS = {
    "minimum": "ge", "maximum": "le", "exclusiveMinimum": "gt", "exclusiveMaximum": "lt",
    "multipleOf": "multiple_of", "minLength": "min_length", "maxLength": "max_length", "pattern": "pattern",
}


class _Base(BaseModel):
    # strict: "7" is not 7 and 2.5 is not an integer; a float field still takes an integer.
    model_config = ConfigDict(extra="forbid", strict=True)


@dataclass(frozen=True)
class JobRequest:
    workflow: Workflow
    image: str
    params: dict[str, Any]  # the params the job set itself (presets and defaults fill the rest: Workflow.prompt)
    return_mode: str
    user: str | None
    timeout: float | None
    style: str | None = None
    speed: str | None = None
    progress_token: str | None = None


def _param_field(name: str, spec: dict) -> tuple[Any, Any]:
    if spec["type"] not in _TYPES:
        raise ValueError(f"param {name!r}: unsupported type {spec['type']!r}")
    annotation = Literal[tuple(spec["enum"])] if "enum" in spec else _TYPES[spec["type"]]
    kwargs = {arg: spec[key] for key, arg in _CONSTRAINTS.items() if key in spec}
    return annotation, Field(spec.get("default"), description=spec.get("description"), **kwargs)


def job_model(workflow: Workflow, versions: list[str]) -> type[BaseModel]:
    """The pydantic model of a job for ``workflow`` (params from its file) accepting any of ``versions``."""
    fields: dict[str, Any] = {
        "image": (str, Field(description="The photo: base64 of a PNG, JPEG or WebP file, or a data: URI.")),
        "workflow_version": (Literal[tuple(versions)], Field(
            workflow.version, description="Published workflow version; default the latest.")),
        "return_": (Literal["base64", "url", "both"], Field(
            "base64", alias="return",
            description="base64: the image inline; url: a storage URL (needs storage on the endpoint); both.")),
        "user": (str, Field(
            None, pattern=r"^[A-Za-z0-9_.-]{1,128}$", description="Optional user id: storage prefix and history.")),
        "timeout": (float, Field(
            None, gt=0, le=MAX_TIMEOUT_S,
            description="Deadline for this job in seconds; the endpoint's JOB_TIMEOUT caps it.")),
        "progress_token": (str, Field(
            None, pattern=r"^[A-Za-z0-9_-]{16,128}$",
            description="Local worker API only: a per-job secret from the collector of progress updates, added to "
                        "the progress URL as &token=, so that it can tell this job's updates from forged ones.")),
    }
    for field_name, group in (("style", workflow.styles), ("speed", workflow.speeds)):
        if group is not None:
            fields[field_name] = _preset_field(field_name, group)
    for name, spec in workflow.params.items():
        if name in fields or name == "return":
            raise ValueError(f"param {name!r} clashes with a job field")
        fields[name] = _param_field(name, spec)
    return create_model(f"AvatarJob_{workflow.version}", __base__=_Base, **fields)


def _preset_field(name: str, group: Presets) -> tuple[Any, Any]:
    """``style``/``speed``: one of the params file's preset names; labels and descriptions travel in the schema
    (``x-presets``), where the page and the docs read them."""
    listing = "; ".join(f"{preset.name}: {preset.description}" for preset in group.presets.values())
    presets = {p.name: {"label": p.label, "description": p.description} for p in group.presets.values()}

    def publish(schema: dict) -> None:
        schema.pop("const", None)  # pydantic writes a one-value Literal as const: clients read one shape, enum
        schema.update({"enum": list(group.presets), "x-presets": presets})

    return Literal[tuple(group.presets)], Field(
        group.default, description=f"{name.capitalize()} preset (param values it sets; the job's own params win). "
                                   f"{listing}",
        json_schema_extra=publish)


def _describe(error: ValidationError) -> str:
    """Pydantic errors without their input values (the image is private)."""
    parts = []
    for item in error.errors(include_input=False, include_url=False):
        where = ".".join(str(p) for p in item["loc"]) or "input"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


class JobSchema:
    """Validates job inputs against the requested workflow version (one pydantic model per version)."""

    def __init__(self, workflows: dict[str, Workflow]):
        self.workflows = workflows
        self.models = {version: job_model(wf, list(workflows)) for version, wf in workflows.items()}
        for version, workflow in workflows.items():
            self._check_presets(version, workflow)

    def _check_presets(self, version: str, workflow: Workflow) -> None:
        """A preset's values obey the same types and bounds as a job's: a bad one stops the worker at boot."""
        for kind, group in (("styles", workflow.styles), ("speeds", workflow.speeds)):
            for preset in (group.presets.values() if group else ()):
                try:
                    self.models[version].model_validate({"image": "", **preset.params})
                except ValidationError as err:
                    raise ValueError(f"{version} {kind}.{preset.name}: {_describe(err)}") from None

    def parse(self, raw: Any) -> JobRequest:
        """The job's ``input`` as a JobRequest; INVALID_INPUT on any problem."""
        if not isinstance(raw, dict):
            raise WorkerError(INVALID_INPUT, f"job input must be a JSON object, got {type(raw).__name__}")
        requested = raw.get("workflow_version", latest(self.workflows).version)
        if not isinstance(requested, str) or requested not in self.workflows:
            raise WorkerError(INVALID_INPUT, f"workflow_version: must be one of {list(self.workflows)}")
        try:
            job = self.models[requested].model_validate(raw)
        except ValidationError as err:
            raise WorkerError(INVALID_INPUT, _describe(err)) from None
        workflow = self.workflows[requested]
        params = {name: getattr(job, name) for name in workflow.params if name in job.model_fields_set}
        return JobRequest(workflow, job.image, params, job.return_, job.user, job.timeout,
                          getattr(job, "style", None), getattr(job, "speed", None), job.progress_token)

    def json_schema(self) -> dict:
        schema = self.models[latest(self.workflows).version].model_json_schema(by_alias=True)
        return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def render(workflows: dict[str, Workflow] | None = None) -> str:
    """The text of worker/schema.json (the latest version's job schema)."""
    return json.dumps(JobSchema(workflows or load_workflows()).json_schema(), indent=2) + "\n"


if __name__ == "__main__":
    text = render()
    if sys.argv[1:] == ["--check"]:
        sys.exit(0 if SCHEMA_PATH.read_text() == text else "worker/schema.json is stale: run python -m worker.schema")
    SCHEMA_PATH.write_text(text)
    print(f"wrote {SCHEMA_PATH}")
