"""Does the device machine have every package the worker and the pack import? Checked here, at no device time.

    .venv/bin/python benchmarks/gpu/check_carry.py .whl [--kinds /work/.library/device/KINDS.md]

Imports what the benchmark runs outside ComfyUI's own needs (the kit's wheels cover those): the worker's
handler, the pack's core with mediapipe's two solutions, and the benchmark's own imports. Each third-party
distribution they load must be in the PyTorch image's package list (KINDS.md) or among the carried wheels.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
KINDS_MD = Path("/work/.library/device/KINDS.md")
MODULES = (
    "worker.handler", "custom_nodes.ethmumbai.core.face", "custom_nodes.ethmumbai.core.segment",
    "custom_nodes.ethmumbai.core.lineart", "custom_nodes.ethmumbai.core.composite",
    "mediapipe.python.solutions.face_detection", "mediapipe.python.solutions.selfie_segmentation",
    "benchmarks.gpu.bench",
)

# Imported here only because they are installed here; their importers go on without them.
OPTIONAL = {
    "aiodns", "pycares", "brotli", "backports-zstd",  # aiohttp's optional DNS resolver and decoders
}


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def image_packages(kinds_md: Path) -> set[str]:
    """The 'Packages:' list of the GPU image in KINDS.md."""
    match = re.search(r"Packages: (.+?)\.\s*$", kinds_md.read_text(), re.MULTILINE)
    if not match:
        raise SystemExit(f"no 'Packages:' list in {kinds_md}")
    return {normalize(p) for p in match.group(1).split(", ")}


def wheel_packages(folder: Path) -> set[str]:
    return {normalize(w.name.split("-")[0]) for w in folder.glob("*.whl")}


def loaded_distributions() -> set[str]:
    """Distributions whose files back a module imported by MODULES (by file, so namespace packages such as
    ``google`` count only the distribution actually loaded)."""
    sys.path.insert(0, str(REPO_ROOT))
    for module in MODULES:
        importlib.import_module(module)
    owner = {}
    for dist in importlib.metadata.distributions():
        for file in dist.files or []:
            if file.suffix in (".py", ".so"):
                owner[str(Path(file.locate()).resolve())] = dist.metadata["Name"]
    loaded = (getattr(module, "__file__", None) for module in list(sys.modules.values()))
    return {normalize(owner[key]) for path in loaded if path and (key := str(Path(path).resolve())) in owner}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("wheels", type=Path)
    ap.add_argument("--kinds", type=Path, default=KINDS_MD)
    args = ap.parse_args()
    if not args.kinds.is_file():
        print(f"check_carry: {args.kinds} not found; skipped")
        return
    in_image, carried = image_packages(args.kinds), wheel_packages(args.wheels)
    missing = sorted(loaded_distributions() - in_image - carried - OPTIONAL)
    if missing:
        raise SystemExit(f"check_carry: imported but neither in the device image nor in {args.wheels}: {missing}")
    print(f"check_carry: every imported distribution is in the image or carried ({len(carried)} wheels)")


if __name__ == "__main__":
    main()
