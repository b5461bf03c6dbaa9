"""models_manifest.yaml: its schema, and that it covers every model the workflows and nodes ask for."""

from __future__ import annotations

import copy

import pytest
import yaml
from pydantic import ValidationError

from avatar_driver import manifest, paths
from avatar_driver.contract import load_workflows
from custom_nodes.ethmumbai.core.lineart import LEARNED
from scripts import fetch_models

RAW = yaml.safe_load(paths.models_manifest().read_text())
MANIFEST = manifest.load_manifest()


def test_the_real_manifest_passes_the_schema_and_pins_every_required_model():
    required = [m for m in MANIFEST.models if m.required]
    assert {m.folder for m in required} >= {"checkpoints", "controlnet"}
    for model in required:
        assert model.pinned and model.source.hf and model.source.hf.revision


def test_only_explicit_todos_are_unpinned():
    unpinned = [m for m in MANIFEST.models if not m.pinned]
    assert [m.name for m in unpinned] == ["ethmumbai_lora", "sdxl_lightning_4step_lora"], "a new unpinned entry needs a look"
    assert all(m.todo and not m.required for m in unpinned)


def _mutated(index: int, **changes) -> dict:
    raw = copy.deepcopy(RAW)
    raw["models"][index].update(changes)
    return raw


SDXL = 0
BAD_MANIFESTS = {
    "unpinned revision": _mutated(SDXL, source={"hf": {**RAW["models"][SDXL]["source"]["hf"], "revision": "main"}}),
    "hf and url": _mutated(SDXL, source={**RAW["models"][SDXL]["source"], "url": "https://example.org/x"}),
    "required without sha256": _mutated(SDXL, sha256=None, todo="unknown"),
    "null sha256 without todo": _mutated(SDXL, sha256=None, required=False),
    "short sha256": _mutated(SDXL, sha256="abc"),
    "unknown folder": _mutated(SDXL, folder="unet"),
    "path in filename": _mutated(SDXL, filename="../x.safetensors"),
    "unknown field": _mutated(SDXL, sha1="x"),
    "duplicate name": {**RAW, "models": RAW["models"] + [RAW["models"][SDXL]]},
    "group named like an entry": _mutated(SDXL, group="annotator_hed"),
}


@pytest.mark.parametrize("raw", BAD_MANIFESTS.values(), ids=BAD_MANIFESTS.keys())
def test_schema_rejects(raw):
    with pytest.raises(ValidationError):
        manifest.Manifest.model_validate(raw)


@pytest.mark.parametrize("method", sorted(LEARNED))
def test_each_learned_lineart_method_fetch_name_fetches_exactly_its_weights(method):
    spec = LEARNED[method]
    entries = fetch_models.select(MANIFEST, spec.fetch_name)
    assert sorted(m.filename for m in entries) == sorted(spec.files)
    assert {m.folder for m in entries} == {"annotators"}


def test_every_model_a_workflow_loads_is_in_the_manifest_and_marked_used_by_it():
    workflows = load_workflows()
    by_path = {m.relpath: m for m in MANIFEST.models}
    for version, workflow in workflows.items():
        loaded = {f"{folder}/{name}" for name, folder in workflow.model_files().items()}
        missing = sorted(loaded - by_path.keys())
        assert not missing, f"{version} loads models the manifest lacks: {missing}"
        for path in loaded:
            model = by_path[path]
            assert version in model.used_by, f"{path}: used_by should list {version}"
            assert model.required or model.todo, f"{path} is loaded by {version}, so it must be required"
        claimed = {m.relpath for m in MANIFEST.models if version in m.used_by}
        assert claimed <= loaded, f"manifest says {version} uses {sorted(claimed - loaded)}, but it does not"
