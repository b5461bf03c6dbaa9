"""UI-format workflows (what the graph editor saves) to API format (what ``POST /prompt`` runs), and the
``/object_info`` snapshot the conversion is made against.

    python -m workflows.convert            # every workflows/*/v*.ui.json -> v*.api.json
    python -m workflows.convert snapshot   # boot ComfyUI with the pack, rewrite object_info_<version>.json

The conversion does what the frontend's "Export (API)" does: links become ``[node id, output slot]`` inputs;
``widgets_values`` are named in the node's ``/object_info`` input order, skipping the frontend's extra
``control_after_generate`` value after a seed; a linked (converted) widget takes the link. Notes are dropped,
Reroutes followed, a PrimitiveNode's value inlined, muted nodes dropped and bypassed nodes passed through.
A node whose widget count does not match its definition is an error, never a guess: that is what a published
node reordering or inserting widget inputs looks like.

The editor graph (``vN.ui.json``, what the artist opens) and the worker graph (``vN.api.json``, what the worker
queues) differ in two ways, both decided here (:func:`worker_graph`): the worker graph keeps only what the params
file's ``output_node`` needs, so the editor's previews (PreviewImage, MaskPreview, the pack's face-crop preview)
never run for a job, and the pack's upload loader (``EthMumbaiLoadImage``) becomes the base64 loader with an empty
``image_base64`` for the worker to fill. Everything else is converted exactly as the frontend exports it.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

from avatar_driver import contract, paths
from avatar_driver.client import ComfyClient

COMFYUI_VERSION = "0.3.75"
SNAPSHOT = paths.WORKFLOWS_DIR / f"object_info_{COMFYUI_VERSION}.json"
PACK_CATEGORY = "ETHMumbai"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
SEED_NAMES = {"seed", "noise_seed"}  # the frontend gives these a control_after_generate widget even unflagged
# Frontend-side nodes ComfyUI never runs: notes are dropped, Reroutes followed, PrimitiveNode values inlined.
VIRTUAL = {"Note", "MarkdownNote", "Reroute", "PrimitiveNode"}
MODE_NEVER, MODE_BYPASS = 2, 4
# The frontend's Comfy.UploadImage extension adds an unsent "upload" button after the required inputs of a node
# whose required combo has one of these flags; its value is saved in widgets_values.
UPLOAD_FLAGS = ("image_upload", "video_upload", "animated_image_upload")
# The editor's photo loader -> (the worker's loader, the editor's file input, the worker's base64 input). Both
# loaders have the same outputs and the same widgets after the first (custom_nodes/ethmumbai/nodes/load_image.py).
EDITOR_LOADERS = {"EthMumbaiLoadImage": ("EthMumbaiLoadImageBase64", "photo", "image_base64")}


class ConvertError(ValueError):
    """The UI workflow cannot be converted faithfully."""


def _options(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def _is_widget(spec: list) -> bool:
    return isinstance(spec[0], list) or (spec[0] in WIDGET_TYPES and not _options(spec).get("forceInput"))


def _section_specs(info: dict, section: str) -> list[tuple[str, list]]:
    declared = info["input"].get(section, {})
    return [(name, declared[name]) for name in info.get("input_order", {}).get(section, declared)]


def _input_specs(info: dict) -> list[tuple[str, list]]:
    """(name, spec) of every required then optional input, in the node's declared order."""
    return _section_specs(info, "required") + _section_specs(info, "optional")


def _is_upload(spec: list) -> bool:
    return any(_options(spec).get(flag) for flag in UPLOAD_FLAGS)


def widget_slots(info: dict) -> list[str | None]:
    """Names of the ``widgets_values`` entries of a node, in order; ``None`` marks a UI-only value."""
    slots: list[str | None] = []
    for section in ("required", "optional"):
        specs = _section_specs(info, section)
        for name, spec in specs:
            if _is_widget(spec):
                slots.append(name)
                if _options(spec).get("control_after_generate", spec[0] == "INT" and name in SEED_NAMES):
                    slots.append(None)
        if section == "required" and any(_is_upload(spec) for _, spec in specs):
            slots.append(None)  # the upload button
    return slots


def _widget_values(node: dict, info: dict) -> dict:
    slots = widget_slots(info)
    values = node.get("widgets_values") or []
    if isinstance(values, dict):  # some frontends/extensions save {name: value}
        return {name: values[name] for name in slots if name is not None and name in values}
    # A workflow saved before optional widgets were appended (the node contract's only allowed change)
    # lacks their values: they keep their defaults.
    optional = set(info["input"].get("optional", {}))
    if len(values) < len(slots) and all(name is None or name in optional for name in slots[len(values):]):
        slots = slots[:len(values)]
    if len(values) != len(slots):
        raise ConvertError(
            f"node {node['id']} ({node['type']}): {len(values)} widget values, but the definition has "
            f"{len(slots)} widget slots {slots}: a widget input was added, removed or reordered")
    return {name: value for name, value in zip(slots, values, strict=True) if name is not None}


class _Graph:
    def __init__(self, ui: dict):
        self.nodes = {node["id"]: node for node in ui["nodes"]}
        self.links = {}
        for link in ui.get("links", []):
            if isinstance(link, dict):  # schema 1 saves links as objects
                link = [link["id"], link["origin_id"], link["origin_slot"], link["target_id"], link["target_slot"],
                        link.get("type")]
            self.links[link[0]] = link

    def source(self, link_id: int | None, depth: int = 0):
        """What a link delivers: ``[node id, slot]``, ``("value", v)`` for a PrimitiveNode, or None (nothing)."""
        if link_id is None or link_id not in self.links:
            return None
        if depth > len(self.nodes):
            raise ConvertError("cycle through Reroute or bypassed nodes")
        _, origin_id, origin_slot, *_ = self.links[link_id]
        origin = self.nodes[origin_id]
        if origin["type"] == "Reroute":
            return self.source(origin["inputs"][0].get("link"), depth + 1)
        if origin["type"] == "PrimitiveNode":
            return ("value", origin["widgets_values"][0])
        if origin.get("mode") == MODE_NEVER:
            return None
        if origin.get("mode") == MODE_BYPASS:  # like the frontend: the same slot if its type fits, else the first fit
            out_type = origin["outputs"][origin_slot]["type"]
            inputs = origin.get("inputs", [])
            fits = [i for i, slot in enumerate(inputs) if slot["type"] == out_type and slot.get("link") is not None]
            if not fits:
                return None
            pick = origin_slot if origin_slot in fits else fits[0]
            return self.source(inputs[pick]["link"], depth + 1)
        return [str(origin_id), origin_slot]


def ui_to_api(ui: dict, object_info: dict) -> dict:
    """The API-format prompt of a UI-format workflow, nodes ordered by id."""
    graph = _Graph(ui)
    api = {}
    for node_id in sorted(graph.nodes):
        node = graph.nodes[node_id]
        if node["type"] in VIRTUAL or node.get("mode") in (MODE_NEVER, MODE_BYPASS):
            continue
        info = object_info.get(node["type"])
        if info is None:
            raise ConvertError(f"node {node_id}: type {node['type']!r} is not in the /object_info snapshot "
                               f"(groups/subgraphs are not supported; run `python -m workflows.convert snapshot` "
                               f"after adding a node type)")
        declared = dict(_input_specs(info))
        values = _widget_values(node, info)
        for slot in node.get("inputs", []):
            name = (slot.get("widget") or {}).get("name", slot["name"])
            if name not in declared:
                raise ConvertError(f"node {node_id} ({node['type']}): unknown input {name!r}")
            source = graph.source(slot.get("link"))
            if source is None:
                continue
            values[name] = source[1] if isinstance(source, tuple) else source
        api[str(node_id)] = {
            "inputs": {name: values[name] for name in declared if name in values},
            "class_type": node["type"],
            "_meta": {"title": node.get("title") or info.get("display_name") or node["type"]},
        }
    return api


def worker_graph(api: dict, roots: list[str]) -> dict:
    """The graph the worker queues, from the editor's API-format graph (the converter's or the frontend's):
    only the nodes ``roots`` need (the output node, and what presets wire in: ``contract.graph_roots``), in
    ``api``'s order, with the editor's photo loader swapped for the base64 loader."""
    needed, todo = set(), [str(root) for root in roots]
    while todo:
        node_id = todo.pop()
        if node_id not in needed:
            needed.add(node_id)
            todo += [value[0] for value in api[node_id]["inputs"].values() if _is_link(value, api)]
    graph = {}
    for node_id, node in api.items():
        if node_id not in needed:
            continue
        node = copy.deepcopy(node)
        if node["class_type"] in EDITOR_LOADERS:
            class_type, file_input, base64_input = EDITOR_LOADERS[node["class_type"]]
            inputs = {name: value for name, value in node["inputs"].items() if name != file_input}
            node = {**node, "class_type": class_type, "inputs": {base64_input: "", **inputs}}
        graph[node_id] = node
    return graph


def _is_link(value, api: dict) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and value[0] in api


def load_snapshot(path: Path = SNAPSHOT) -> dict:
    return json.loads(path.read_text())


def _versions(root: Path) -> list[Path]:
    return sorted(root.glob("*/v*.ui.json"))


def used_class_types(root: Path) -> set[str]:
    return {node["type"] for ui_path in _versions(root) for node in json.loads(ui_path.read_text())["nodes"]
            if node["type"] not in VIRTUAL}


def _sibling(ui_path: Path, kind: str) -> Path:
    return ui_path.with_name(ui_path.name.replace(".ui.", f".{kind}."))


def model_inputs(root: Path) -> set[tuple[str, str]]:
    """(class type, input) of every model-file input named in a params file (read through the contract)."""
    found = set()
    for ui_path in _versions(root):
        class_types = {str(node["id"]): node["type"] for node in json.loads(ui_path.read_text())["nodes"]}
        params = contract.read_params(_sibling(ui_path, "params"))
        found |= {(class_types[m.node], m.input) for m in contract.model_inputs(params)}
    return found


def convert(ui_path: Path, object_info: dict) -> dict:
    """The worker graph of one ``vN.ui.json`` (its ``output_node`` read from ``vN.params.json``)."""
    roots = contract.graph_roots(contract.read_params(_sibling(ui_path, "params")))
    return worker_graph(ui_to_api(json.loads(ui_path.read_text()), object_info), roots)


def trim_object_info(object_info: dict, root: Path = paths.WORKFLOWS_DIR) -> dict:
    """The snapshot: the node types the workflows use plus the whole pack, with the model-file and upload lists
    emptied (they list whatever the machine has downloaded or uploaded, which is no part of the interface)."""
    keep = used_class_types(root) | {k for k, v in object_info.items() if v.get("category", "").startswith(PACK_CATEGORY)}
    missing = keep - object_info.keys()
    if missing:
        raise ConvertError(f"node types missing from /object_info: {sorted(missing)}")
    snapshot = copy.deepcopy({name: object_info[name] for name in sorted(keep)})
    file_lists = model_inputs(root) | {(class_type, name) for class_type, info in snapshot.items()
                                       for name, spec in _input_specs(info) if _is_upload(spec)}
    for class_type, input_name in file_lists:
        for section in snapshot[class_type]["input"].values():
            spec = section.get(input_name)
            if spec is not None and isinstance(spec[0], list):
                spec[0] = []
            elif spec is not None:
                _options(spec)["options"] = []
    return snapshot


def fetch_snapshot(base_url: str, root: Path = paths.WORKFLOWS_DIR) -> dict:
    """The trimmed snapshot from a running ComfyUI, which must be the pinned version."""
    client = ComfyClient(base_url)
    version = client.system_stats()["system"]["comfyui_version"]
    if version != COMFYUI_VERSION:
        raise ConvertError(f"ComfyUI {version} is running; the snapshot is for {COMFYUI_VERSION}")
    return trim_object_info(client.object_info(), root)


def dump(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def convert_all(root: Path = paths.WORKFLOWS_DIR) -> list[Path]:
    object_info = load_snapshot()
    written = []
    for ui_path in _versions(root):
        api_path = _sibling(ui_path, "api")
        api_path.write_text(dump(convert(ui_path, object_info)))
        written.append(api_path)
    return written


def write_snapshot() -> Path:
    from avatar_driver.process import ComfyProcess

    with tempfile.TemporaryDirectory(prefix="object_info_") as tmp:
        with ComfyProcess(workdir=Path(tmp), log_path=Path(tmp) / "comfyui.log") as comfy:
            SNAPSHOT.write_text(dump(fetch_snapshot(comfy.url)))
    return SNAPSHOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", choices=["convert", "snapshot"], default="convert")
    args = parser.parse_args(argv)
    written = [write_snapshot()] if args.command == "snapshot" else convert_all()
    for path in written:
        print(f"wrote {path.relative_to(paths.REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
