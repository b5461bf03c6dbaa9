#!/usr/bin/env bash
# One-time (idempotent) set-up: .venv, Python deps, ComfyUI 0.3.75, the pack linked in, model paths.
#   TORCH_REQUIREMENTS=requirements/torch-cuda.txt scripts/setup.sh   # GPU machines
#   COMFYUI_DIR=~/ComfyUI scripts/setup.sh                          # use an existing ComfyUI
#   SETUP_FRONTEND=0 skips the web page's npm install.
set -euo pipefail
cd "$(dirname "$0")/.."
# The image's Python (3.12, which requirements/constraints.txt is locked for) where it runs, else 3.11.
if [ -z "${PYTHON:-}" ]; then
  for candidate in python3.12 python3.11; do
    if "$candidate" -c '' 2>/dev/null; then PYTHON=$candidate; break; fi
  done
fi
TORCH_REQUIREMENTS=${TORCH_REQUIREMENTS:-requirements/torch-cpu.txt}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The same install script and lock as the Dockerfile's (there: torch-cuda.txt and runtime.txt), so tests run on the
# image's package versions; test-only packages (dev.txt) are not in the lock and take pip's choice.
bash scripts/install_python_deps.sh .venv/bin/python "$TORCH_REQUIREMENTS" requirements/dev.txt \
  requirements/constraints.txt

.venv/bin/python scripts/install_comfyui.py

if [ "${SETUP_FRONTEND:-1}" = 1 ] && [ -f frontend/package-lock.json ]; then
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
