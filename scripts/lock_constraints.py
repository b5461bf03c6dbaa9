"""Write requirements/constraints.txt: the Docker image's pins, taken from the project's working venv.

    .venv/bin/python scripts/lock_constraints.py     # needs PyPI; about a minute

1. Reads the versions installed in the venv running this script for everything the runtime requirements
   (requirements/runtime.txt and its -r includes, mediapipe) pull in; torch and torchvision are the exact
   pins of requirements/torch-cuda.txt. Test-only packages (requirements/dev.txt) stay out.
2. Asks pip (a current one, in a throwaway venv) to resolve the same requirements for the image's platform,
   CPython 3.12 on manylinux x86_64, constrained to those versions, without installing anything. That adds
   what only the image needs: torch's CUDA wheels (nvidia-*, cuda-toolkit, triton) and packages that only
   Python 3.12 needs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parent.parent
TORCH = REPO / "requirements" / "torch-cuda.txt"  # exact pins, taken as they are (the venv may hold another build)
REQUIREMENTS = [TORCH, REPO / "requirements" / "runtime.txt"]
NO_DEPS = ["mediapipe"]  # installed with --no-deps by scripts/install_python_deps.sh
OUT = REPO / "requirements" / "constraints.txt"
IMAGE_PYTHON = "3.12"  # Ubuntu 24.04's python3, the Dockerfile's interpreter
IMAGE_PLATFORMS = [f"manylinux_2_{minor}_x86_64" for minor in range(5, 40)] + ["manylinux2014_x86_64"]


def requirement_lines(path: Path) -> list[str]:
    """Requirement specifiers of a requirements file, following ``-r`` includes; options are skipped."""
    lines = []
    for raw in path.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line.startswith("-r "):
            lines += requirement_lines(path.parent / line[3:].strip())
        elif line and not line.startswith("-"):
            lines.append(line)
    return lines


def exact_pins(path: Path) -> dict[str, str]:
    pins = {}
    for req in map(Requirement, requirement_lines(path)):
        (spec,) = req.specifier
        if spec.operator != "==":
            raise SystemExit(f"{path}: {req} is not an exact pin")
        pins[canonicalize_name(req.name)] = spec.version
    return pins


def venv_closure(roots: list[Requirement], fixed: dict[str, str]) -> dict[str, str]:
    """Installed name -> version for the roots and everything they require (markers and extras honoured).

    Packages in ``fixed`` get that version; their dependencies are read from the installed build, if any.
    """
    pins: dict[str, str] = dict(fixed)
    seen: set[tuple[str, frozenset[str]]] = set()  # a package asked for with new extras is walked again
    todo = [(canonicalize_name(req.name), frozenset(req.extras)) for req in roots]
    while todo:
        name, extras = todo.pop()
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            if name in fixed:
                continue  # e.g. torchvision, not in the dev venv: pip resolves its dependencies later
            raise
        pins[name] = fixed.get(name, dist.version)
        if name in NO_DEPS:
            continue
        envs = [{"extra": extra} for extra in extras] or [{"extra": ""}]
        for dep in map(Requirement, dist.requires or []):
            if dep.marker is None or any(dep.marker.evaluate(env) for env in envs):
                todo.append((canonicalize_name(dep.name), frozenset(dep.extras)))
    return pins


def resolve_for_image(venv_pins: dict[str, str], tmp: Path) -> dict[str, str]:
    """What pip installs in the image for REQUIREMENTS, held to ``venv_pins`` (dry run, nothing installed)."""
    constraints = tmp / "venv-constraints.txt"
    constraints.write_text(render(venv_pins))
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    pip = [str(tmp / "venv" / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
    # pip 23 downloads every wheel to read its metadata (GBs of CUDA libraries); a current pip reads PEP 658 metadata.
    subprocess.run([*pip, "install", "--quiet", "--upgrade", "pip"], check=True)
    report = tmp / "report.json"
    platforms = [arg for platform in IMAGE_PLATFORMS for arg in ("--platform", platform)]
    requirements = [arg for path in REQUIREMENTS for arg in ("-r", str(path))]
    subprocess.run(
        [*pip, "install", "--quiet", "--dry-run", "--ignore-installed", "--target", str(tmp / "target"),
         "--only-binary=:all:", "--python-version", IMAGE_PYTHON, *platforms, "--report", str(report),
         "-c", str(constraints), *requirements],
        check=True,
    )
    installs = json.loads(report.read_text())["install"]
    return {canonicalize_name(i["metadata"]["name"]): i["metadata"]["version"] for i in installs}


def render(pins: dict[str, str]) -> str:
    head = [
        "# The Docker image's pins (pip --constraint), for CPython 3.12 on manylinux x86_64. Generated by",
        "# scripts/lock_constraints.py from the project's working venv; regenerate after changing requirements/*.txt.",
    ]
    return "\n".join(head + [f"{name}=={version}" for name, version in sorted(pins.items())]) + "\n"


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    roots = [Requirement(line) for path in REQUIREMENTS for line in requirement_lines(path)]
    venv_pins = venv_closure(roots + [Requirement(name) for name in NO_DEPS], exact_pins(TORCH))
    with tempfile.TemporaryDirectory() as tmp:
        image_pins = resolve_for_image(venv_pins, Path(tmp))
    image_pins |= {name: venv_pins[name] for name in NO_DEPS}
    OUT.write_text(render(image_pins))
    print(f"wrote {OUT.relative_to(REPO)}: {len(image_pins)} pins", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
