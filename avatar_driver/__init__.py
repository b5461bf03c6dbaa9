"""The ComfyUI driver library: run ComfyUI, talk to it, run prompts, read the workflow contract and the manifest.

Imports nothing of the repo but the node pack's public errors; the worker, training, benchmarks and workflow tooling
build on it (docs/ARCHITECTURE.md).
"""
