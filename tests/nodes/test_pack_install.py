"""The pack installed the way artists install packs: its folder copied alone into a fresh ComfyUI base directory
(the installed ComfyUI 0.3.75, nothing else in custom_nodes, the repository not importable), its requirements
checked by pip, then booted: every node registers, its example workflows are templates, its help pages are served."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib

import pytest
import requests

from avatar_driver.paths import PACK_DIR
from avatar_driver.process import ComfyProcess
from tests.nodes.test_server import NODE_IDS

# The folder name the registry and ComfyUI-Manager give the pack: its registry id.
PACK_ID = tomllib.loads((PACK_DIR / "pyproject.toml").read_text())["project"]["name"]
EXAMPLES = sorted(path.stem for path in (PACK_DIR / "example_workflows").glob("*.json"))


@pytest.fixture(scope="module")
def clean_comfy(tmp_path_factory, monkeypatch_module):
    base = tmp_path_factory.mktemp("clean_comfy")
    pack = base / "custom_nodes" / PACK_ID
    shutil.copytree(PACK_DIR, pack, ignore=shutil.ignore_patterns("__pycache__"))
    # pip on the copied file, offline and changing nothing: each requirement must be installed already. --no-deps:
    # mediapipe declares jax, sounddevice and opencv-contrib (with GUI libraries) that it does not use at run time
    # (requirements/runtime.txt); an artist's online `pip install -r` simply fetches them too.
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-index", "--no-deps", "-r",
                          str(pack / "requirements.txt")], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stdout + pip.stderr
    monkeypatch_module.delenv("PYTHONPATH", raising=False)  # the pack must not lean on the repository
    # No plugins linked, no extra model paths: only what the copy brings.
    proc = ComfyProcess(workdir=base, plugins=[], model_paths_config=None, log_path=base / "comfyui.log")
    proc.start()
    try:
        proc.wait_ready(240)
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_every_node_registers_without_import_errors(clean_comfy):
    object_info = requests.get(f"{clean_comfy.url}/object_info", timeout=60).json()
    assert set(NODE_IDS) <= object_info.keys(), sorted(set(NODE_IDS) - object_info.keys())
    pack_nodes = {name for name, info in object_info.items() if info["category"].startswith("ETHMumbai")}
    assert pack_nodes == set(NODE_IDS)
    log = clean_comfy.log_path.read_text(errors="replace")
    (timing,) = [line for line in log.splitlines() if line.endswith(f"custom_nodes/{PACK_ID}")]
    assert "IMPORT FAILED" not in timing, timing
    assert not [line for line in log.splitlines() if PACK_ID in line and "Cannot import" in line]
    assert "Unable to parse pyproject.toml" not in log


def test_example_workflows_are_templates(clean_comfy):
    templates = requests.get(f"{clean_comfy.url}/workflow_templates", timeout=30).json()
    assert sorted(templates) == [PACK_ID] and sorted(templates[PACK_ID]) == EXAMPLES
    for name in EXAMPLES:
        served = requests.get(f"{clean_comfy.url}/api/workflow_templates/{PACK_ID}/{name}.json", timeout=30)
        assert served.json() == json.loads((PACK_DIR / "example_workflows" / f"{name}.json").read_text())


def test_help_pages_are_served(clean_comfy):
    for node_id in NODE_IDS:
        page = requests.get(f"{clean_comfy.url}/extensions/{PACK_ID}/docs/{node_id}.md", timeout=30)
        assert page.status_code == 200 and page.text.startswith("# ETHMumbai"), node_id


def test_registry_metadata_is_complete():
    project = tomllib.loads((PACK_DIR / "pyproject.toml").read_text())
    meta, comfy = project["project"], project["tool"]["comfy"]
    assert meta["name"] == PACK_ID and "comfyui" not in PACK_ID.lower(), "the registry asks for no 'ComfyUI' in ids"
    assert meta["version"].count(".") == 2 and meta["description"]
    assert (PACK_DIR / meta["license"]["file"]).is_file()
    assert meta["urls"]["Repository"].startswith("https://github.com/")
    assert meta["keywords"], "tags"
    assert comfy["PublisherId"] and comfy["DisplayName"] and "Icon" in comfy and comfy["requires-comfyui"]
    for required in ("__init__.py", "requirements.txt", "README.md"):
        assert (PACK_DIR / required).is_file(), required
