"""ComfyUI boots headless on CPU with the pack, and every ETHMumbai node registers."""

from __future__ import annotations

import requests

EXPECTED_NODES = {
    "EthMumbaiLoadImageBase64",
    "EthMumbaiFaceCrop",
    "EthMumbaiPersonMask",
    "EthMumbaiLineart",
    "EthMumbaiBackgroundComposite",
    "EthMumbaiSaveImageBase64",
    "EthMumbaiLoadImage",
    "EthMumbaiPreviewFaceCrop",
    "EthMumbaiGuidanceEnd",
}


def test_every_pack_node_is_registered(comfy_server):
    object_info = requests.get(f"{comfy_server.url}/object_info", timeout=60).json()
    missing = EXPECTED_NODES - object_info.keys()
    assert not missing, f"nodes missing from /object_info: {sorted(missing)}"
    for node_id in EXPECTED_NODES:
        assert object_info[node_id]["category"].startswith("ETHMumbai")


def test_startup_log_has_no_import_failure_for_the_pack(comfy_server):
    log = comfy_server.log_path.read_text(errors="replace")
    assert "custom_nodes/ethmumbai" in log, "the pack was not even scanned"
    bad = [line for line in log.splitlines() if "ethmumbai" in line.lower() and ("IMPORT FAILED" in line or "Cannot import" in line)]
    assert not bad, "\n".join(bad)
