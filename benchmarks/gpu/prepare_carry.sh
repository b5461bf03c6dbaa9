#!/usr/bin/env bash
# Build, on this machine, what the GPU benchmark carries to the device machine, then print the call to make.
#
#   bash benchmarks/gpu/prepare_carry.sh            # from the repo root; needs ../shared/gpu_anchor and .comfyui/
#
# Writes (all git-ignored, never committed):
#   tools/gpu_anchor/           the shared stock-ComfyUI kit (copied as is: run as a tool, not part of the project)
#   tools/comfy.tar.gz          ComfyUI 0.3.75 stripped by the kit's strip_comfy.sh, packed (the carry limit counts bytes)
#   .whl/                       cp312 manylinux wheels of what the device's PyTorch image lacks (list below)
# The working tree plus these must stay under the device tool's 64 MiB; the script checks it.
set -euo pipefail
cd "$(dirname "$0")/../.."
KIT_SRC=${GPU_ANCHOR_DIR:-../shared/gpu_anchor}
COMFY_SRC=${COMFYUI_DIR:-.comfyui/ComfyUI}
PYVER=${PYVER:-3.12}  # the device image's Python; 3.11 only to try the device path on this machine
LIMIT_BYTES=$((64 * 1024 * 1024))

# What the PyTorch image (docs: /work/.library/device/KINDS.md) lacks, by who imports it:
#   the pack:        mediapipe 0.10.21 (face detection, person segmentation; its numpy<2/protobuf<5 pins are
#                    not needed at run time: checked here with numpy 2.3 and protobuf 7)
#   the worker:      websocket-client; pydantic (+ core, annotated-types, typing-inspection) for worker/schema.py;
#                    boto3 (+ botocore, s3transfer, jmespath) imported by worker/storage.py at start-up;
#                    runpod 1.12.0 and what `import runpod` loads (paramiko + bcrypt, pynacl, cryptography, cffi,
#                    pycparser, invoke; aiohttp-retry, backoff, tomli, tomlkit, tqdm-loggable)
#   ComfyUI:         torchsde, trampoline, kornia, kornia_rs (the kit's wheels.sh)
# Versions are the ones in the project's .venv (requirements/*.txt), so the device runs what the tests ran.
PROJECT_WHEELS="mediapipe websocket-client pydantic pydantic-core annotated-types typing-inspection
  boto3 botocore s3transfer jmespath runpod paramiko bcrypt pynacl cryptography cffi pycparser invoke
  aiohttp-retry backoff tomli tomlkit tqdm-loggable"
# Model files of mediapipe solutions the pack never runs (their .py stay: solutions/__init__ imports them all),
# dropped from the carried wheel to save ~20 MB.
MEDIAPIPE_DROP='mediapipe/modules/(pose_|hand_|palm_|iris_|face_landmark|holistic_|objectron).*\.tflite$'

[ -f "$KIT_SRC/make_random_models.py" ] || { echo "no gpu_anchor kit at $KIT_SRC (set GPU_ANCHOR_DIR)" >&2; exit 1; }
[ -f "$COMFY_SRC/main.py" ] || { echo "no ComfyUI at $COMFY_SRC: run scripts/setup.sh" >&2; exit 1; }

rm -rf tools/gpu_anchor
mkdir -p tools
cp -r "$KIT_SRC" tools/gpu_anchor
chmod -R u+w tools/gpu_anchor

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
bash tools/gpu_anchor/strip_comfy.sh "$COMFY_SRC" "$staging/comfy" >/dev/null
rm -rf "$staging/comfy/custom_nodes/ethmumbai"  # a link into this checkout; the benchmark links the pack itself
tar -C "$staging" -czf tools/comfy.tar.gz comfy

rm -rf .whl
bash tools/gpu_anchor/wheels.sh .whl "$PYVER" >/dev/null
for name in $PROJECT_WHEELS; do
  version=$(.venv/bin/python -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$name")
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
    --python-version "$PYVER" --implementation cp --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any -d .whl "$name==$version" 2>&1 \
    | grep -v "is ignored: it is neither a file nor a directory" || true
  ls .whl | grep -qi "^$(echo "$name" | tr - _)-$version-" || { echo "no $PYVER wheel for $name==$version" >&2; exit 1; }
done

.venv/bin/python - .whl/mediapipe-*.whl "$MEDIAPIPE_DROP" <<'PY'
import os, re, sys, zipfile
src, drop = sys.argv[1], re.compile(sys.argv[2])
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(src + ".tmp", "w", zipfile.ZIP_DEFLATED) as zout:
    for item in zin.infolist():
        data = zin.read(item.filename)
        if item.filename.endswith(".dist-info/RECORD"):  # keep RECORD true to the files that remain
            data = b"".join(line for line in data.splitlines(True) if not drop.match(line.decode().split(",")[0]))
        if not drop.match(item.filename):
            zout.writestr(item, data)
os.replace(src + ".tmp", src)
PY

tree_bytes=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s+=$1} END {print s+0}')
carry_bytes=$(du -cb .whl tools | tail -1 | cut -f1)
total=$((tree_bytes + carry_bytes))
printf 'working tree %.1f MiB + carry (.whl %s, tools %s) = %.1f MiB of 64 MiB\n' \
  "$(echo "$tree_bytes / 1048576" | bc -l)" "$(du -sh .whl | cut -f1)" "$(du -sh tools | cut -f1)" \
  "$(echo "$total / 1048576" | bc -l)"
[ "$total" -lt "$LIMIT_BYTES" ] || { echo "over the 64 MiB the device tool carries" >&2; exit 1; }
.venv/bin/python benchmarks/gpu/check_carry.py .whl
cat <<'EOF'

Next, the device call (run tool; see benchmarks/gpu/RESULTS.md): carry [".whl", "tools"], timeout_s 600,
command: bash benchmarks/gpu/run_gpu_bench.sh --budget-s 540
EOF
