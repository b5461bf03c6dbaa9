"""The project's converter against the reference: ComfyUI's own frontend (1.32.9, served by the ComfyUI under
test) loads each UI workflow in headless Chromium, and its "Export (API)" (``app.graphToPrompt``) must give exactly
what the converter makes of the editor graph, previews and upload loader included; the worker graph made from that
export (workflows.convert.worker_graph) must be the committed API workflow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright

from avatar_driver import contract
from avatar_driver.paths import WORKFLOWS_DIR
from workflows.convert import load_snapshot, ui_to_api, worker_graph

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
UI_FILES = sorted(WORKFLOWS_DIR.glob("*/v*.ui.json"))
EXPORT = "async (ui) => { await window.app.loadGraphData(ui); return (await window.app.graphToPrompt()).output; }"


@pytest.fixture(scope="module")
def frontend(tiny_comfy):
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is missing: apt-get install -y chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.goto(tiny_comfy.url, timeout=120_000)
        page.wait_for_function("window.app && window.app.graph", timeout=120_000)
        yield page
        browser.close()


@pytest.mark.parametrize("ui_path", UI_FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_frontend_export_equals_the_committed_api_json(frontend, ui_path):
    ui = json.loads(ui_path.read_text())
    exported = frontend.evaluate(EXPORT, ui)
    assert exported == ui_to_api(ui, load_snapshot())
    roots = contract.graph_roots(contract.read_params(ui_path.with_name(ui_path.name.replace(".ui.", ".params."))))
    assert worker_graph(exported, roots) == json.loads(
        ui_path.with_name(ui_path.name.replace(".ui.", ".api.")).read_text())
