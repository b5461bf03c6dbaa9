#!/usr/bin/env bash
# Install the project's Python dependencies into the environment of PYTHON. The one recipe run by
# scripts/setup.sh (dev venv) and the Dockerfile (image venv), so the two cannot drift.
#   scripts/install_python_deps.sh PYTHON TORCH_REQUIREMENTS REQUIREMENTS [CONSTRAINTS]
#   scripts/install_python_deps.sh .venv/bin/python requirements/torch-cpu.txt requirements/dev.txt
#   scripts/install_python_deps.sh /opt/venv/bin/python requirements/torch-cuda.txt requirements/runtime.txt \
#       requirements/constraints.txt
# Extra pip install options (e.g. --dry-run) can be given in PIP_INSTALL_OPTIONS.
set -euo pipefail
if [ $# -lt 3 ] || [ $# -gt 4 ]; then
  sed -n '2,7p' "$0" >&2
  exit 2
fi
python=$1 torch_requirements=$2 requirements=$3 constraints=${4:-}

pip=("$python" -m pip --disable-pip-version-check install --quiet)
if [ -n "$constraints" ]; then pip+=(--constraint "$constraints"); fi
read -r -a options <<< "${PIP_INSTALL_OPTIONS:-}"
pip+=("${options[@]}")

"${pip[@]}" -r "$torch_requirements"
"${pip[@]}" -r "$requirements"
# See requirements/runtime.txt for why mediapipe goes in without its declared deps.
"${pip[@]}" --no-deps mediapipe==0.10.21
