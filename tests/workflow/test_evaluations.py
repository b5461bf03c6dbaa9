"""The speed presets cut the model evaluations of a job, counted by ``benchmarks/evaluations.py`` (its plugin wraps
the UNet's and the ControlNet's apply functions) while the production graph runs on the tiny models."""

from __future__ import annotations

from avatar_driver.contract import latest, load_workflows
from benchmarks.evaluations import TARGETS, measure


def test_speed_presets_cut_counted_evaluations(tmp_path):
    report = measure(size=256, repeat=1, workdir=tmp_path)["presets"]
    quality, fast = report["quality"], report["fast"]
    steps = latest(load_workflows()).defaults()["steps"]
    # cfg > 1: a conditional and an unconditional row per step, ControlNet on every step at end_percent 1.
    assert quality["unet_evaluations"] == quality["controlnet_evaluations"] == 2 * steps
    assert fast["unet_evaluations"] < quality["unet_evaluations"]
    assert 0 < fast["controlnet_evaluations"] < fast["unet_evaluations"]  # cut off before the last step
    assert fast["evaluations"] <= TARGETS["fast"] * quality["evaluations"]
    for speed, row in report.items():
        assert row.get("within_target", True), (speed, row)
