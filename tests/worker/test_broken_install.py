"""Faults of the install, not of the job, each on a worker of its own through the real local API:

- a model file that is on disk but corrupt: ComfyUI raises while loading it, COMFY_EXECUTION;
- the pack not loaded into ComfyUI (as when it fails to import): ComfyUI refuses the graph, COMFY_VALIDATION.

Each needs a fresh worker: the shared one has its models loaded and cached, and it has the pack.
"""

from __future__ import annotations

import shutil

from avatar_driver.demo.tiny_models import TINY_PLUGIN, write_workflow_models
from tests.worker.conftest import WORKFLOW, avatar_job
from tools.worker_server import start_worker


def test_corrupt_model_file_is_comfy_execution_then_a_fixed_file_runs(tmp_path, worker_env):
    models = write_workflow_models(tmp_path / "models", seed=3)
    name, folder = next((n, f) for n, f in WORKFLOW.model_files().items() if f == "controlnet")
    path = models["models_dir"] / folder / name
    good = path.with_name(path.name + ".good")
    shutil.copyfile(path, good)
    # Corrupt but of the right size, which the boot check (sizes only, no hashing) cannot tell from a good file.
    path.write_bytes(b"\0" * 64 + good.read_bytes()[64:])

    server = start_worker(tmp_path / "worker", {**worker_env, "WARMUP": "0",
                                                "MODEL_LOCATIONS": str(models["models_dir"])})
    try:
        code, message = server.fail(avatar_job(seed=801))
        assert code == "COMFY_EXECUTION", message
        assert "ControlNetLoader" in message, message
        shutil.copyfile(good, path)  # the operator re-fetches the file; no restart needed
        server.succeed(avatar_job(seed=802))
    finally:
        server.stop()


def test_pack_not_loaded_is_comfy_validation_named_at_boot_and_per_job(tmp_path, worker_env):
    args = f"--cpu --disable-all-custom-nodes --whitelist-custom-nodes {TINY_PLUGIN.name}"
    server = start_worker(tmp_path / "worker", {**worker_env, "WARMUP": "0", "COMFYUI_ARGS": args})
    try:
        pack_nodes = sorted(n for n in WORKFLOW.node_types if n.startswith("EthMumbai"))
        assert pack_nodes
        assert f"workflow {WORKFLOW.version} cannot run: ComfyUI has no node {', '.join(pack_nodes)}" in server.log()
        for seed in (901, 902):  # the worker stays up and answers every job the same clear way
            code, message = server.fail(avatar_job(seed=seed))
            assert code == "COMFY_VALIDATION", message
            assert "does not exist" in message and "EthMumbai" in message and "failed to import" in message
    finally:
        server.stop()
