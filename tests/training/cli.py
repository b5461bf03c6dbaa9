"""Running the kit's commands as a user does: ``python -m training.<command>`` in a fresh process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from avatar_driver.contract import latest, load_workflows
from avatar_driver.paths import REPO_ROOT

# What ComfyUI logs when LoraLoader meets a key it cannot use.
UNLOADED_MARKERS = ("lora key not loaded", "NOT LOADED")


def checkpoint_path(models: dict) -> Path:
    """The tiny checkpoint under the workflow's own file name (``worker_models``), so the workflow runs unchanged;
    the LoRA input is swapped for the trained file by the validator, as in a real run."""
    (name,) = [name for name, folder in latest(load_workflows()).model_files().items() if folder == "checkpoints"]
    return models["models_dir"] / "checkpoints" / name


def run_cli(args: list[str], log_path: Path, expect: int = 0) -> str:
    """Run ``python -m <args>``; write its output to ``log_path``; fail the test unless it exits with ``expect``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                            timeout=900)
    log_path.write_text(result.stdout + result.stderr)
    if result.returncode != expect:
        pytest.fail(f"{' '.join(args[:2])} exited {result.returncode}, not {expect}:\n"
                    f"{(result.stdout + result.stderr)[-6000:]}")
    return result.stdout + result.stderr
