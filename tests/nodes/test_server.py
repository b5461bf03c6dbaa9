"""The pack through a real ComfyUI server: POST /prompt, websocket, /history (shared session server)."""

from __future__ import annotations

import json
import re
import tomllib

import numpy as np
import pytest
import requests
from PIL import Image

from avatar_driver.paths import REPO_ROOT
from custom_nodes.ethmumbai.core import composite
from custom_nodes.ethmumbai.core.lineart import LEARNED
from tools.comfy import run_prompt
from tools.images import (
    ASTRONAUT_FACE,
    astronaut,
    b64,
    chelsea,
    decode_b64_image,
    encode,
    png_header_claiming,
)
from workflows.convert import ui_to_api

NODE_IDS = ["EthMumbaiLoadImageBase64", "EthMumbaiFaceCrop", "EthMumbaiPersonMask", "EthMumbaiLineart",
            "EthMumbaiBackgroundComposite", "EthMumbaiSaveImageBase64", "EthMumbaiLoadImage", "EthMumbaiPreviewFaceCrop",
            "EthMumbaiGuidanceEnd"]
# ARCHITECTURE.md: widget order is a published contract.
CONTRACT_INPUTS = {
    "EthMumbaiLoadImageBase64": (["image_base64", "max_bytes", "max_pixels"], []),
    "EthMumbaiFaceCrop": (["image", "output_size", "margin", "detector", "multiple_faces", "on_no_face",
                           "min_confidence"], ["face_index"]),
    "EthMumbaiPersonMask": (["image", "threshold", "feather"], ["refine", "islands", "face_mask"]),
    "EthMumbaiLineart": (["image", "method", "resolution"], []),
    "EthMumbaiBackgroundComposite": (["foreground", "mask", "background", "color", "color2", "feather"],
                                     ["original", "crop_box", "clean_edge"]),
    "EthMumbaiSaveImageBase64": (["images", "format", "quality"], []),
    "EthMumbaiLoadImage": (["photo", "max_bytes", "max_pixels"], []),
    "EthMumbaiPreviewFaceCrop": (["image", "face", "crop_box"], []),
    "EthMumbaiGuidanceEnd": (["model", "end_percent"], []),
}
CONTRACT_OUTPUTS = {
    "EthMumbaiLoadImageBase64": (["IMAGE", "MASK"], ["image", "mask"]),
    "EthMumbaiFaceCrop": (["IMAGE", "MASK", "ETHMUMBAI_CROP_BOX"], ["face", "face_mask", "crop_box"]),
    "EthMumbaiPersonMask": (["MASK"], ["mask"]),
    "EthMumbaiLineart": (["IMAGE"], ["lineart"]),
    "EthMumbaiBackgroundComposite": (["IMAGE"], ["image"]),
    "EthMumbaiSaveImageBase64": ([], []),
    "EthMumbaiLoadImage": (["IMAGE", "MASK"], ["image", "mask"]),
    "EthMumbaiPreviewFaceCrop": ([], []),
    "EthMumbaiGuidanceEnd": (["MODEL"], ["model"]),
}
CODE = re.compile(r"^\[([A-Z_]+)\]")


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def load(image_b64: str) -> dict:
    return node("EthMumbaiLoadImageBase64", image_base64=image_b64, max_bytes=20_000_000, max_pixels=40_000_000)


def save(source: list) -> dict:
    return node("EthMumbaiSaveImageBase64", images=source, format="png", quality=95)


def face_crop(**overrides) -> dict:
    return node("EthMumbaiFaceCrop", **{"image": ["load", 0], "output_size": 256, "margin": 0.6, "detector": "auto",
                                        "multiple_faces": "largest", "on_no_face": "fail", "min_confidence": 0.5,
                                        **overrides})


def preprocessing_graph(image_b64: str) -> dict:
    """base64 in → crop → segment → lineart → composite (and paste-back) → base64 out."""
    return {
        "load": load(image_b64),
        "crop": face_crop(),
        "segment": node("EthMumbaiPersonMask", image=["crop", 0], threshold=0.5, feather=8),
        "lines": node("EthMumbaiLineart", image=["crop", 0], method="standard", resolution=256),
        "composite": node("EthMumbaiBackgroundComposite", foreground=["crop", 0], mask=["segment", 0],
                          background="ethmumbai_sunset.png", color="#000000", color2="#FFFFFF", feather=0),
        # The untouched crop with a full mask (the photo's alpha: all ones) pasted back by the crop box.
        "paste": node("EthMumbaiBackgroundComposite", foreground=["crop", 0], mask=["load", 1],
                      background="solid", color="#000000", color2="#FFFFFF", feather=0,
                      original=["load", 0], crop_box=["crop", 2]),
        "mask_image": node("MaskToImage", mask=["segment", 0]),
        "out_face": save(["crop", 0]),
        "out_mask": save(["mask_image", 0]),
        "out_lines": save(["lines", 0]),
        "out_composite": save(["composite", 0]),
        "out_paste": save(["paste", 0]),
    }


def pixels(entry: dict, node_id: str) -> np.ndarray:
    (image,) = entry["outputs"][node_id]["ethmumbai_images"]
    decoded = decode_b64_image(image["base64"])
    assert (image["format"], image["width"], image["height"]) == ("png", decoded.width, decoded.height)
    assert not decoded.info, "no metadata in the PNG"
    return np.asarray(decoded.convert("RGB"), np.float32) / 255.0


def execution_error(entry: dict) -> dict:
    assert entry["status"]["status_str"] == "error", entry["status"]
    (error,) = [data for kind, data in entry["status"]["messages"] if kind == "execution_error"]
    return error


@pytest.fixture(scope="module")
def object_info(comfy_server) -> dict:
    return requests.get(f"{comfy_server.url}/object_info", timeout=60).json()


def files_under(workdir) -> set:
    return {path for name in ("output", "temp", "input") if (workdir / name).is_dir()
            for path in (workdir / name).rglob("*") if path.is_file()}


@pytest.fixture(scope="module")
def chain(comfy_server) -> dict:
    before = files_under(comfy_server.workdir)  # the server is shared: only count what this prompt leaves
    entry = run_prompt(comfy_server.url, preprocessing_graph(b64(encode(astronaut()))))
    assert entry["status"]["status_str"] == "success", entry["status"]
    return entry | {"files_written": sorted(files_under(comfy_server.workdir) - before)}


# ---------------------------------------------------------------- schemas, docs, packaging


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_schema_matches_the_contract_and_explains_itself(object_info, node_id):
    info = object_info[node_id]
    required, optional = CONTRACT_INPUTS[node_id]
    assert info["input_order"]["required"] == required
    assert info["input_order"].get("optional", []) == optional
    assert (info["output"], info["output_name"]) == CONTRACT_OUTPUTS[node_id]
    assert info["category"] == "ETHMumbai" and len(info["description"]) > 40
    for group in ("required", "optional"):
        for name, (_, options) in info["input"].get(group, {}).items():
            assert options.get("tooltip"), f"{node_id}.{name} has no tooltip"
    assert all(info["output_tooltips"]), f"{node_id} has an output without a tooltip"


def test_combo_options_and_defaults(object_info):
    crop_inputs = object_info["EthMumbaiFaceCrop"]["input"]["required"]
    assert crop_inputs["detector"][1]["options"] == ["auto", "mediapipe", "opencv_haar"]
    assert crop_inputs["output_size"][1].items() >= {"default": 1024, "min": 64, "max": 4096, "step": 8}.items()
    backgrounds = object_info["EthMumbaiBackgroundComposite"]["input"]["required"]["background"][1]["options"]
    assert backgrounds[-2:] == ["solid", "gradient"] and "ethmumbai_sunset.png" in backgrounds
    assert object_info["EthMumbaiSaveImageBase64"]["output_node"] is True


@pytest.mark.parametrize("node_id", NODE_IDS)
def test_help_page_is_served_where_the_frontend_looks(comfy_server, node_id):
    response = requests.get(f"{comfy_server.url}/extensions/ethmumbai/docs/{node_id}.md", timeout=30)
    assert response.status_code == 200
    assert response.text.startswith("# ETHMumbai")


def test_pack_metadata_is_read_without_warnings(comfy_server):
    log = comfy_server.log_path.read_text(errors="replace")
    assert "Unable to parse pyproject.toml" not in log


def test_requirements_txt_agrees_with_pyproject():
    pack = REPO_ROOT / "custom_nodes" / "ethmumbai"
    project = tomllib.loads((pack / "pyproject.toml").read_text())
    lines = [line.strip() for line in (pack / "requirements.txt").read_text().splitlines()]
    assert [line for line in lines if line and not line.startswith("#")] == project["project"]["dependencies"]
    assert project["tool"]["comfy"]["PublisherId"] and project["tool"]["comfy"]["DisplayName"]


# ---------------------------------------------------------------- the preprocessing chain


def test_chain_outputs_have_the_requested_sizes(chain):
    assert pixels(chain, "out_face").shape == (256, 256, 3)
    assert pixels(chain, "out_lines").shape == (256, 256, 3)
    assert pixels(chain, "out_composite").shape == (256, 256, 3)
    assert pixels(chain, "out_paste").shape == (512, 512, 3)


def test_chain_mask_covers_the_person(chain):
    mask = pixels(chain, "out_mask")[..., 0]
    # The face is centred in the crop and fills the middle 1/2.2 of it.
    assert mask[100:156, 100:156].min() > 0.99
    assert 0.3 < mask.mean() < 0.95, "the person, not the whole square"
    assert mask[:20, :20].max() < 0.01 and mask[:20, -20:].max() < 0.01, "the top corners are backdrop"


def test_chain_composite_keeps_the_person_and_replaces_the_backdrop(chain):
    face, mask, out = pixels(chain, "out_face"), pixels(chain, "out_mask")[..., :1], pixels(chain, "out_composite")
    brand = np.zeros(256 * 256, bool)
    brand[composite.overlay("ethmumbai_sunset.png", 256, 256).index] = True  # drawn over everything
    person = (mask[..., 0] > 0.999) & ~brand.reshape(256, 256)
    backdrop = (mask[..., 0] < 0.001) & ~brand.reshape(256, 256)
    assert np.abs(out - face)[person].max() <= 1.5 / 255
    assert np.abs(out - face)[backdrop].mean() > 0.1, "the backdrop was replaced"


def test_chain_lineart_is_white_lines_on_black(chain):
    lines = pixels(chain, "out_lines")
    assert 0.02 < lines.mean() < 0.3 and lines.max() > 0.9


def test_crop_box_round_trips_into_the_original_frame(chain):
    original, pasted = astronaut() / 255.0, pixels(chain, "out_paste")
    x, y, w, h = ASTRONAUT_FACE
    assert np.abs(pasted - original).mean() < 0.01
    assert np.abs(pasted - original)[y:y + h, x:x + w].mean() < 0.03, "the crop lands back on the face"
    assert np.array_equal(pasted[-100:], original[-100:].astype(np.float32)), "rows below the box are untouched"


def test_chain_writes_no_files(chain):
    assert chain["files_written"] == []


# ---------------------------------------------------------------- bad input through the server


def tiny_png(seed: int) -> str:
    return b64(encode(np.random.default_rng(seed).integers(0, 255, (8, 8, 3), dtype=np.uint8)))


def two_faces_png() -> str:
    head = astronaut()[0:300, 75:375]
    canvas = np.zeros((300, 510, 3), np.uint8)
    canvas[:, :300] = head
    canvas[:210, 300:] = np.asarray(Image.fromarray(head).resize((210, 210), Image.Resampling.BOX))
    return b64(encode(canvas))


BAD_INPUTS = {
    "truncated": (lambda: b64(encode(astronaut())[:5000]), {}, "UNSUPPORTED_IMAGE", "EthMumbaiLoadImageBase64"),
    "bomb": (lambda: b64(png_header_claiming(20000, 20000)), {}, "IMAGE_TOO_LARGE", "EthMumbaiLoadImageBase64"),
    "gif": (lambda: b64(encode(astronaut()[:32, :32], "GIF")), {}, "UNSUPPORTED_IMAGE", "EthMumbaiLoadImageBase64"),
    "svg": (lambda: b64(b"<svg xmlns='http://www.w3.org/2000/svg'/>"), {}, "UNSUPPORTED_IMAGE",
            "EthMumbaiLoadImageBase64"),
    "not-base64": (lambda: "this is not an image!", {}, "INVALID_INPUT", "EthMumbaiLoadImageBase64"),
    "empty": (lambda: "", {}, "UNSUPPORTED_IMAGE", "EthMumbaiLoadImageBase64"),
    "no-face": (lambda: b64(encode(chelsea())), {}, "NO_FACE_DETECTED", "EthMumbaiFaceCrop"),
    "two-faces": (two_faces_png, {"multiple_faces": "fail"}, "MULTIPLE_FACES", "EthMumbaiFaceCrop"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_its_code_and_the_server_serves_the_next_prompt(comfy_server, case):
    make_image, crop_overrides, code, failing_node = BAD_INPUTS[case]
    image_b64 = make_image()
    graph = {"load": load(image_b64), "crop": face_crop(**crop_overrides), "out": save(["crop", 0])}
    error = execution_error(run_prompt(comfy_server.url, graph))
    assert CODE.match(error["exception_message"]).group(1) == code, error["exception_message"]
    assert error["node_type"] == failing_node
    if len(image_b64) > 40:
        assert image_b64[:40] not in error["exception_message"], "no base64 in the message"

    # The same server answers the next prompt (a fresh image, so nothing comes from ComfyUI's cache).
    healthy = run_prompt(comfy_server.url, {"load": load(tiny_png(len(case))), "out": save(["load", 0])})
    assert healthy["status"]["status_str"] == "success"
    assert healthy["outputs"]["out"]["ethmumbai_images"][0]["width"] == 8


def test_learned_lineart_without_weights_is_model_missing(comfy_server):
    hed = LEARNED["hed"]
    if (REPO_ROOT / "models" / "annotators" / hed.files[0]).exists():
        pytest.skip("HED weights are installed here")
    graph = {"load": load(tiny_png(99)),
             "lines": node("EthMumbaiLineart", image=["load", 0], method="hed", resolution=64),
             "out": save(["lines", 0])}
    error = execution_error(run_prompt(comfy_server.url, graph))
    assert error["exception_message"].startswith("[MODEL_MISSING]")
    assert f"--only {hed.fetch_name}" in error["exception_message"]


# ---------------------------------------------------------------- the example workflow

EXAMPLES = REPO_ROOT / "custom_nodes" / "ethmumbai" / "example_workflows"
EXAMPLE = EXAMPLES / "ethmumbai_preprocessing.json"


def test_example_workflows_are_listed_as_templates(comfy_server):
    templates = requests.get(f"{comfy_server.url}/workflow_templates", timeout=30).json()
    assert sorted(templates.get("ethmumbai", [])) == sorted(path.stem for path in EXAMPLES.glob("*.json"))


def test_example_workflow_matches_the_nodes_and_runs_as_is(comfy_server, object_info):
    workflow = json.loads(EXAMPLE.read_text())
    assert workflow["version"] == 0.4 and workflow["last_node_id"] == max(n["id"] for n in workflow["nodes"])
    # The project's converter; ComfyUI's own validation then checks every value against the live nodes.
    prompt = ui_to_api(workflow, object_info)
    # As an artist drops a photo on the Photo node: the file lands in input/ and the widget names it.
    (loader,) = [key for key, item in prompt.items() if item["class_type"] == "EthMumbaiLoadImage"]
    (comfy_server.workdir / "input").mkdir(exist_ok=True)
    (comfy_server.workdir / "input" / "example_photo.png").write_bytes(encode(astronaut()))
    prompt[loader]["inputs"]["photo"] = "example_photo.png"
    entry = run_prompt(comfy_server.url, prompt)
    assert entry["status"]["status_str"] == "success", entry["status"]
    save_id = next(key for key, item in prompt.items() if item["class_type"] == "EthMumbaiSaveImageBase64")
    (result,) = entry["outputs"][save_id]["ethmumbai_images"]
    assert (result["width"], result["height"]) == (1024, 1024)
    comfy_server.clear_io_dirs()  # the photo, and the temp file the example's PreviewImage wrote
