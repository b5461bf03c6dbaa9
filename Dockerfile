# syntax=docker/dockerfile:1
# The ETHMumbai avatar worker for RunPod serverless: ComfyUI 0.3.75 + the node pack + worker/. See docs/deploy.md.
#   docker build -t ethmumbai-avatar:1.0.0 .                                  # required models baked in (~9.8 GB)
#   docker build --build-arg BAKE_MODELS=false -t ethmumbai-avatar:1.0.0-volume .
#                                             # models read from a network volume at /runpod-volume/models
# torch 2.14.1's Linux wheel on PyPI is built for CUDA 13.0, hence this base (host driver R580 or newer).
# It brings its own cuDNN (nvidia-cudnn-cu13), so the plain runtime flavour is enough.
FROM nvidia/cuda:13.0.1-runtime-ubuntu24.04@sha256:c3fde347d52d578c84fd644bc177bc7ec333feaf11550d990da4084d7612e4c7

SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH

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

# Python deps: the same script as scripts/setup.sh, here with the CUDA torch and the lock.
COPY requirements/ requirements/
COPY scripts/install_python_deps.sh scripts/
RUN python3 -m venv /opt/venv \
    && bash scripts/install_python_deps.sh /opt/venv/bin/python requirements/torch-cuda.txt \
        requirements/runtime.txt requirements/constraints.txt

# Models: baked into the image through the fetcher (sha256-checked), or left to a network volume.
ARG BAKE_MODELS=true
COPY models_manifest.yaml ./
COPY scripts/install_comfyui.py scripts/fetch_models.py scripts/
RUN --mount=type=secret,id=hf_token,required=false \
    if [ "$BAKE_MODELS" = true ]; then \
        HF_TOKEN="$(cat /run/secrets/hf_token 2>/dev/null || true)" \
            python scripts/fetch_models.py --only required --target /app/models \
        && rm -rf /app/models/.fetch_models/hf /app/models/.fetch_models/partial; \
    elif [ "$BAKE_MODELS" != false ]; then \
        echo "BAKE_MODELS must be true or false, not '$BAKE_MODELS'" >&2; exit 2; \
    fi

# ComfyUI 0.3.75 by tag, the pack linked in, extra_model_paths.yaml pointing at the models.
COPY custom_nodes/ custom_nodes/
RUN if [ "$BAKE_MODELS" = true ]; then models=/app/models; else models=/runpod-volume/models; fi \
    && python scripts/install_comfyui.py --models-dir "$models"

COPY worker/ worker/
COPY workflows/ workflows/

# Run time: never reach a model hub; run as a plain user (the worker writes only under /tmp).
ENV HF_HUB_OFFLINE=1 \
    HF_HUB_DISABLE_TELEMETRY=1 \
    TRANSFORMERS_OFFLINE=1
USER 10001:10001
CMD ["bash", "worker/start.sh"]
