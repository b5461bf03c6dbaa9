#!/usr/bin/env bash
# The main job: the worker's local RunPod API (which boots headless ComfyUI with the pack) and the web page.
#   web page:          http://127.0.0.1:${WEB_PORT:-3000}
#   worker API:        http://127.0.0.1:${API_PORT:-8000}/runsync   (same API as a deployed RunPod endpoint)
#   ComfyUI (artists): http://127.0.0.1:${COMFY_PORT:-8188}          (graph editor; open workflows/ethmumbai_avatar/v1.ui.json)
# With the real models in models/ (python scripts/fetch_models.py) it serves real avatars. Without them it runs a
# clearly labelled TINY-MODEL DEMO: random tiny weights that exercise the whole stack but draw noise, not avatars.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
API_PORT=${API_PORT:-8000} WEB_PORT=${WEB_PORT:-3000}
export COMFY_PORT=${COMFY_PORT:-8188}

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

if "$PY" scripts/fetch_models.py --verify --only required >/dev/null 2>&1; then
  echo "run_stack: real models found in models/"
else
  demo_dir="$PWD/.demo"
  cat <<'BANNER'
================================================================================
  TINY-MODEL DEMO — the real models are not in models/.
  Random tiny weights under the production file names: every stage runs, but a
  diffusion "avatar" is noise. The page preselects the Photo style (no diffusion:
  your photo cut out on the ETHMumbai background). For real avatars:
  python scripts/fetch_models.py
================================================================================
BANNER
  export COMFYUI_PLUGINS="$PWD/avatar_driver/demo/tiny_sdxl" MODEL_LOCATIONS="$demo_dir/models"
  # The worker checks model sizes against the manifest at boot: give it one pinned to the tiny files.
  # (pinned from the repo's manifest, so MODELS_MANIFEST is exported only once the copy exists)
  "$PY" -c "from avatar_driver.demo.tiny_models import write_workflow_models as w, pin_manifest as p; from pathlib import Path; p(w('$demo_dir/models')['models_dir'], Path('$demo_dir/models_manifest.yaml'))"
  export MODELS_MANIFEST="$demo_dir/models_manifest.yaml"
  # Keep demo jobs quick on a CPU; the page sends these with every job.
  export AVATAR_JOB_PARAMS=${AVATAR_JOB_PARAMS:-'{"size": 512, "steps": 12}'}
  # The composite-only style: the demo shows the real cut-out and branding instead of random texture.
  export AVATAR_DEFAULT_STYLE=${AVATAR_DEFAULT_STYLE:-photo}
fi

# The worker needs a CUDA GPU unless told otherwise: without one, the demo asks for the CPU explicitly.
if ! nvidia-smi --list-gpus >/dev/null 2>&1; then export COMFYUI_ARGS=${COMFYUI_ARGS---cpu}; fi

# The local API server answers /status only when a job ends, so the worker posts progress to the page.
RUNPOD_WEBHOOK_POST_OUTPUT="http://127.0.0.1:${WEB_PORT}/api/local-progress/\$ID?v=1" \
  "$PY" -m worker.handler --rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port "$API_PORT" &
pids+=($!)

(cd frontend && { [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error; } && npm run build --silent)
RUNPOD_ENDPOINT_URL="http://127.0.0.1:${API_PORT}" npm --prefix frontend start -- -H 127.0.0.1 -p "$WEB_PORT" &
pids+=($!)

# The URLs are printed only once all three answer (the worker's API opens after its ComfyUI booted).
urls=("http://127.0.0.1:${COMFY_PORT}/system_stats" "http://127.0.0.1:${API_PORT}/" "http://127.0.0.1:${WEB_PORT}/")
for url in "${urls[@]}"; do
  until curl -fs -o /dev/null --max-time 5 "$url"; do
    for pid in "${pids[@]}"; do
      kill -0 "$pid" 2>/dev/null || { echo "run_stack: a service exited before $url answered; see the log above" >&2; exit 1; }
    done
    sleep 1
  done
done
echo "run_stack: ready: web page http://127.0.0.1:${WEB_PORT}  worker API http://127.0.0.1:${API_PORT}  ComfyUI http://127.0.0.1:${COMFY_PORT}"
wait -n "${pids[@]}"
