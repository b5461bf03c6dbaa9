"""The learned lineart methods (lineart_learned, hed, pidi) through controlnet-aux for real, offline.

No weights can be downloaded here, so the tests write weight files at test time: controlnet-aux 0.0.10's own
network classes (the architectures its ``from_pretrained`` builds), saved in the layout of the real files and
under the names in models_manifest.yaml. Random weights check the plumbing (loading, the call, sizes, range,
determinism); weights set by hand check the output convention (white lines on black, where the drawing is).
Nothing checks line quality: that needs the real weights.
"""

from __future__ import annotations

import json
import socket

import cv2
import numpy as np
import pytest
import torch
import yaml

from avatar_driver.paths import models_manifest
from custom_nodes.ethmumbai.core import models
from custom_nodes.ethmumbai.core.errors import EthMumbaiError
from custom_nodes.ethmumbai.core.lineart import LEARNED, lineart
from tools.comfy import run_prompt, start_comfy
from tools.images import astronaut, b64, chelsea, decode_b64_image, encode, to_tensor

# controlnet-aux imports all its detectors; these are that import's notices, not the tests'.
pytestmark = pytest.mark.filterwarnings("ignore:Overwriting tiny_vit", "ignore:Importing from timm",
                                        "ignore:`torch.jit.script` is deprecated")

HEIGHT, WIDTH = 96, 128  # not a multiple of 64 (controlnet-aux works at multiples of 64) and not square
RESOLUTION = 128
CONTROLNET_AUX_MODULES = ("controlnet_aux.lineart", "controlnet_aux.hed", "controlnet_aux.pidi")


def network(method: str) -> torch.nn.Module:
    """A freshly initialised (random) network of the class and shape the method's ``from_pretrained`` builds."""
    # Imported here: controlnet-aux imports all its detectors (seconds), only these tests need it.
    if method == "lineart_learned":
        from controlnet_aux.lineart import Generator

        return Generator(3, 1, 3)
    if method == "hed":
        from controlnet_aux.hed import ControlNetHED_Apache2

        return ControlNetHED_Apache2()
    from controlnet_aux.pidi.model import pidinet

    return pidinet()


def checkpoint(method: str, net: torch.nn.Module) -> dict:
    """The state dict as the real file holds it (a test compares the file sizes with models_manifest.yaml)."""
    state = net.state_dict()
    if method == "hed":  # ControlNetHED.pth is fp16 (29 MB, half the fp32 size); HEDdetector casts to float
        return {key: value.half() for key, value in state.items()}
    if method == "pidi":  # a DataParallel training checkpoint: {"state_dict": {"module.<key>": ...}}
        return {"state_dict": {f"module.{key}": value for key, value in state.items()}}
    return state  # sk_model.pth and sk_model2.pth: plain fp32 state dicts


def write_weights(folder, method: str, adjust=None, seed: int = 0):
    """Every weight file of ``method`` in ``folder``, random (seeded) unless ``adjust(net)`` sets weights."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    for name in LEARNED[method].files:
        net = network(method)
        if adjust is not None:
            with torch.no_grad():
                adjust(net)
        torch.save(checkpoint(method, net), folder / name)
    return folder


# The output layers, and the sign of a bias that makes each network report a line everywhere. The lineart
# generator draws a sketch (dark ink on white paper, which controlnet-aux inverts); HED and PiDiNet give
# edge logits (HED averages its five side outputs).
OUTPUT_LAYERS = {
    "lineart_learned": (["model4.1"], -1.0),
    "hed": ([f"block{i}.projection" for i in range(1, 6)], 1.0),
    "pidi": (["classifier"], 1.0),
}


def saturated(method: str, lines: bool):
    """An ``adjust`` that makes the network see lines everywhere (``lines``) or nowhere, whatever the image."""
    layers, line_sign = OUTPUT_LAYERS[method]

    def adjust(net: torch.nn.Module) -> None:
        for name in layers:
            layer = net.get_submodule(name)
            layer.weight.zero_()
            layer.bias.fill_(20.0 * line_sign * (1.0 if lines else -1.0))

    return adjust


def darker_than_neighbours_hed(net: torch.nn.Module) -> None:
    """Make HED a crude but real edge detector: block 1 measures how much darker a pixel is than its 4
    neighbours; its side output (minus a threshold) is the only non-zero logit."""
    for parameter in net.parameters():
        parameter.zero_()
    neighbours_minus_centre = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]) / 3.0
    net.block1.convs[0].weight[0] = neighbours_minus_centre  # summed over R, G, B (input 0..255)
    net.block1.convs[1].weight[0, 0, 1, 1] = 1.0
    net.block1.projection.weight[0, 0] = 1.0
    net.block1.projection.bias.fill_(-100.0)  # ignores Lanczos ringing, keeps a black-on-white edge (255)


def small(photo: np.ndarray) -> np.ndarray:
    return cv2.resize(photo, (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA)


def photos() -> torch.Tensor:
    """Two different small photos as one IMAGE batch."""
    return torch.cat([to_tensor(small(photo)) for photo in (astronaut(), chelsea())])


def drawing() -> np.ndarray:
    """Black strokes (one across, one down) on white paper."""
    paper = np.full((HEIGHT, WIDTH, 3), 255, np.uint8)
    cv2.line(paper, (16, 40), (112, 40), (0, 0, 0), 2)
    cv2.line(paper, (90, 55), (90, 88), (0, 0, 0), 2)
    return paper


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """HF_HUB_OFFLINE=1 and no network past loopback: such a connection or a hub download fails the test."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted in an offline test")

    def loopback_only(connect):
        def guarded(sock, address):
            if sock.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in ("127.0.0.1", "::1"):
                refuse(address)
            return connect(sock, address)

        return guarded

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket.socket, "connect", loopback_only(socket.socket.connect))
    monkeypatch.setattr(socket.socket, "connect_ex", loopback_only(socket.socket.connect_ex))
    for module in CONTROLNET_AUX_MODULES:
        monkeypatch.setattr(f"{module}.hf_hub_download", refuse)
    # A fresh model cache per test, so the detectors loaded here are dropped with it.
    monkeypatch.setattr(models, "_models", {})
    yield
    assert attempts == [], "network access attempted"


@pytest.fixture(scope="module")
def annotators(tmp_path_factory):
    """One annotators folder with random weights for every learned method."""
    folder = tmp_path_factory.mktemp("annotators")
    for method in LEARNED:
        write_weights(folder, method)
    return folder


def test_weight_files_have_the_real_files_sizes(annotators):
    """The architectures and file layouts are the real ones: the sizes match the manifest's to a fraction of 1 %
    (the rest is pickle framing)."""
    sizes = {entry["filename"]: entry["size"] for entry in yaml.safe_load(models_manifest().read_text())["models"]}
    for method in LEARNED.values():
        for name in method.files:
            assert (annotators / name).stat().st_size == pytest.approx(sizes[name], rel=0.005), name


@pytest.mark.parametrize("method", sorted(LEARNED))
def test_random_weights_give_input_sized_grey_images_that_follow_the_input(annotators, method):
    batch = photos()
    result = lineart(batch, method, RESOLUTION, [annotators])
    assert result.shape == (2, HEIGHT, WIDTH, 3) and result.dtype == torch.float32
    assert 0.0 <= result.min() and result.max() <= 1.0
    assert torch.equal(result[..., 0], result[..., 1]) and torch.equal(result[..., 1], result[..., 2])
    assert result[0].std() > 0, "the network's output, not a constant"
    assert not torch.equal(result[0], result[1]), "a different photo gives different lines"
    assert torch.equal(lineart(batch, method, RESOLUTION, [annotators]), result), "deterministic"
    single = lineart(batch[1:], method, RESOLUTION, [annotators])
    assert torch.equal(single[0], result[1]), "each image of a batch on its own"


@pytest.mark.parametrize("method", sorted(LEARNED))
def test_no_lines_is_black_and_lines_everywhere_is_white(tmp_path, method):
    photo = photos()[:1]
    blank = lineart(photo, method, RESOLUTION, [write_weights(tmp_path / "none", method, saturated(method, False))])
    inked = lineart(photo, method, RESOLUTION, [write_weights(tmp_path / "all", method, saturated(method, True))])
    assert blank.max() == 0.0
    assert inked.min() >= 254 / 255  # controlnet-aux truncates probability x 255 to uint8: 0.99999 is 254


def test_lines_are_white_on_black_where_the_drawing_is(tmp_path):
    paper = drawing()
    weights = write_weights(tmp_path, "hed", darker_than_neighbours_hed)
    lines = lineart(to_tensor(paper), "hed", RESOLUTION, [weights])[0, ..., 0].numpy()
    strokes = paper[..., 0] == 0
    near = cv2.dilate(strokes.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)
    assert lines[~near].max() == 0.0, "black away from the strokes"
    # Each stroke gives two thin edge lines, greyed a little by the resizing to 64-multiples and back.
    assert lines[36:46, 20:108].max(axis=0).min() > 0.5, "white all along the stroke across"
    assert lines[58:86, 85:96].max(axis=1).min() > 0.5, "white all along the stroke down"


def test_a_missing_lineart_file_is_model_missing_naming_it(tmp_path, annotators):
    (tmp_path / "sk_model.pth").write_bytes((annotators / "sk_model.pth").read_bytes())
    with pytest.raises(EthMumbaiError) as info:
        lineart(photos()[:1], "lineart_learned", RESOLUTION, [tmp_path])
    message = info.value.message
    assert info.value.code == "MODEL_MISSING"
    assert "annotators/sk_model2.pth" in message and "annotators/sk_model.pth" not in message
    assert "python scripts/fetch_models.py --only annotator_lineart" in message


def test_files_split_over_two_folders_are_model_missing(tmp_path, annotators):
    folders = [tmp_path / "fine", tmp_path / "coarse"]
    for folder, name in zip(folders, LEARNED["lineart_learned"].files, strict=True):
        folder.mkdir()
        (folder / name).write_bytes((annotators / name).read_bytes())
    with pytest.raises(EthMumbaiError) as info:
        lineart(photos()[:1], "lineart_learned", RESOLUTION, folders)
    assert info.value.code == "MODEL_MISSING" and "not found together" in info.value.message


# ---------------------------------------------------------------- the node, through a real ComfyUI


@pytest.fixture(scope="module")
def learned_comfy(tmp_path_factory, annotators):
    """A ComfyUI whose 'annotators' model folder (extra_model_paths.yaml) holds the random weights."""
    workdir = tmp_path_factory.mktemp("learned_comfy")
    config = workdir / "extra_model_paths.yaml"
    config.write_text(f"learned_lineart_test:\n    annotators: {json.dumps(str(annotators))}\n")
    proc = start_comfy(workdir, model_paths_config=config)
    yield proc
    proc.stop()


def test_node_gives_the_same_lines_through_comfyui(learned_comfy, annotators):
    # ComfyProcess runs the server with HF_HUB_OFFLINE=1; the socket guard here covers only this process.
    pixels = small(astronaut())
    graph = {"load": {"class_type": "EthMumbaiLoadImageBase64",
                      "inputs": {"image_base64": b64(encode(pixels)), "max_bytes": 1_000_000, "max_pixels": 1_000_000}}}
    for method in LEARNED:
        graph[method] = {"class_type": "EthMumbaiLineart",
                         "inputs": {"image": ["load", 0], "method": method, "resolution": RESOLUTION}}
        graph[f"out_{method}"] = {"class_type": "EthMumbaiSaveImageBase64",
                                  "inputs": {"images": [method, 0], "format": "png", "quality": 95}}
    entry = run_prompt(learned_comfy.url, graph)
    assert entry["status"]["status_str"] == "success", entry["status"]
    for method in LEARNED:
        (image,) = entry["outputs"][f"out_{method}"]["ethmumbai_images"]
        served = np.asarray(decode_b64_image(image["base64"]).convert("RGB"), np.int16)
        expected = lineart(to_tensor(pixels), method, RESOLUTION, [annotators])[0].numpy()
        assert served.shape == (HEIGHT, WIDTH, 3)
        # Same weights, input and CPU: the same levels (one allowed for float summation order across processes).
        assert np.abs(served - np.round(expected * 255)).max() <= 1, method
