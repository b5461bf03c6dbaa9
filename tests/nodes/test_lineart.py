"""Lineart (core/lineart.py): the weight-free standard method and the learned-method plumbing."""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest
import torch
import yaml

from avatar_driver.paths import REPO_ROOT
from custom_nodes.ethmumbai.core import lineart
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from tools.images import astronaut, to_tensor


def reference_standard(pixels: np.ndarray) -> np.ndarray:
    """The float formula of "lineart standard", as a test oracle for the uint8 implementation."""
    x = pixels.astype(np.float32)
    darker = np.min(cv2.GaussianBlur(x, (0, 0), lineart.STANDARD_SIGMA) - x, axis=2).clip(0, 255)
    strong = darker[darker > lineart.STANDARD_NOISE_FLOOR]
    scale = max(16.0, float(np.median(strong))) if strong.size else 16.0
    return (darker / scale * 127).clip(0, 255)


def test_standard_matches_the_float_formula():
    photo = astronaut()
    ours = lineart.standard_lineart(photo).astype(np.float32)
    reference = reference_standard(photo)
    assert ours.shape == photo.shape[:2]
    assert np.abs(ours - reference).mean() < 1.0
    assert np.abs(ours - reference).max() <= 40  # a one-level rounding gap times the gain, at worst


def test_lines_are_white_on_black_where_the_drawing_is():
    drawing = np.full((128, 128, 3), 255, np.uint8)
    cv2.line(drawing, (20, 64), (108, 64), (0, 0, 0), 2)
    result = lineart.lineart(to_tensor(drawing), "standard", 128)[0].numpy()
    assert result.shape == (128, 128, 3)
    assert result[63:66, 30:100].mean() > 0.45, "the line is bright (its median strength maps to half white)"
    assert result[:40].max() == 0.0 and result[90:].max() == 0.0, "empty paper stays black"


def test_flat_image_has_no_lines():
    assert lineart.lineart(torch.full((1, 64, 64, 3), 0.4), "standard", 64).max() == 0.0


def test_output_is_input_sized_and_grey_at_any_resolution():
    photo = to_tensor(astronaut()[:, :384])
    for resolution in (256, 512, 1024):
        result = lineart.lineart(photo, "standard", resolution)
        assert result.shape == (1, 512, 384, 3)
        assert torch.equal(result[..., 0], result[..., 1]) and torch.equal(result[..., 1], result[..., 2])
        assert 0.0 <= result.min() and result.max() <= 1.0
        assert 0.02 < result.mean() < 0.3, "mostly black with white lines"


def test_working_size_keeps_aspect_with_the_short_side_at_resolution():
    assert lineart.working_size(512, 384, 1024) == (1365, 1024)
    assert lineart.working_size(300, 451, 150) == (150, 226)


def test_unknown_method_is_invalid_input():
    with pytest.raises(EthMumbaiError) as info:
        lineart.lineart(torch.rand(1, 8, 8, 3), "canny", 64)
    assert info.value.code == "INVALID_INPUT"


@pytest.mark.parametrize("method", sorted(lineart.LEARNED))
def test_learned_method_without_weights_names_the_file_and_the_fetch_command(tmp_path, method):
    with pytest.raises(EthMumbaiError) as info:
        lineart.lineart(torch.rand(1, 8, 8, 3), method, 64, [tmp_path])
    spec = lineart.LEARNED[method]
    assert info.value.code == "MODEL_MISSING"
    assert all(name in info.value.message for name in spec.files)
    assert f"python scripts/fetch_models.py --only {spec.fetch_name}" in info.value.message


def test_learned_method_without_controlnet_aux_is_dependency_missing(tmp_path, monkeypatch):
    (tmp_path / "ControlNetHED.pth").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "controlnet_aux", None)  # makes the import fail, installed or not
    monkeypatch.setitem(sys.modules, "controlnet_aux.hed", None)
    with pytest.raises(EthMumbaiError) as info:
        lineart.lineart(torch.rand(1, 8, 8, 3), "hed", 64, [tmp_path])
    assert info.value.code == "DEPENDENCY_MISSING" and "controlnet-aux" in info.value.message


def test_learned_weights_agree_with_the_models_manifest():
    manifest = yaml.safe_load((REPO_ROOT / "models_manifest.yaml").read_text())
    for method in lineart.LEARNED.values():
        entries = [e for e in manifest["models"] if method.fetch_name in (e["name"], e.get("group"))]
        assert sorted(e["filename"] for e in entries) == sorted(method.files), method
        assert all(e["folder"] == "annotators" for e in entries)
