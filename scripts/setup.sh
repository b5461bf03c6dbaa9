#!/usr/bin/env bash
# One-time (idempotent) set-up: .venv, Python deps, ComfyUI 0.3.75, the pack linked in, model paths, the web page's
# packages, and the Debian packages the tests drive (chromium, redis-server). A step whose inputs have not changed
# since it last succeeded is skipped (stamp files), so a second run takes seconds.
#   TORCH_REQUIREMENTS=requirements/torch-cuda.txt scripts/setup.sh   # GPU machines
#   COMFYUI_DIR=~/ComfyUI scripts/setup.sh                          # use an existing ComfyUI
#   SETUP_FRONTEND=0 skips the web page's npm install; SETUP_SYSTEM=0 skips the Debian packages.
set -euo pipefail
cd "$(dirname "$0")/.."
# The image's Python (3.12, which requirements/constraints.txt is locked for) where it runs, else 3.11.
if [ -z "${PYTHON:-}" ]; then
  for candidate in python3.12 python3.11; do
    if "$candidate" -c '' 2>/dev/null; then PYTHON=$candidate; break; fi
  done
fi
TORCH_REQUIREMENTS=${TORCH_REQUIREMENTS:-requirements/torch-cpu.txt}

# A step's stamp holds the hash of its inputs; unchanged inputs and a present stamp mean the step is done.
inputs_hash() { cat "$@" | sha256sum | cut -d' ' -f1; }
is_done() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

if [ "${SETUP_SYSTEM:-1}" = 1 ]; then
  missing=()
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)        # the browser tests (Playwright drives it)
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server) # the page's shared-state tests
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing Debian packages: ${missing[*]}"
      DEBIAN_FRONTEND=noninteractive apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "setup: WARNING: the tests need Debian's ${missing[*]}; install with: sudo apt-get install -y ${missing[*]}" >&2
    fi
  fi
fi

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# The same install script and lock as the Dockerfile's (there: torch-cuda.txt and runtime.txt), so tests run on the
# image's package versions; test-only packages (dev.txt) are not in the lock and take pip's choice.
deps_key=$(inputs_hash "$TORCH_REQUIREMENTS" requirements/*.txt scripts/install_python_deps.sh)
if ! is_done .venv/.setup-deps "$deps_key"; then
  bash scripts/install_python_deps.sh .venv/bin/python "$TORCH_REQUIREMENTS" requirements/dev.txt \
    requirements/constraints.txt
  echo "$deps_key" > .venv/.setup-deps
fi

.venv/bin/python scripts/install_comfyui.py

if [ "${SETUP_FRONTEND:-1}" = 1 ] && [ -f frontend/package-lock.json ]; then
  npm_key=$(inputs_hash frontend/package-lock.json)
  if ! is_done frontend/node_modules/.setup-npm "$npm_key"; then
    (cd frontend && npm ci --no-audit --no-fund --loglevel=error)
    echo "$npm_key" > frontend/node_modules/.setup-npm
  fi
fi
echo "setup: done"
