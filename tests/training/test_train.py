"""LoRA training end to end on the CPU with the tiny SDXL-shaped model, through the real avatar workflow.

One module-scoped run of the real CLI (``python -m training.train``, a subprocess, so this process never
imports ComfyUI): prepare a dataset from generated images, train 4 steps with a checkpoint at step 2,
render the validation grid (photo and a text-to-image prompt × strengths 0 and 1) through
workflows/ethmumbai_avatar/v1 in a real ComfyUI at both checkpoints, then resume to step 6. The tiny model's
renders are random texture: the tests compare renders with each other, never with what a picture should show.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from skimage import data

from avatar_driver.demo.tiny_models import TINY_PLUGIN
from avatar_driver.manifest import ModelEntry, sha256_file
from avatar_driver.paths import REPO_ROOT
from tests.training.cli import UNLOADED_MARKERS, checkpoint_path, run_cli

NAME = "ethmumbai_style_test"
LORA_SUFFIXES = (".lora_down.weight", ".lora_up.weight", ".alpha")
SAMPLE_PROMPT = "{trigger}, a tiger"


@pytest.fixture(scope="module")
def run(tmp_path_factory, prepared, worker_models, encoding_cache):
    root = tmp_path_factory.mktemp("training")
    assert prepared["code"] == 0
    (root / "photos").mkdir()
    Image.fromarray(data.astronaut()).save(root / "photos" / "astronaut.png")
    out = root / "run"
    common = ["--base-model", str(checkpoint_path(worker_models)), "--dataset", str(prepared["out"]), "--output",
              str(out), "--name", NAME, "--plugin", str(TINY_PLUGIN), "--rank", "4", "--alpha", "4",
              "--learning-rate", "1e-2", "--save-every", "2", "--log-every", "1", "--device", "cpu",
              "--cache-dir", str(encoding_cache)]
    first = run_cli(["training.train", *common, "--steps", "4", "--validation-photos", str(root / "photos"),
                     "--strengths", "0,1", "--val-param", "size=256", "--val-param", "steps=2",
                     "--sample-prompt", SAMPLE_PROMPT, "--model-paths-config", str(worker_models["model_paths_config"])],
                    root / "first.log")
    losses_at_4 = json.loads((out / "losses.json").read_text())
    step4 = load_file(out / "checkpoints" / f"{NAME}-step000004.safetensors")
    resumed = run_cli(["training.train", *common, "--steps", "6", "--resume"], root / "resumed.log")
    return {"out": out, "first": first, "resumed": resumed, "losses_at_4": losses_at_4, "step4": step4}


def lora_tensors(run, step: int) -> dict:
    return load_file(run["out"] / "checkpoints" / f"{NAME}-step{step:06d}.safetensors")


def test_loss_is_finite_and_the_weights_changed(run):
    losses = json.loads((run["out"] / "losses.json").read_text())
    assert len(losses["train"]) == 6 and all(math.isfinite(v) for v in losses["train"])
    assert set(losses["val"]) == {"2", "4", "6"} and all(math.isfinite(v) for v in losses["val"].values())
    step2, step4 = lora_tensors(run, 2), run["step4"]
    # lora_up starts at zero: any non-zero value was learned; and it keeps moving between checkpoints.
    ups = [key for key in step4 if key.endswith(".lora_up.weight")]
    assert ups and all(step4[key].abs().max() > 0 for key in ups)
    assert any(not np.array_equal(step2[key].float().numpy(), step4[key].float().numpy()) for key in ups)


def test_lora_has_kohya_unet_keys_and_loads_fully_in_lora_loader(run):
    lora = load_file(run["out"] / f"{NAME}.safetensors")
    assert all(key.startswith("lora_unet_") and key.endswith(LORA_SUFFIXES) for key in lora)
    sidecar = json.loads((run["out"] / f"{NAME}.json").read_text())
    assert sidecar["lora"]["ema"] is False
    # The trainer's check runs comfy.sd.load_lora_for_models, LoraLoader's own code path.
    assert sidecar["lora"]["comfyui_check"] == {"patched_weights": len(lora) // 3, "unloaded_keys": []}
    # And ComfyUI's LoraLoader in the avatar workflow, rendering at strength 1, warned about no key.
    log = (run["out"] / "validation" / "comfy" / "comfyui.log").read_text(errors="replace")
    assert log.count("Prompt executed") >= 12  # the renders ran here (steps 0, 2, 4 x photo, prompt x strengths 0, 1)
    assert not [line for line in log.splitlines() if line.startswith(UNLOADED_MARKERS) or "lora key" in line]


def render(run, label: str, strength: int) -> np.ndarray:
    path = run["out"] / "validation" / label / f"astronaut_strength{strength}.png"
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_the_lora_changes_the_workflow_output(run):
    off_2, off_4 = render(run, "step000002", 0), render(run, "step000004", 0)
    on_0, on_2, on_4 = (render(run, label, 1) for label in ("step000000", "step000002", "step000004"))
    assert off_2.shape == (256, 256, 3)
    assert np.array_equal(off_2, off_4)  # fixed seed, LoRA off: the same image at every checkpoint
    assert np.array_equal(on_0, off_2)  # the untrained LoRA (zero up-weights) changes nothing
    assert np.abs(on_4 - off_4).mean() > 1.0  # the trained LoRA at strength 1 changes the avatar
    assert np.abs(on_4 - on_2).mean() > 0.5  # and more training changes it further


def test_sample_prompts_render_text_to_image_with_the_trigger_word(run):
    assert "validation: sample prompt 1: 'ethmumbai_style, a tiger'" in run["first"]
    folder = run["out"] / "validation"
    off, on_0, on_4 = (np.asarray(Image.open(folder / label / f"prompt1_strength{s}.png").convert("RGB"), np.int16)
                       for label, s in (("step000004", 0), ("step000000", 1), ("step000004", 1)))
    photo = render(run, "step000004", 0)
    assert off.shape == (256, 256, 3) and np.abs(off - photo).mean() > 1.0  # not the photo workflow's render
    assert np.array_equal(on_0, off)  # the untrained LoRA changes nothing here either
    assert np.abs(on_4 - off).mean() > 1.0  # the trained one does


def test_validation_grids_and_loss_plot_are_written(run):
    for label in ("step000000", "step000002", "step000004"):  # before training, at the checkpoint, at the end
        with Image.open(run["out"] / "validation" / f"{label}.png") as sheet:
            assert sheet.format == "PNG" and sheet.width >= 2 * 256 and sheet.height >= 2 * 256  # photo + prompt
    with Image.open(run["out"] / "loss.png") as plot:
        assert plot.format == "PNG" and plot.size == (800, 450)
    # the photo folder never reaches ComfyUI's input/output folders
    comfy = run["out"] / "validation" / "comfy"
    assert not [p for name in ("input", "output", "temp") for p in (comfy / name).glob("**/*") if p.is_file()]


def test_resume_continues_from_the_last_state(run):
    assert "resumed from" in run["resumed"] and "at step 4" in run["resumed"]
    losses = json.loads((run["out"] / "losses.json").read_text())
    assert losses["train"][:4] == run["losses_at_4"]["train"]
    with (run["out"] / "loss.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["loss"]) for r in rows] == pytest.approx(losses["train"], rel=1e-5)
    assert {float(r["lr"]) for r in rows} == {1e-2}  # no warm-up asked for
    assert "step 6/6 loss" in run["resumed"] and "ETA" in run["resumed"]
    assert "encoded 0 latents and 0 captions" in run["resumed"]  # the shared cache
    states = sorted(p.name for p in (run["out"] / "checkpoints").glob("state-step*.pt"))
    assert states == ["state-step000004.pt", "state-step000006.pt"]  # --keep-states 2
    assert (run["out"] / "checkpoints" / f"{NAME}-step000006.safetensors").is_file()


def test_sidecar_has_hashes_hyperparameters_and_a_manifest_entry(run):
    sidecar = json.loads((run["out"] / f"{NAME}.json").read_text())
    lora_path = run["out"] / f"{NAME}.safetensors"
    assert sidecar["lora"]["sha256"] == sha256_file(lora_path) and sidecar["lora"]["size"] == lora_path.stat().st_size
    assert sidecar["base_model"]["sha256"] and len(sidecar["dataset"]["sha256"]) == 64
    assert sidecar["dataset"]["train_images"] == 4 and sidecar["dataset"]["val_images"] == 1
    assert sidecar["hyperparameters"]["rank"] == 4 and sidecar["hyperparameters"]["steps"] == 6
    assert sidecar["dataset"]["trigger"] == "ethmumbai_style"
    entry = ModelEntry.model_validate(sidecar["manifest_entry"])  # the manifest's own schema
    assert entry.folder == "loras" and entry.filename == f"{NAME}.safetensors" and entry.pinned
    assert entry.sha256 == sidecar["lora"]["sha256"]
    assert sidecar["manifest_yaml"].startswith(f"- name: {entry.name}\n")


def test_metadata_is_kohya_and_modelspec_read_back_by_safetensors(run):
    path = run["out"] / f"{NAME}.safetensors"
    with safe_open(path, "pt") as handle:
        meta = handle.metadata()
    sidecar = json.loads((run["out"] / f"{NAME}.json").read_text())
    assert meta["ss_base_model_version"] == "sdxl_base_v1-0"
    assert meta["modelspec.architecture"] == "stable-diffusion-xl-v1-base/lora"
    assert meta["modelspec.trigger_phrase"] == "ethmumbai_style" and meta["ss_output_name"] == NAME
    assert (meta["ss_network_dim"], meta["ss_network_alpha"], meta["ss_steps"]) == ("4", "4", "6")
    assert meta["ss_new_sd_model_hash"] == sidecar["base_model"]["sha256"]
    assert meta["ethmumbai.dataset_sha256"] == sidecar["dataset"]["sha256"]
    assert json.loads(meta["ss_tag_frequency"])["train"]["ethmumbai_style"] == 4  # every caption has the trigger
    # A1111's hash of a LoRA: sha256 of the bytes after the header.
    raw = path.read_bytes()
    header = int.from_bytes(raw[:8], "little")
    assert meta["sshs_model_hash"] == hashlib.sha256(raw[8 + header:]).hexdigest()
    assert list(json.loads(raw[8:8 + header])) == sorted(json.loads(raw[8:8 + header]))  # sorted: reproducible


def test_lora_layers_for_the_real_sdxl_unet_all_load():
    """The tiny model has 1 transformer block per level; SDXL has 70. Check every name on the real layout."""
    result = subprocess.run([sys.executable, "-m", "tests.training.sdxl_keys"], cwd=REPO_ROOT, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["target"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert rows["transformer"]["model_class"] == "SDXL"
    for target, layers in (("transformer", 722), ("attention", 560)):
        assert rows[target]["layers"] == layers and rows[target]["patched"] == layers
        assert rows[target]["keys"] == 3 * layers and rows[target]["unloaded"] == []
