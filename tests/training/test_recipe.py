"""Dry run, presets, early stop, recipe flags, attention choice, metadata and reproducible files, on the tiny model.

The recipe flags are checked twice: for what each must do, in ``recipe_probe`` (a real Trainer on the tiny model in
a subprocess), and through the real CLI: two identical runs with every flag, stopped at step 3 of 10.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys

import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file
from skimage import data

from avatar_driver.demo.tiny_models import TINY_PLUGIN
from avatar_driver.paths import REPO_ROOT
from tests.training.cli import UNLOADED_MARKERS, checkpoint_path, run_cli
from training.cache import train_size
from training.train import main as train_main
from training.train import stop_on_interrupt

NAME = "recipe"
RECIPE = ["--noise-offset", "0.1", "--min-snr-gamma", "5", "--caption-dropout", "0.3", "--warmup-steps", "2",
          "--ema", "0.9", "--attention", "sdpa"]
STEP3 = f"{NAME}-step000003.safetensors"


@pytest.fixture(scope="module")
def probe(prepared, worker_models, encoding_cache) -> dict:
    result = subprocess.run([sys.executable, "-m", "tests.training.recipe_probe", str(checkpoint_path(worker_models)),
                             str(prepared["out"]), str(encoding_cache), str(TINY_PLUGIN)], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_caption_dropout_uses_the_cached_empty_embedding_at_the_given_rate(probe):
    seen = probe["caption_dropout"]
    rate, draws = seen["rate"], seen["draws"]
    spread = 4 * math.sqrt(draws * rate * (1 - rate))  # binomial: 4 standard deviations
    assert abs(seen["dropped"] - rate * draws) < spread and seen["same_seed_same_mask"]
    assert seen["dropped_use_cached_empty_embedding"] and seen["kept_use_caption"]
    assert seen["cached_vs_fresh_empty_max_difference"] < 1e-3 < seen["caption_vs_empty_min_difference"]


def test_min_snr_weights_follow_min_snr_over_snr(probe):
    rows = probe["min_snr"]["rows"]
    for row in rows:
        assert row["ratio"] == pytest.approx(row["expected"], rel=1e-5)
    assert rows[0]["expected"] < 0.01 and rows[-1]["expected"] == 1.0  # low noise down-weighted, high noise kept


def test_noise_offset_shifts_each_channel_mean(probe):
    seen = probe["noise_offset"]
    assert seen["shift_spatial_std"] < 1e-6  # the same value over each channel's pixels...
    shifts = seen["per_channel_shift"]
    assert all(abs(s) > 1e-4 for s in shifts) and len({round(s, 6) for s in shifts}) == len(shifts)  # ...per channel
    assert max(abs(s) for s in shifts) < 10 * seen["offset"]


def test_warmup_ramps_the_learning_rate_linearly(probe):
    lr = probe["learning_rate"]
    assert probe["warmup_and_ema"]["lrs"] == pytest.approx([lr / 4, lr / 2, 3 * lr / 4, lr, lr])


def test_ema_weights_follow_the_recurrence_and_are_what_is_saved(probe):
    seen = probe["warmup_and_ema"]
    assert seen["ema_max_error"] < 1e-6 and seen["ema_raw_max_difference"] > 1e-4
    assert seen["saved_is_ema"] and not seen["saved_is_raw"] and seen["raw_weights_back_after_save"]


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, prepared, worker_models, encoding_cache) -> dict:
    """Two identical runs with every recipe flag, --stop-at 3 of 10, into different folders."""
    root = tmp_path_factory.mktemp("stopped")
    logs = []
    for index in (1, 2):
        logs.append(run_cli(["training.train", "--base-model", str(checkpoint_path(worker_models)),
                             "--dataset", str(prepared["out"]), "--output", str(root / f"run{index}"), "--name", NAME,
                             "--plugin", str(TINY_PLUGIN), "--rank", "4", "--alpha", "4", "--learning-rate", "1e-2",
                             "--steps", "10", "--stop-at", "3", "--save-every", "2", "--log-every", "1",
                             "--device", "cpu", "--cache-dir", str(encoding_cache), *RECIPE], root / f"run{index}.log"))
    return {"root": root, "runs": [root / "run1", root / "run2"], "logs": logs, "models": worker_models}


def test_stop_at_writes_the_state_and_a_lora_that_loads_in_comfyui(stopped, tmp_path):
    run = stopped["runs"][0]
    assert "stopped (--stop-at 3) at step 3 of 10" in stopped["logs"][0]
    assert (run / "checkpoints" / "state-step000003.pt").is_file() and not (run / f"{NAME}.safetensors").exists()
    sidecar = json.loads((run / STEP3).with_suffix(".json").read_text())
    lora = load_file(run / STEP3)
    assert sidecar["lora"]["comfyui_check"] == {"patched_weights": len(lora) // 3, "unloaded_keys": []}
    # And ComfyUI's LoraLoader in a real ComfyUI (training.validate renders the stopped file).
    (tmp_path / "photos").mkdir()
    Image.fromarray(data.astronaut()).save(tmp_path / "photos" / "astronaut.png")
    run_cli(["training.validate", str(run), "--photos", str(tmp_path / "photos"), "--lora", STEP3,
             "--strengths", "1", "--param", "size=256", "--param", "steps=1", "--prompt", "{trigger} test",
             "--model-paths-config", str(stopped["models"]["model_paths_config"])], tmp_path / "validate.log")
    comfy_log = (run / "validation" / "comfy" / "comfyui.log").read_text(errors="replace")
    assert comfy_log.count("Prompt executed") >= 2  # the photo and the prompt, at strength 1
    assert not [line for line in comfy_log.splitlines() if line.startswith(UNLOADED_MARKERS) or "lora key" in line]
    assert (run / "validation" / "recipe-step000003" / "prompt1_strength1.png").is_file()


def test_two_identical_runs_write_identical_files_and_share_the_cache(stopped):
    first, second = stopped["runs"]
    for name in (STEP3, f"checkpoints/{NAME}-step000002.safetensors"):
        assert (first / name).read_bytes() == (second / name).read_bytes()
    assert "encoded 0 latents and 0 captions" in stopped["logs"][1]  # the first run (or an earlier one) filled it


def test_recipe_flags_reach_the_metadata_the_csv_and_the_saved_weights(stopped):
    run = stopped["runs"][0]
    with safe_open(run / STEP3, "pt") as handle:
        meta = handle.metadata()
    assert {key: meta[key] for key in ("ss_noise_offset", "ss_min_snr_gamma", "ss_caption_dropout_rate",
                                       "ss_lr_warmup_steps", "ss_lr_scheduler", "ethmumbai.ema_decay", "ss_steps",
                                       "ss_max_train_steps")} == {
        "ss_noise_offset": "0.1", "ss_min_snr_gamma": "5", "ss_caption_dropout_rate": "0.3", "ss_lr_warmup_steps": "2",
        "ss_lr_scheduler": "constant_with_warmup", "ethmumbai.ema_decay": "0.9", "ss_steps": "3",
        "ss_max_train_steps": "10"}
    with (run / "loss.csv").open() as handle:
        assert [float(row["lr"]) for row in csv.DictReader(handle)] == [0.005, 0.01, 0.01]
    state = torch.load(run / "checkpoints" / "state-step000003.pt", weights_only=True)
    saved = load_file(run / STEP3)
    ups = [key for key in saved if key.endswith(".lora_up.weight")]
    weights = {kind: {key: state[kind][f"layers.{key.removesuffix('.lora_up.weight')}.up.weight"].half()
                      for key in ups} for kind in ("ema", "network")}
    assert all(torch.equal(saved[key], weights["ema"][key]) for key in ups)
    assert not all(torch.equal(saved[key], weights["network"][key]) for key in ups)
    assert "ComfyUI's attention_pytorch" in stopped["logs"][0]  # --attention sdpa


@pytest.fixture(scope="module")
def dry(tmp_path_factory, prepared, worker_models, encoding_cache) -> dict:
    root = tmp_path_factory.mktemp("dry")
    out = run_cli(["training.train", "--base-model", str(checkpoint_path(worker_models)), "--dataset",
                   str(prepared["out"]), "--output", str(root / "run"), "--plugin", str(TINY_PLUGIN), "--device", "cpu",
                   "--cache-dir", str(encoding_cache), "--dry-run", "--preset", "mac16", "--rank", "4",
                   "--steps", "1500"], root / "dry.log")
    fields = dict(re.findall(r"^  ([a-zA-Z ]+): (.*)$", out, flags=re.M))
    return {"root": root, "out": out, "fields": fields}


def test_dry_run_prints_memory_seconds_per_step_and_eta_and_writes_nothing(dry):
    fields = dry["fields"]
    assert set(fields) == {"preset", "device", "LoRA", "data", "cache", "peak memory", "seconds per step", "ETA"}
    assert fields["preset"] == "mac16"
    # mac16's precision and attention; its alpha 8; the explicit --rank 4 wins over its rank 8.
    assert fields["device"] == "cpu, UNet bfloat16, attention attention_sub_quad (--attention sub-quadratic)"
    assert fields["LoRA"].startswith("rank 4, alpha 8, transformer, ")
    assert fields["data"].startswith("4 train + 1 val images at ") and "batch 1; gradient checkpointing on" in fields["data"]
    peak = re.fullmatch(r"([0-9.]+) GB, process peak RSS \(getrusage\)", fields["peak memory"])
    assert peak and float(peak.group(1)) > 0
    per_step = float(fields["seconds per step"].split()[0])
    eta = re.fullmatch(r"1500 steps x ([0-9.]+) s = (\S+) \(training only.*\)", fields["ETA"])
    assert eta and float(eta.group(1)) == per_step > 0
    assert not (dry["root"] / "run").exists()  # no LoRA, no state, no config


def test_presets_are_data_with_known_options():
    presets = json.loads((REPO_ROOT / "training" / "presets.json").read_text())
    assert set(presets) == {"mac16", "mac32", "mac64", "cuda24"}
    from training.train import parse_args

    for name, preset in presets.items():
        config, _, _ = parse_args(["--base-model", "b", "--dataset", "d", "--output", "o", "--preset", name])
        assert {key: getattr(config, key) for key in preset["settings"]} == preset["settings"]
        assert preset["label"] and preset["why"]


def test_first_ctrl_c_asks_to_stop_after_the_step_and_a_second_one_interrupts():
    before = signal.getsignal(signal.SIGINT)
    with stop_on_interrupt() as asked:
        os.kill(os.getpid(), signal.SIGINT)
        assert asked == ["Ctrl-C"]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_in_a_real_run_writes_the_state_and_a_usable_lora(tmp_path, prepared, worker_models, encoding_cache):
    out = tmp_path / "run"
    command = [sys.executable, "-m", "training.train", "--base-model", str(checkpoint_path(worker_models)),
               "--dataset", str(prepared["out"]), "--output", str(out), "--name", NAME, "--plugin", str(TINY_PLUGIN),
               "--rank", "4", "--alpha", "4", "--steps", "1000", "--log-every", "1", "--device", "cpu",
               "--cache-dir", str(encoding_cache)]
    proc = subprocess.Popen(command, cwd=REPO_ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in proc.stdout:  # the first training step, then Ctrl-C as a user presses it
            seen.append(line)
            if "step 1/1000" in line:
                proc.send_signal(signal.SIGINT)
                break
        rest, _ = proc.communicate(timeout=600)
    finally:
        proc.kill()
    log = "".join(seen) + rest
    assert proc.returncode == 0, log[-4000:]
    stopped = re.search(r"stopped \(Ctrl-C\) at step (\d+) of 1000", log)
    assert stopped, log[-4000:]
    step = int(stopped.group(1))
    assert (out / "checkpoints" / f"state-step{step:06d}.pt").is_file()
    sidecar = json.loads((out / f"{NAME}-step{step:06d}.json").read_text())
    assert sidecar["lora"]["comfyui_check"]["unloaded_keys"] == [] and sidecar["training"]["steps"] == step


@pytest.mark.parametrize("breakage, message", [
    ("no_caption", "has no caption file"),
    ("truncated", "is not a readable image"),
    ("one_image", "has 1 image(s); at least 2 are needed"),
    ("no_model", "not found (python scripts/fetch_models.py"),
])
def test_bad_training_inputs_are_one_clear_line(tmp_path, capsys, breakage, message):
    train = tmp_path / "data" / "train"
    train.mkdir(parents=True)
    for name in ("a", "b"):
        Image.fromarray(data.astronaut()[:256, :256]).save(train / f"{name}.png")
        (train / f"{name}.txt").write_text("t, a person")
    model = tmp_path / "model.safetensors"
    model.write_bytes(b"")
    if breakage == "no_caption":
        (train / "b.txt").unlink()
    elif breakage == "truncated":
        (train / "b.png").write_bytes((train / "b.png").read_bytes()[:2000])
    elif breakage == "one_image":
        (train / "b.png").unlink()
    else:
        model.unlink()
    code = train_main(["--base-model", str(model), "--dataset", str(tmp_path / "data"), "--output",
                       str(tmp_path / "run"), "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.startswith("error: ") and "Traceback" not in err
    assert "comfy.model_management" not in sys.modules  # refused before ComfyUI was imported


def test_cache_keys_carry_the_training_size():
    assert train_size(320, 192, None) == (320, 192)
    assert train_size(320, 192, 256) == (320, 192)  # already within 256²: never enlarged or changed
    assert train_size(1216, 832, 768) == (896, 640)  # the nearest 768 bucket of that aspect
