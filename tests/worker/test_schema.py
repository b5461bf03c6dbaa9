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


def test_a_job_carries_only_the_params_it_set_and_the_default_presets():
    job = SCHEMA.parse({"image": "x"})
    assert job.params == {} and job.workflow is LATEST
    assert (job.style, job.speed) == (LATEST.styles.default, LATEST.speeds.default)
    assert job.return_mode == "base64" and job.user is None and job.timeout is None
    name, spec = next((n, s) for n, s in LATEST.params.items() if s["type"] == "integer")
    value = spec.get("minimum", 0)
    assert SCHEMA.parse({"image": "x", name: value}).params == {name: value}
    # Sending a default is still an explicit choice: it must beat a style preset's value.
    assert SCHEMA.parse({"image": "x", name: spec["default"]}).params == {name: spec["default"]}


def test_an_unknown_style_or_speed_is_refused_listing_the_known_ones():
    message = _refused({"image": "x", "style": "baroque"})
    assert "style" in message and all(f"'{name}'" in message for name in LATEST.styles.presets)
    message = _refused({"image": "x", "speed": "ludicrous"})
    assert "speed" in message and all(f"'{name}'" in message for name in LATEST.speeds.presets)
    for name in LATEST.styles.presets:
        assert SCHEMA.parse({"image": "x", "style": name}).style == name


def test_the_schema_lists_the_presets_with_their_labels():
    properties = json.loads(SCHEMA_PATH.read_text())["properties"]
    for field, group in (("style", LATEST.styles), ("speed", LATEST.speeds)):
        assert properties[field]["enum"] == list(group.presets) and properties[field]["default"] == group.default
        assert {name: p["label"] for name, p in properties[field]["x-presets"].items()} == {
            name: preset.label for name, preset in group.presets.items()}


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
