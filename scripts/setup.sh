#!/usr/bin/env bash
# One-time (idempotent) set-up: .venv, Python deps, ComfyUI 0.3.75, the pack linked in, model paths.
#   TORCH_REQUIREMENTS=requirements/torch-cuda.txt scripts/setup.sh   # GPU machines
#   COMFYUI_DIR=~/ComfyUI scripts/setup.sh                          # use an existing ComfyUI
#   SETUP_FRONTEND=0 skips the web page's npm install.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
TORCH_REQUIREMENTS=${TORCH_REQUIREMENTS:-requirements/torch-cpu.txt}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The same install script as the Dockerfile's (there: torch-cuda.txt, runtime.txt and constraints.txt).
bash scripts/install_python_deps.sh .venv/bin/python "$TORCH_REQUIREMENTS" requirements/dev.txt

.venv/bin/python scripts/install_comfyui.py

if [ "${SETUP_FRONTEND:-1}" = 1 ] && [ -f frontend/package-lock.json ]; then
  (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
fi
echo "setup: done"
