#!/usr/bin/env bash
# The GPU benchmark in one call: set up, make random full-size models, run benchmarks/gpu/bench.py.
#
#   On the device machine (after benchmarks/gpu/prepare_carry.sh here; carry .whl and tools):
#     bash benchmarks/gpu/run_gpu_bench.sh [bench.py options]            # results in $OUT
#   CPU trial on this machine, same code path with tiny SDXL-shaped models:
#     bash benchmarks/gpu/run_gpu_bench.sh --tiny [bench.py options]     # results in benchmarks/out/<time>/
#
# Files in the results folder: bench.json, bench.md, bench.log (all output), comfyui_worker.log,
# comfyui_bare.log, anchor.log (at most 6: the device tool returns 8).
set -euo pipefail
export BENCH_STARTED=${BENCH_STARTED:-$(date +%s)}  # bench.py's --budget-s counts from here
cd "$(dirname "$0")/../.."
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1

TINY=0
[ "${1:-}" = --tiny ] && { TINY=1; shift; }
OUT=${OUT:-benchmarks/out/$(date -u +%Y%m%d-%H%M%S)$([ $TINY = 1 ] && echo -tiny)}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/bench.log") 2>&1

if [ $TINY = 1 ]; then
  exec .venv/bin/python -m benchmarks.gpu.bench --tiny --raw benchmarks/out/tiny_raw --models benchmarks/out/tiny_models \
    --out "$OUT" --size 512 --steps 4 --photo-px 768 "$@"
fi

# --- device machine: Python packages the PyTorch image lacks, from the carried wheels
SITE=/tmp/bench_site
if [ ! -f "$SITE/.done" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" .whl/*.whl \
    || python3 -c "import glob, sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1]) for w in glob.glob('.whl/*.whl')]" "$SITE"
  touch "$SITE/.done"
fi
export PYTHONPATH=$SITE:$PWD${PYTHONPATH:+:$PYTHONPATH}
# ComfyUI 0.3.75, stripped by the gpu_anchor kit (carried packed)
export COMFYUI_DIR=/tmp/bench_comfy/comfy
[ -f "$COMFYUI_DIR/main.py" ] || { mkdir -p /tmp/bench_comfy && tar -C /tmp/bench_comfy -xzf tools/comfy.tar.gz; }
# PyAV is imported by ComfyUI at start-up but used only by video/audio nodes: the kit's import-only stand-in
python3 -c "import av" 2>/dev/null || export PYTHONPATH=$PYTHONPATH:$PWD/tools/gpu_anchor/av_stub
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version,clocks.sm,clocks.max.sm --format=csv || true
# Fail in seconds, not after the model generation, if the worker or the pack cannot import here
python3 -c "import worker.handler, mediapipe.python.solutions.selfie_segmentation, kornia, torchsde, torch, numpy
print('imports ok: torch', torch.__version__, 'numpy', numpy.__version__, 'CUDA', torch.cuda.is_available())"
# A dropped page cache makes the worker's cold start read the models from disk, as a new container does;
# only on the device machine (here it would slow everyone's work down).
DROP=$(command -v nvidia-smi >/dev/null && echo --drop-page-cache || true)

exec python3 -m benchmarks.gpu.bench --raw /tmp/bench_models/raw --models /tmp/bench_models/linked \
  --work /tmp/bench_work --out "$OUT" --size 1024 --steps 20 $DROP "$@"
