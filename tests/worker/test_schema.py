"""The typed job input: built from the params file, strict, and published as worker/schema.json."""

from __future__ import annotations

import json

import pytest

from avatar_driver.contract import load_workflows
from avatar_driver.errors import WorkerError
from worker.schema import SCHEMA_PATH, JobSchema, render

WORKFLOWS = load_workflows()
SCHEMA = JobSchema(WORKFLOWS)
LATEST = list(WORKFLOWS.values())[-1]


def _refused(raw) -> str:
    with pytest.raises(WorkerError) as caught:
        SCHEMA.parse(raw)
    assert caught.value.code == "INVALID_INPUT"
    return caught.value.message


def test_committed_schema_json_is_the_generated_one():
    assert SCHEMA_PATH.read_text() == render(), "worker/schema.json is stale: run python -m worker.schema"


def test_schema_has_every_param_of_the_params_file_with_its_default():
    properties = json.loads(SCHEMA_PATH.read_text())["properties"]
    for name, spec in LATEST.params.items():
        assert name in properties, name
        assert properties[name].get("default") == spec.get("default"), name
    assert json.loads(SCHEMA_PATH.read_text())["additionalProperties"] is False


def test_defaults_fill_every_param_and_explicit_values_win():
    job = SCHEMA.parse({"image": "x"})
    assert job.params == LATEST.defaults() and job.workflow is LATEST
    assert job.return_mode == "base64" and job.user is None and job.timeout is None
    name, spec = next((n, s) for n, s in LATEST.params.items() if s["type"] == "integer")
    value = spec.get("minimum", 0)
    assert SCHEMA.parse({"image": "x", name: value}).params[name] == value


def test_unknown_fields_and_raw_graphs_are_refused():
    assert "colour" in _refused({"image": "x", "colour": "red"})
    assert "workflow" in _refused({"image": "x", "workflow": {"1": {"class_type": "SaveImage", "inputs": {}}}})


def test_types_are_strict_and_bounds_hold():
    name, spec = next((n, s) for n, s in LATEST.params.items() if s["type"] == "integer" and "maximum" in s)
    assert name in _refused({"image": "x", name: str(spec["default"])})
    assert name in _refused({"image": "x", name: spec["maximum"] + 1})
    assert name in _refused({"image": "x", name: 1.5})
    enum_name, enum_spec = next((n, s) for n, s in LATEST.params.items() if "enum" in s)
    assert enum_name in _refused({"image": "x", enum_name: "not-" + enum_spec["enum"][0]})
    assert "timeout" in _refused({"image": "x", "timeout": 0})
    assert "return" in _refused({"image": "x", "return": "email"})
    assert "user" in _refused({"image": "x", "user": "../etc"})


def test_workflow_version_and_shape():
    assert SCHEMA.parse({"image": "x", "workflow_version": LATEST.version}).workflow is LATEST
    assert "workflow_version" in _refused({"image": "x", "workflow_version": "v999"})
    assert "JSON object" in _refused(["image"])
    assert "image" in _refused({})


def test_messages_never_echo_the_input():
    photo = "iVBORw0KGgo" + "A" * 500
    message = _refused({"image": 123, "colour": photo})
    assert photo[:30] not in message
