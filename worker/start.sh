#!/usr/bin/env bash
# Worker entry point (the Docker image's CMD). The handler process boots ComfyUI headless itself and owns it, so
# it can restart it after a crash: readiness is polled under COMFY_BOOT_TIMEOUT (default 180 s) and boot fails
# fast if ComfyUI exits; WARMUP=1 runs one tiny prompt before the first job. Then it serves RunPod jobs, or the
# local API with --rp_serve_api [--rp_api_port N]. All env knobs: worker/README.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}"
exec "${PYTHON:-python3}" -m worker.handler "$@"
