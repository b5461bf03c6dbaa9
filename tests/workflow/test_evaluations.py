"""The speed presets cut the model evaluations of a job, counted by ``benchmarks/evaluations.py`` (its plugin wraps
the UNet's and the ControlNet's apply functions) while the production graph runs on the tiny models."""

from __future__ import annotations

from avatar_driver.contract import latest, load_workflows
from benchmarks.evaluations import TARGETS, measure


def test_speed_presets_cut_counted_evaluations(tmp_path):
    report = measure(size=256, repeat=1, workdir=tmp_path)["presets"]
    quality, fast, turbo = report["quality"], report["fast"], report["turbo"]
    workflow = latest(load_workflows())
    steps = {speed: workflow.resolve({}, speed=speed)["steps"] for speed in report}
    # cfg > 1: a conditional and an unconditional row per step, ControlNet on every step at end_percent 1.
    assert quality["unet_evaluations"] == quality["controlnet_evaluations"] == 2 * steps["quality"]
    # fast: guidance on the early steps only (one row a step after cfg_end); the ControlNet runs on the early steps
    # only (a call a step, with as many rows as the model has there), so it stops before the last step.
    assert steps["fast"] < fast["unet_evaluations"] < 2 * steps["fast"]
    assert 0 < fast["controlnet_calls"] < steps["fast"]
    assert fast["evaluations"] <= TARGETS["fast"] * quality["evaluations"]
    # turbo: cfg 1 from the first step, so one row of each model a step.
    assert turbo["unet_evaluations"] == turbo["controlnet_evaluations"] == steps["turbo"]
    assert turbo["evaluations"] <= TARGETS["turbo"] * quality["evaluations"]
    for speed, row in report.items():
        assert row.get("within_target", True), (speed, row)
