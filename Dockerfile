# syntax=docker/dockerfile:1
# The ETHMumbai avatar worker for RunPod serverless: ComfyUI 0.3.75 + the node pack + worker/. See docs/deploy.md.
#   docker build -t ethmumbai-avatar:1.0.0 .                                  # required models baked in (~9.5 GB)
#   docker build --build-arg BAKE_MODELS=false -t ethmumbai-avatar:1.0.0-volume .
#                              # no weights: a network volume or RunPod's cached models (docs/deploy.md)
# Layers, in order, so that the 9.4 GB of weights are fetched and pushed once: the OS, then one layer per model
# file (from their own stage), then Python, ComfyUI and the code. Editing code or dependencies rebuilds only the
# layers after the weights; test_docker.py checks the order.
ARG BAKE_MODELS=true

# torch 2.14.1's Linux wheel on PyPI is built for CUDA 13.0 and brings every CUDA library it uses (cuBLAS, cuDNN,
# ... as pip packages), so the "base" flavour is enough: it keeps what the driver check needs (NVIDIA_REQUIRE_CUDA,
# so the NVIDIA runtime refuses a host whose driver is older than R580, and NVIDIA_DRIVER_CAPABILITIES for
# nvidia-smi, which the runpod SDK's fitness checks call) without the runtime flavour's duplicate libraries.
FROM nvidia/cuda:13.0.1-base-ubuntu24.04@sha256:f8ef28f579ea42a44b415d2c5d46f788e6a9b395c6c83f2929416e1fc192c143 AS base

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Ubuntu 24.04's Python 3.12 (requirements/constraints.txt is locked for it); git to clone ComfyUI's tag;
# GL/EGL and GLib for mediapipe and OpenCV. The base image digest fixes the Ubuntu snapshot; apt versions
# are left to it so security updates still apply.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv git ca-certificates \
        libgl1 libegl1 libgles2 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 10001 avatar \
    && useradd --create-home --uid 10001 --gid 10001 --shell /usr/sbin/nologin avatar

WORKDIR /app

# ---- Models, fetched in a stage of their own: only the manifest and the fetcher can invalidate them.
FROM base AS fetch
COPY requirements/fetch.txt requirements/
RUN python3 -m venv /opt/fetch && /opt/fetch/bin/pip install --no-cache-dir -r requirements/fetch.txt
COPY models_manifest.yaml ./
COPY scripts/fetch_models.py scripts/
# The fetcher's library: the manifest reader and the paths (not the whole driver, so editing it refetches nothing).
COPY avatar_driver/__init__.py avatar_driver/paths.py avatar_driver/manifest.py avatar_driver/
# sha256-checked by the fetcher; its staging and Hugging Face's caches go in the same step, so no layer keeps them.
RUN --mount=type=secret,id=hf_token,required=false \
    HF_TOKEN="$(cat /run/secrets/hf_token 2>/dev/null || true)" HF_HOME=/tmp/hf-home \
        /opt/fetch/bin/python scripts/fetch_models.py --only required --target /models \
    && rm -rf /models/.fetch_models /tmp/hf-home /root/.cache

# BAKE_MODELS=false: no weights in the image.
FROM base AS models-false

# BAKE_MODELS=true: one layer per file (some registries refuse layers over 10 GB; a changed file re-pushes only
# itself). Exactly the manifest's required files (test_docker.py checks).
FROM base AS models-true
COPY --from=fetch /models/checkpoints/sd_xl_base_1.0.safetensors /app/models/checkpoints/
COPY --from=fetch /models/controlnet/controlnet-union-sdxl-1.0-promax.safetensors /app/models/controlnet/

# ---- The worker, on top of the weights (or of nothing).
# A stage of this file, picked by BAKE_MODELS; hadolint takes the variable for an untagged image.
# hadolint ignore=DL3006
FROM models-${BAKE_MODELS} AS worker
WORKDIR /app
ENV PATH=/opt/venv/bin:$PATH

# Python deps: the same script as scripts/setup.sh, here with the CUDA torch and the lock. Only the requirements
# files this call reads are copied, so an edit to dev.txt does not rebuild the image.
COPY requirements/torch-cuda.txt requirements/comfyui.txt requirements/runtime.txt requirements/constraints.txt \
    requirements/
COPY scripts/install_python_deps.sh scripts/
RUN python3 -m venv /opt/venv \
    && bash scripts/install_python_deps.sh /opt/venv/bin/python requirements/torch-cuda.txt \
        requirements/runtime.txt requirements/constraints.txt

# ComfyUI 0.3.75 by tag and the pack linked in. Where the worker looks for models is decided at boot
# (MODEL_LOCATIONS: baked /app/models, then /runpod-volume/models, then RunPod's cached models).
COPY scripts/install_comfyui.py scripts/
COPY avatar_driver/__init__.py avatar_driver/paths.py avatar_driver/
COPY custom_nodes/ custom_nodes/
RUN python scripts/install_comfyui.py --models-dir /app/models

COPY models_manifest.yaml ./
COPY avatar_driver/ avatar_driver/
COPY worker/ worker/
COPY workflows/ workflows/

# Run time: never reach a model hub; warm up before the first job; the SDK's fitness check refuses a host whose
# CUDA is older than the torch build's; run as a plain user (the worker writes only under /tmp).
ENV HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    TRANSFORMERS_OFFLINE=1 \
    WARMUP=1 \
    RUNPOD_MIN_CUDA_VERSION=13.0
USER 10001:10001
CMD ["bash", "worker/start.sh"]
