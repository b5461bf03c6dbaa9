"""The artist's way, in ComfyUI's own frontend (1.32.9, served by the ComfyUI under test) in Debian's Chromium:
open ``v1.ui.json``, upload a photo through the Photo node's upload widget, Run on the tiny models, and see the
previews of the face crop, person mask, lineart and avatar; a photo without a face shows a coded error in the
error dialog. Screenshots go to artifacts/editor/ (look at them: they are the evidence of what the artist sees)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from avatar_driver.contract import load_workflows
from avatar_driver.paths import REPO_ROOT, WORKFLOWS_DIR
from tools.images import astronaut

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO_ROOT / "artifacts" / "editor"
UI_PATH = WORKFLOWS_DIR / "ethmumbai_avatar" / "v1.ui.json"
WORKFLOW = load_workflows()["v1"]
FAST = {"size": 256, "steps": 3}
RUN_TIMEOUT_MS = 300_000
PREVIEWS = {"EthMumbaiPreviewFaceCrop", "MaskPreview", "PreviewImage"}
# The stage each preview shows, by the class of the node feeding its first input.
STAGES = {"EthMumbaiLoadImage": "face crop", "EthMumbaiPersonMask": "person mask", "EthMumbaiLineart": "lineart",
          "EthMumbaiBackgroundComposite": "avatar"}
SET_WIDGET = "([id, name, value]) => { app.graph.getNodeById(Number(id)).widgets.find(w => w.name === name).value = value; }"
PREVIEWS_SHOWN = "(ids) => ids.every(id => (app.graph.getNodeById(id).imgs || []).some(i => i.complete && i.naturalWidth > 0))"


def preview_stages(ui: dict) -> dict[int, str]:
    """Preview node id -> the stage it shows."""
    types = {node["id"]: node["type"] for node in ui["nodes"]}
    origin = {link[0]: link[1] for link in ui["links"]}
    return {node["id"]: STAGES[types[origin[node["inputs"][0]["link"]]]]
            for node in ui["nodes"] if node["type"] in PREVIEWS}


@pytest.fixture(scope="module")
def editor(tiny_comfy) -> Iterator[Page]:
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page(viewport={"width": 1800, "height": 1100})
        # A first visit opens the templates browser over the canvas; this user has been here before.
        requests.post(f"{tiny_comfy.url}/settings/Comfy.TutorialCompleted", json=True, timeout=30).raise_for_status()
        page.goto(tiny_comfy.url, timeout=120_000)
        page.wait_for_function("window.app && window.app.graph", timeout=120_000)
        yield page
        browser.close()


def open_v1_on_tiny_models(page: Page, tiny_models: dict) -> dict:
    """Load v1.ui.json as the artist opens it, then pick the tiny model files and a small size, as an artist
    would pick what their machine has."""
    ui = json.loads(UI_PATH.read_text())
    # The production models are not on this server (the next lines pick the tiny ones); every node type must be.
    page.evaluate("async (ui) => { await window.app.loadGraphData(ui, true, true, null, "
                  "{ showMissingModelsDialog: false }); }", ui)
    assert page.locator(".p-dialog").count() == 0, page.locator(".p-dialog").all_inner_texts()
    pick_tiny_models_and_size(page, ui["nodes"], tiny_models)
    return ui


def pick_tiny_models_and_size(page: Page, nodes: list[dict], tiny_models: dict) -> None:
    """Every node of the class v1's params file names for a model or for ``FAST``'s parameters gets that value."""
    settings = [(WORKFLOW.graph[str(model["node"])]["class_type"], model["input"], tiny_models["files"][model["folder"]])
                for model in WORKFLOW.spec["models"]]
    settings += [(WORKFLOW.graph[target.node]["class_type"], target.input, value)
                 for name, value in FAST.items() for target in WORKFLOW.targets(name)]
    for class_type, name, value in settings:
        for node in nodes:
            if node["type"] == class_type:
                page.evaluate(SET_WIDGET, [node["id"], name, value])


def upload_through_the_widget(page: Page, ui: dict, photo: Path) -> None:
    """Press the Photo node's "choose file to upload" button and pick the file in the browser's file chooser."""
    (loader,) = [node["id"] for node in ui["nodes"] if node["type"] == "EthMumbaiLoadImage"]
    with page.expect_file_chooser(timeout=30_000) as chooser:
        page.evaluate("(id) => app.graph.getNodeById(id).widgets.find(w => w.name === 'upload').callback()", loader)
    chooser.value.set_files(str(photo))
    page.wait_for_function("([id, name]) => app.graph.getNodeById(id).widgets[0].value === name",
                           arg=[loader, photo.name], timeout=30_000)


def press_run(page: Page) -> None:
    page.get_by_role("button", name="Run").first.click()


def frame_the_graph(page: Page) -> None:
    page.evaluate("() => { app.canvas.ds.scale = 0.6; app.canvas.ds.offset = [60, 700]; app.canvas.setDirty(true, true); }")
    page.wait_for_timeout(500)


def test_drop_a_photo_run_and_see_every_stage(editor, tiny_comfy, tiny_models, tmp_path):
    ui = open_v1_on_tiny_models(editor, tiny_models)
    photo = tmp_path / "artist_photo.jpg"
    Image.fromarray(astronaut()).save(photo, quality=92)
    upload_through_the_widget(editor, ui, photo)
    uploaded = requests.get(f"{tiny_comfy.url}/view", params={"filename": photo.name, "type": "input"}, timeout=30)
    assert uploaded.content == photo.read_bytes(), "the widget uploads the file into ComfyUI's input folder"

    press_run(editor)
    stages = preview_stages(ui)
    assert sorted(stages.values()) == ["avatar", "face crop", "lineart", "person mask"]
    editor.wait_for_function(PREVIEWS_SHOWN, arg=list(stages), timeout=RUN_TIMEOUT_MS)
    frame_the_graph(editor)
    editor.screenshot(path=str(ARTIFACTS / "v1_after_run.png"))

    shown = editor.evaluate("(ids) => Object.fromEntries(ids.map(id => [id, app.graph.getNodeById(id).imgs.map("
                            "i => [i.naturalWidth, i.naturalHeight])]))", list(stages))
    size = FAST["size"]
    assert {stages[int(i)]: sizes for i, sizes in shown.items()} == {
        "face crop": [[512 + 512, 512]],  # the 512² photo with the box drawn, the crop beside it at its height
        "person mask": [[size, size]], "lineart": [[size, size]], "avatar": [[size, size]]}

    (entry,) = requests.get(f"{tiny_comfy.url}/history", params={"max_items": 1}, timeout=30).json().values()
    assert entry["status"]["status_str"] == "success"
    for node_id in stages:
        (image,) = entry["outputs"][str(node_id)]["images"]
        assert image["type"] == "temp", "previews go to ComfyUI's temp folder, emptied at each start"
    assert entry["outputs"][WORKFLOW.output_node]["ethmumbai_images"], "the avatar node still returns base64"


def test_a_photo_without_a_face_explains_itself_in_the_error_dialog(editor, tiny_models, tmp_path):
    ui = open_v1_on_tiny_models(editor, tiny_models)
    wall = tmp_path / "plain_wall.png"
    ramp = np.tile(np.linspace(0, 255, 320, dtype=np.uint8), (240, 1))
    Image.fromarray(np.dstack([ramp] * 3)).save(wall)
    upload_through_the_widget(editor, ui, wall)
    press_run(editor)
    dialog = editor.locator(".p-dialog").filter(has_text="NO_FACE_DETECTED")
    dialog.wait_for(timeout=RUN_TIMEOUT_MS)
    editor.screenshot(path=str(ARTIFACTS / "v1_no_face.png"))
    text = dialog.inner_text()
    assert "[NO_FACE_DETECTED] no face found in the 320x240 image" in text
    assert "use a photo where one face is clearly visible, or set on_no_face to center_crop" in text
    assert "Traceback" not in text, "the dialog shows the sentence, not a stack trace"
    editor.keyboard.press("Escape")


def test_the_tuning_template_renders_three_strengths_side_by_side_in_one_run(editor, tiny_comfy, tiny_models, tmp_path):
    """Templates → ethmumbai → ethmumbai_avatar_tuning, as an artist opens it; one Run gives three avatars."""
    editor.get_by_role("button", name="Templates").first.click()
    editor.get_by_text("ethmumbai", exact=True).first.click()  # the pack, under "Extensions"
    editor.get_by_text("ethmumbai_avatar_tuning", exact=True).first.click()
    editor.wait_for_function("() => app.graph.nodes.some(n => (n.title || '').startsWith('Side by side'))",
                             timeout=30_000)
    editor.wait_for_timeout(500)
    for dialog in editor.locator(".p-dialog").all():  # the production models are not on this server
        assert "missing node" not in dialog.inner_text().lower()
        editor.keyboard.press("Escape")
    nodes = editor.evaluate("() => app.graph.nodes.map(n => ({id: n.id, type: n.type, title: n.title}))")
    samplers = [node["id"] for node in nodes if node["type"] == "KSampler"]
    (side_by_side,) = [node["id"] for node in nodes if node["title"].startswith("Side by side")]
    pick_tiny_models_and_size(editor, nodes, tiny_models)
    photo = tmp_path / "tuning_photo.jpg"
    Image.fromarray(astronaut()).save(photo, quality=92)
    upload_through_the_widget(editor, {"nodes": nodes}, photo)
    press_run(editor)
    editor.wait_for_function(
        "(id) => (app.graph.getNodeById(id).imgs || []).filter(i => i.complete && i.naturalWidth > 0).length === 3",
        arg=side_by_side, timeout=RUN_TIMEOUT_MS)
    editor.evaluate("() => { app.canvas.ds.scale = 0.5; app.canvas.ds.offset = [60, 700]; app.canvas.setDirty(true, true); }")
    editor.wait_for_timeout(500)
    editor.screenshot(path=str(ARTIFACTS / "tuning_after_run.png"))

    denoise = editor.evaluate("(ids) => ids.map(id => app.graph.getNodeById(id).widgets.find(w => w.name === 'denoise')"
                              ".value)", samplers)
    assert sorted(denoise) == [0.45, 0.6, 0.75]
    (entry,) = requests.get(f"{tiny_comfy.url}/history", params={"max_items": 1}, timeout=30).json().values()
    images = [np.asarray(Image.open(io.BytesIO(requests.get(f"{tiny_comfy.url}/view", params=image, timeout=30)
                                               .content)).convert("RGB"), np.float32)
              for image in entry["outputs"][str(side_by_side)]["images"]]
    assert [image.shape for image in images] == [(FAST["size"], FAST["size"], 3)] * 3
    for a, b in ((0, 1), (1, 2), (0, 2)):
        assert np.abs(images[a] - images[b]).mean() > 2.0, f"denoise {denoise[a]} and {denoise[b]} look the same"
