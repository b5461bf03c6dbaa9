"""Styles, speeds, optional models and graph edits: all data in the params file, applied by the workflow contract.

Artists add presets by editing JSON; these tests add some to a copy of the published workflow and prove no code has
to change, that precedence is defaults < style < speed < the job's own params, that an absent optional model is
bypassed with its warning, and that a graph edit prunes what the output no longer needs (run in real ComfyUI).
"""

from __future__ import annotations

import json
import shutil

import pytest

from avatar_driver import contract
from avatar_driver.contract import WORKFLOW_NAME, Workflow, load_workflows
from avatar_driver.paths import WORKFLOWS_DIR
from tools.comfy import run_prompt
from tools.images import astronaut, b64, encode
from worker.schema import JobSchema
from workflows.convert import convert, load_snapshot

PUBLISHED = load_workflows()["v1"]
PHOTO = b64(encode(astronaut()))
FAST = {"size": 256, "steps": 2}
LORA = PUBLISHED.style_lora
SAMPLER = next(iter(PUBLISHED.sampler_nodes))
# The node between the LoRAs and the sampler: what feeds its model input is the model the sampler runs.
GUIDANCE = next(nid for nid, node in PUBLISHED.graph.items() if node["class_type"] == "EthMumbaiGuidanceEnd")


def edited_copy(tmp_path, edit) -> dict[str, Workflow]:
    """The published workflow folder copied, its v1.params.json changed by ``edit(spec)``, and loaded."""
    folder = tmp_path / WORKFLOW_NAME
    shutil.copytree(WORKFLOWS_DIR / WORKFLOW_NAME, folder)
    params_path = folder / "v1.params.json"
    spec = json.loads(params_path.read_text())
    edit(spec)
    params_path.write_text(json.dumps(spec))
    return load_workflows(folder)


def sampler_input(prompt, name: str):
    return prompt.graph[SAMPLER]["inputs"][name]


def sampled_model(prompt):
    return prompt.graph[GUIDANCE]["inputs"]["model"]


def test_the_published_styles_are_the_ethmumbai_look_and_two_prompt_only_looks():
    styles = PUBLISHED.styles.presets
    assert PUBLISHED.styles.default == "ethmumbai" and styles["ethmumbai"].lora is not None
    prompt_only = [name for name, preset in styles.items() if preset.lora is None and not preset.graph]
    assert len(prompt_only) >= 2
    for name in prompt_only:
        prompt = PUBLISHED.prompt(PHOTO, FAST, style=name, installed={LORA.folder: {styles["ethmumbai"].lora}})
        assert LORA.node not in prompt.graph and prompt.warnings == ()  # never loaded, nothing to warn about
        assert prompt.params["prompt"] == styles[name].params["prompt"] != PUBLISHED.defaults()["prompt"]


def test_the_photo_style_runs_no_diffusion_and_loads_no_model():
    """Issue 20's composite-only style: the face crop goes straight into the composite, the rest is pruned."""
    prompt = PUBLISHED.prompt(PHOTO, FAST, style="photo", installed={})
    composite = next(node for node in prompt.graph.values() if node["class_type"] == "EthMumbaiBackgroundComposite")
    crop_id = next(nid for nid, node in prompt.graph.items() if node["class_type"] == "EthMumbaiFaceCrop")
    assert composite["inputs"]["foreground"] == [crop_id, 0]
    assert prompt.models == {} and prompt.warnings == ()
    assert SAMPLER not in prompt.graph
    assert {node["class_type"] for node in prompt.graph.values()} <= {
        "EthMumbaiLoadImageBase64", "EthMumbaiFaceCrop", "EthMumbaiPersonMask", "EthMumbaiBackgroundComposite",
        "EthMumbaiSaveImageBase64"}


def test_a_new_style_and_speed_need_no_code_change(tmp_path):
    def add_presets(spec):
        spec["styles"]["presets"]["pencil"] = {
            "label": "Pencil", "description": "graphite sketch",
            "params": {"prompt": "pencil sketch portrait", "cfg": 4.0, "steps": 12}}
        spec["speeds"]["presets"]["draft"] = {"label": "Draft", "description": "quick look", "params": {"steps": 3}}

    workflow = edited_copy(tmp_path, add_presets)["v1"]
    job = JobSchema({"v1": workflow}).parse({"image": PHOTO, "style": "pencil", "speed": "draft", "size": 256})
    prompt = workflow.prompt(job.image, job.params, job.style, job.speed)
    assert sampler_input(prompt, "cfg") == 4.0  # the style's
    assert sampler_input(prompt, "steps") == 3  # the speed beats the style
    assert prompt.params["prompt"] == "pencil sketch portrait" and LORA.node not in prompt.graph
    own = workflow.prompt(PHOTO, {"cfg": 9.0, "steps": 5}, "pencil", "draft")
    assert (sampler_input(own, "cfg"), sampler_input(own, "steps")) == (9.0, 5)  # the job's own values win
    default = workflow.prompt(PHOTO, {})
    assert sampler_input(default, "cfg") == PUBLISHED.defaults()["cfg"]


def test_an_absent_optional_model_is_bypassed_with_its_warning():
    lora_file = PUBLISHED.styles.get(None).lora
    present = PUBLISHED.prompt(PHOTO, FAST, installed={LORA.folder: {lora_file}})
    assert present.warnings == () and present.models[lora_file] == LORA.folder
    assert sampled_model(present) == [LORA.node, 0]

    absent = PUBLISHED.prompt(PHOTO, FAST, installed={LORA.folder: set()})
    assert [w.code for w in absent.warnings] == [LORA.warning] == ["STYLE_LORA_MISSING"]
    assert lora_file in absent.warnings[0].message
    assert LORA.node not in absent.graph and lora_file not in absent.models
    source = PUBLISHED.graph[LORA.node]["inputs"]
    assert sampled_model(absent) == source["model"]  # rewired to the LoRA's own inputs
    assert all(node["inputs"].get("clip") in (None, source["clip"]) for node in absent.graph.values())
    assert absent.fingerprint != present.fingerprint
    assert PUBLISHED.prompt("another photo", FAST, installed={LORA.folder: set()}).fingerprint == absent.fingerprint


def test_turbo_stacks_the_few_step_lora_after_the_style_lora_with_its_prescribed_sampler():
    turbo = PUBLISHED.prompt(PHOTO, {}, speed="turbo", installed={LORA.folder: {PUBLISHED.styles.get(None).lora}})
    lightning = sampled_model(turbo)[0]
    assert turbo.graph[lightning]["class_type"] == "LoraLoaderModelOnly"
    assert turbo.graph[lightning]["inputs"]["model"] == [LORA.node, 0]  # style LoRA, then the turbo LoRA
    lightning_file = turbo.graph[lightning]["inputs"]["lora_name"]
    assert turbo.models[lightning_file] == "loras"
    assert [sampler_input(turbo, k) for k in ("steps", "cfg", "sampler_name", "scheduler")] == [
        4, 1.0, "euler", "sgm_uniform"]
    # Without the style LoRA the turbo LoRA takes the checkpoint's model; it is never bypassed itself (a missing
    # file must fail the job with MODEL_MISSING, not render a 4-step image without it).
    bare = PUBLISHED.prompt(PHOTO, {}, speed="turbo", installed={LORA.folder: set()})
    assert bare.graph[lightning]["inputs"]["model"] == PUBLISHED.graph[LORA.node]["inputs"]["model"]
    assert lightning_file in bare.models and [w.code for w in bare.warnings] == ["STYLE_LORA_MISSING"]
    # Other speeds never load it, and a worker needs it only for turbo.
    for speed in ("quality", "fast"):
        prompt = PUBLISHED.prompt(PHOTO, {}, speed=speed)
        assert lightning not in prompt.graph and lightning_file not in prompt.models
    assert lightning_file in PUBLISHED.model_files() and lightning_file not in PUBLISHED.required_models()


def test_the_published_graph_keeps_what_only_a_preset_wires_in():
    """The converter prunes the editor graph to what the output needs, plus the nodes presets link in."""
    turbo_edit = PUBLISHED.speeds.get("turbo").graph[0]
    assert turbo_edit.source in PUBLISHED.graph
    assert turbo_edit.source in contract.graph_roots(PUBLISHED.spec)
    assert turbo_edit.source not in PUBLISHED.prompt(PHOTO, {}).graph  # pruned from the default job


def test_guidance_end_sets_its_node_and_changes_the_prompt():
    early = PUBLISHED.prompt(PHOTO, {"cfg_end": 0.5})
    assert early.graph[GUIDANCE]["inputs"]["end_percent"] == 0.5
    assert early.fingerprint != PUBLISHED.prompt(PHOTO, {}).fingerprint


def composite_only(spec):
    """Issue 20's kind of preset: the face crop straight into the composite, no diffusion at all."""
    spec["styles"]["presets"]["photo"] = {
        "label": "Photo", "description": "the crop on the branded background",
        "params": {}, "graph": [{"node": "15", "input": "foreground", "link": ["2", 0]}]}


def test_a_graph_edit_prunes_every_node_the_output_no_longer_needs(tmp_path):
    workflow = edited_copy(tmp_path, composite_only)["v1"]
    prompt = workflow.prompt(PHOTO, FAST, style="photo", installed={LORA.folder: set()})
    assert prompt.graph["15"]["inputs"]["foreground"] == ["2", 0]
    assert {node["class_type"] for node in prompt.graph.values()} == {
        "EthMumbaiLoadImageBase64", "EthMumbaiFaceCrop", "EthMumbaiPersonMask", "EthMumbaiBackgroundComposite",
        "EthMumbaiSaveImageBase64"}
    assert prompt.models == {} and prompt.warnings == ()  # no model is loaded, so none is missed


def test_the_pruned_graph_runs_in_comfyui_without_any_model(tmp_path, comfy_server):
    workflow = edited_copy(tmp_path, composite_only)["v1"]
    entry = run_prompt(comfy_server.url, workflow.prompt(PHOTO, FAST, style="photo").graph)
    assert entry.get("status", {}).get("status_str") == "success", entry
    (image,) = entry["outputs"][workflow.output_node]["ethmumbai_images"]
    assert (image["width"], image["height"]) == (FAST["size"], FAST["size"])


def test_a_converted_graph_runs_without_the_lora(tiny_comfy, tiny_models):
    """What ``python -m workflows.convert`` builds from v1.ui.json, with the LoRA absent: bypassed, it renders."""
    graph = convert(WORKFLOWS_DIR / WORKFLOW_NAME / "v1.ui.json", load_snapshot())
    workflow = Workflow("v1", PUBLISHED.semver, graph, PUBLISHED.spec)
    prompt = workflow.prompt(PHOTO, FAST, installed={LORA.folder: set()})
    for model in workflow.model_inputs():
        if model.node in prompt.graph:
            prompt.graph[model.node]["inputs"][model.input] = tiny_models["files"][model.folder]
    entry = run_prompt(tiny_comfy.url, prompt.graph)
    assert entry.get("status", {}).get("status_str") == "success", entry
    assert [w.code for w in prompt.warnings] == ["STYLE_LORA_MISSING"]


@pytest.mark.parametrize("edit, complaint", [
    (lambda s: s["styles"]["presets"]["comic"]["params"].update(colour="red"), "unknown params"),
    (lambda s: s["styles"].update(default="baroque"), "default"),
    (lambda s: s["speeds"]["presets"]["quality"].update(lora="x.safetensors"), "'lora'"),
    (lambda s: s["styles"]["presets"]["comic"].update(graph=[{"node": "99", "input": "x", "link": ["2", 0]}]),
     "not in the graph"),
    (lambda s: s["models"][1].pop("bypass"), "bypass"),
    (lambda s: s["models"][1].update(warning="SOMETHING"), "warning code"),
])
def test_a_params_file_that_does_not_fit_is_refused_naming_the_problem(tmp_path, edit, complaint):
    with pytest.raises(ValueError, match=complaint):
        edited_copy(tmp_path, edit)


def test_a_preset_value_out_of_bounds_stops_the_schema(tmp_path):
    workflows = edited_copy(tmp_path, lambda s: s["styles"]["presets"]["comic"]["params"].update(cfg=99.0))
    with pytest.raises(ValueError, match="styles.comic: cfg"):
        JobSchema(workflows)
