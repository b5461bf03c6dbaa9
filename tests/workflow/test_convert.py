"""The UI workflow is the source; the API workflow, converted against the committed /object_info snapshot, must
equal it; the snapshot must equal what ComfyUI 0.3.75 with the pack says now; the params file must fit the graph."""

from __future__ import annotations

import json

import pytest

from avatar_driver.contract import FACE_CROP_CLASS
from avatar_driver.paths import WORKFLOWS_DIR
from workflows.convert import (
    ConvertError,
    convert,
    fetch_snapshot,
    load_snapshot,
    trim_object_info,
    ui_to_api,
    widget_slots,
    worker_graph,
)

SNAPSHOT = load_snapshot()
UI_FILES = sorted(WORKFLOWS_DIR.glob("*/v*.ui.json"))
JSON_TYPES = {"integer": {"INT"}, "number": {"FLOAT"}, "string": {"STRING", "COMBO"}, "boolean": {"BOOLEAN"}}


def sibling(ui_path, kind: str):
    return ui_path.with_name(ui_path.name.replace(".ui.", f".{kind}."))


def read(path) -> dict:
    return json.loads(path.read_text())


def spec_of(class_type: str, input_name: str) -> list:
    inputs = SNAPSHOT[class_type]["input"]
    return {**inputs.get("required", {}), **inputs.get("optional", {})}[input_name]


def test_there_is_a_published_workflow():
    assert [p.name for p in UI_FILES if p.parent.name == "ethmumbai_avatar"][:1] == ["v1.ui.json"]


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_api_json_is_the_converted_ui_json(ui_path):
    assert convert(ui_path, SNAPSHOT) == read(sibling(ui_path, "api")), (
        "the API workflow is stale: run `python -m workflows.convert` and commit both files")


def test_snapshot_matches_the_running_comfyui(tiny_comfy):
    assert fetch_snapshot(tiny_comfy.url) == SNAPSHOT, (
        "a node the workflows use changed its interface: run `python -m workflows.convert snapshot`, review the "
        "diff (reordered or inserted widget inputs break published workflows) and reconvert")


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_params_file_fits_the_graph(ui_path):
    graph, params = read(sibling(ui_path, "api")), read(sibling(ui_path, "params"))
    version = ui_path.name.split(".")[0]
    assert params["version"].split(".")[0] == version[1:], "semver major must be the file's vN"

    def target_spec(target: dict) -> tuple[list, object]:
        node = graph[str(target["node"])]
        return spec_of(node["class_type"], target["input"]), node["inputs"].get(target["input"])

    assert target_spec(params["image_input"])[0][0] == "STRING"
    assert SNAPSHOT[graph[str(params["output_node"])]["class_type"]]["output_node"]
    for model in params["models"]:
        spec, value = target_spec(model)
        assert isinstance(value, str) and value.endswith(".safetensors"), model
        assert spec[0] == [] or spec[1].get("options") == [], f"{model} is not a model-file list"
    for name, param in params["params"].items():
        for target in param.get("targets") or [{"node": param["node"], "input": param["input"]}]:
            spec, value = target_spec(target)
            kind = "COMBO" if isinstance(spec[0], list) else spec[0]
            options = spec[1] if len(spec) > 1 else {}
            assert kind in JSON_TYPES[param["type"]], f"{name} -> {target}: {kind} is not {param['type']}"
            assert value == param["default"], f"{name}: the graph has {value!r}, the params file {param['default']!r}"
            if kind == "COMBO":
                assert param["enum"] == options.get("options", spec[0]), f"{name}: enum differs from the node's"
            if "minimum" in param and "min" in options:
                assert param["minimum"] >= options["min"], f"{name}: minimum below the node's"
            if "maximum" in param and "max" in options:
                assert param["maximum"] <= options["max"], f"{name}: maximum above the node's"


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_the_editor_has_previews_and_an_upload_the_worker_graph_has_neither(ui_path):
    editor, worker = ui_to_api(read(ui_path), SNAPSHOT), read(sibling(ui_path, "api"))
    output_node = str(read(sibling(ui_path, "params"))["output_node"])
    previews = {"EthMumbaiPreviewFaceCrop", "MaskPreview", "PreviewImage"}
    assert previews <= {node["class_type"] for node in editor.values()}
    assert "EthMumbaiLoadImage" in {node["class_type"] for node in editor.values()}
    # The output nodes the worker runs are the params file's and the face crop (one for its report, see the pack
    # README): nothing is previewed or saved to disk.
    assert [i for i, node in worker.items() if SNAPSHOT[node["class_type"]]["output_node"]
            and node["class_type"] != FACE_CROP_CLASS] == [output_node]
    assert "EthMumbaiLoadImage" not in {node["class_type"] for node in worker.values()}
    # Every other node is the editor's, unchanged.
    assert {i: n for i, n in editor.items() if i in worker and n["class_type"] != "EthMumbaiLoadImage"} == {
        i: n for i, n in worker.items() if n["class_type"] != "EthMumbaiLoadImageBase64"}


# --- the converter on small hand-made graphs ------------------------------------------------------------------

def ui_node(node_id: int, class_type: str, widgets=(), inputs=(), outputs=(), mode: int = 0) -> dict:
    return {"id": node_id, "type": class_type, "mode": mode, "widgets_values": list(widgets),
            "inputs": [dict(slot) for slot in inputs], "outputs": [dict(slot) for slot in outputs]}


def test_seed_control_value_is_dropped_and_widgets_are_named_in_order():
    ksampler = ui_node(1, "KSampler", [7, "randomize", 5, 6.5, "euler", "normal", 0.5])
    assert widget_slots(SNAPSHOT["KSampler"]) == ["seed", None, "steps", "cfg", "sampler_name", "scheduler", "denoise"]
    assert ui_to_api({"nodes": [ksampler], "links": []}, SNAPSHOT)["1"]["inputs"] == {
        "seed": 7, "steps": 5, "cfg": 6.5, "sampler_name": "euler", "scheduler": "normal", "denoise": 0.5}


def test_reroutes_primitives_bypass_mute_and_notes():
    image_out = {"name": "image", "type": "IMAGE"}
    nodes = [
        ui_node(1, "EthMumbaiLoadImageBase64", ["abc", 10, 20], outputs=[image_out]),
        ui_node(2, "Reroute", inputs=[{"name": "", "type": "*", "link": 1}], outputs=[{"name": "", "type": "IMAGE"}]),
        # bypassed: its IMAGE output passes its IMAGE input through
        ui_node(3, "EthMumbaiLineart", ["standard", 512], mode=4, inputs=[{"name": "image", "type": "IMAGE", "link": 2}],
                outputs=[{"name": "lineart", "type": "IMAGE"}]),
        ui_node(4, "EthMumbaiFaceCrop", [256, 0.6, "auto", "largest", "fail", 0.5], inputs=[
            {"name": "image", "type": "IMAGE", "link": 3},
            {"name": "output_size", "type": "INT", "widget": {"name": "output_size"}, "link": 4}]),
        ui_node(5, "PrimitiveNode", [384], outputs=[{"name": "INT", "type": "INT"}]),
        ui_node(6, "EthMumbaiPersonMask", [0.5, 8], mode=2, inputs=[{"name": "image", "type": "IMAGE", "link": 5}]),
        ui_node(7, "Note", ["not a node ComfyUI runs"]),
    ]
    links = [[1, 1, 0, 2, 0, "IMAGE"], [2, 2, 0, 3, 0, "IMAGE"], [3, 3, 0, 4, 0, "IMAGE"], [4, 5, 0, 4, 1, "INT"],
             [5, 1, 0, 6, 0, "IMAGE"]]
    api = ui_to_api({"nodes": nodes, "links": links}, SNAPSHOT)
    assert sorted(api) == ["1", "4"]
    # Saved before the optional face_index widget was appended: it converts, and face_index keeps its default.
    assert api["4"]["inputs"] == {"image": ["1", 0], "output_size": 384, "margin": 0.6, "detector": "auto",
                                  "multiple_faces": "largest", "on_no_face": "fail", "min_confidence": 0.5}


@pytest.mark.parametrize("node, error", [
    (ui_node(1, "KSampler", [7, 5, 6.5, "euler", "normal", 0.5]), "6 widget values, but the definition has 7"),
    (ui_node(1, "EthMumbaiFaceCrop", [256, 0.6, "auto", "largest", "fail"]), "5 widget values, but the definition has 7"),
    (ui_node(1, "SomeoneElsesNode", []), "not in the /object_info snapshot"),
    (ui_node(1, "VAEDecode", inputs=[{"name": "latent", "type": "LATENT", "link": None}]), "unknown input 'latent'"),
])
def test_what_cannot_be_converted_faithfully_is_refused(node, error):
    with pytest.raises(ConvertError, match=error):
        ui_to_api({"nodes": [node], "links": []}, SNAPSHOT)


def test_the_upload_button_value_is_dropped():
    assert widget_slots(SNAPSHOT["EthMumbaiLoadImage"]) == ["photo", "max_bytes", "max_pixels", None]
    loader = ui_node(1, "EthMumbaiLoadImage", ["me.jpg", 10, 20, "image"])
    assert ui_to_api({"nodes": [loader], "links": []}, SNAPSHOT)["1"]["inputs"] == {
        "photo": "me.jpg", "max_bytes": 10, "max_pixels": 20}


def test_worker_graph_keeps_what_the_output_node_needs_and_swaps_the_loader():
    editor = {
        "1": {"inputs": {"photo": "me.jpg", "max_bytes": 10, "max_pixels": 20}, "class_type": "EthMumbaiLoadImage",
              "_meta": {"title": "Photo"}},
        "2": {"inputs": {"image": ["1", 0]}, "class_type": "EthMumbaiLineart", "_meta": {"title": "Lines"}},
        "3": {"inputs": {"images": ["2", 0]}, "class_type": "EthMumbaiSaveImageBase64", "_meta": {"title": "Out"}},
        "4": {"inputs": {"images": ["2", 0]}, "class_type": "PreviewImage", "_meta": {"title": "Preview"}},
        "5": {"inputs": {"mask": ["1", 1]}, "class_type": "MaskPreview", "_meta": {"title": "Alpha"}},
    }
    assert worker_graph(editor, ["3"]) == {
        "1": {"inputs": {"image_base64": "", "max_bytes": 10, "max_pixels": 20},
              "class_type": "EthMumbaiLoadImageBase64", "_meta": {"title": "Photo"}},
        "2": editor["2"],
        "3": editor["3"],
    }
    assert editor["1"]["class_type"] == "EthMumbaiLoadImage", "the editor graph is left as it was"


def test_snapshot_empties_the_upload_list():
    info = {"EthMumbaiLoadImage": {**SNAPSHOT["EthMumbaiLoadImage"], "category": "ETHMumbai"}}
    info["EthMumbaiLoadImage"]["input"] = {"required": {
        **SNAPSHOT["EthMumbaiLoadImage"]["input"]["required"],
        "photo": ["COMBO", {**SNAPSHOT["EthMumbaiLoadImage"]["input"]["required"]["photo"][1],
                            "options": ["someones_selfie.jpg"]}]}}
    full = {**SNAPSHOT, **info}
    assert trim_object_info(full)["EthMumbaiLoadImage"] == SNAPSHOT["EthMumbaiLoadImage"]
