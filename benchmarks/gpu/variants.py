"""The speed candidates, one change each, with the prediction written before any was measured.

Kinds:
- ``flags``: ComfyUI started with extra flags (a restart; compared with the baseline server's runs);
- ``graph``: the same server, the job's graph changed (``transform``) or a job parameter changed (``job_params``).
``numerics``: the change must keep the decoded image within PSNR 35 dB of the baseline at the same seed.
``proposal``: changes the image by design (steps, scheduler, ControlNet schedule): its speed is measured, its
quality needs real weights, so it is listed as a proposal, never as a win.
``counterfactual``: turns off something the baseline already has, to show what it saves.
Order: graph changes first (no restart), then flags; within each, the largest predicted real gain first, the cheap
proposals after it (a run stops starting variants when its time budget would be exceeded).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

PSNR_MIN_DB = 35.0


@dataclass(frozen=True)
class Variant:
    name: str
    change: str
    prediction: str
    kind: str  # "flags" | "graph"
    flags: tuple[str, ...] = ()
    transform: Callable[[dict], dict] | None = None
    # Job parameters to change: (job index, the job's params) -> the params to set.
    job_params: Callable[[int, dict], dict] | None = None
    numerics: bool = False
    proposal: bool = False
    counterfactual: bool = False
    needs_cuda: bool = False
    # Seconds of one-off work in its first job beyond a normal job (compilation).
    first_job_extra_s: float = 0.0


def nodes_of(graph: dict, class_type: str) -> list[str]:
    return [nid for nid, node in graph.items() if node.get("class_type") == class_type]


def set_inputs(class_type: str, **inputs) -> Callable[[dict], dict]:
    """A transform that sets ``inputs`` on every node of ``class_type`` (fails if there is none)."""
    def transform(graph: dict) -> dict:
        found = nodes_of(graph, class_type)
        if not found:
            raise ValueError(f"the workflow has no {class_type} node")
        graph = copy.deepcopy(graph)
        for nid in found:
            graph[nid]["inputs"].update(inputs)
        return graph
    return transform


def compile_model(graph: dict) -> dict:
    """Put TorchCompileModel (inductor) between every sampler and the model it samples with."""
    graph = copy.deepcopy(graph)
    samplers = [nid for nid, node in graph.items() if "model" in node["inputs"]
                and node["class_type"] in ("KSampler", "KSamplerAdvanced")]
    if not samplers:
        raise ValueError("the workflow has no KSampler to compile the model of")
    for i, nid in enumerate(samplers):
        compiled = f"bench_compile_{i}"
        graph[compiled] = {"class_type": "TorchCompileModel",
                           "inputs": {"model": graph[nid]["inputs"]["model"], "backend": "inductor"}}
        graph[nid]["inputs"]["model"] = [compiled, 0]
    return graph


def vary_prompts(job: int, params: dict) -> dict:
    """Both prompts made unique to the job, so neither text encoding can come from the cache."""
    return {name: f"{params[name]}, job {job}" for name in ("prompt", "negative_prompt") if name in params}


VARIANTS: tuple[Variant, ...] = (
    Variant("torch_compile", "TorchCompileModel (inductor) on the UNet (ControlNet not compiled)",
            "sampler −10 to −20% once compiled; first job +60 to +120 s compiling; PSNR ≥ 40 dB",
            "graph", transform=compile_model, numerics=True, first_job_extra_s=120.0),
    Variant("cnet_end_0.5", "ControlNetApplyAdvanced end_percent 1.0 → 0.5 (ControlNet on the first half of the steps)",
            "sampler −15% (the SDXL ControlNet costs about 40% of a UNet step; half the steps skip it); image changes",
            "graph", transform=set_inputs("ControlNetApplyAdvanced", end_percent=0.5), proposal=True),
    Variant("steps_0.6x", "60% of the steps (20 → 12), same sampler and scheduler",
            "sampler −40%, total −35%; image changes", "graph",
            job_params=lambda job, params: {"steps": round(params["steps"] * 0.6)}, proposal=True),
    Variant("steps_0.4x", "40% of the steps (20 → 8), same sampler and scheduler",
            "sampler −60%, total −50%; image changes", "graph",
            job_params=lambda job, params: {"steps": round(params["steps"] * 0.4)}, proposal=True),
    Variant("te_cache_off", "prompt text different in every job, so ComfyUI's node cache cannot reuse the text "
            "encoding (the baseline's fixed prompts reuse it: the text-encoder cache for fixed prompts)",
            "+30 to +80 ms a job on an H100 (CLIP-L + CLIP-G encode twice), i.e. what the cache saves",
            "graph", job_params=lambda job, params: vary_prompts(job, params), counterfactual=True),
    Variant("fast", "--fast (fp16 accumulation, cuDNN autotune; cublas_ops and fp8 matmul do nothing here)",
            "sampler −3 to −8% (Hopper runs fp16-accumulate matmuls at the fp32-accumulate rate; autotune helps "
            "convolutions a little); PSNR 30-40 dB, may fail", "flags", flags=("--fast",), numerics=True),
    Variant("fp8_unet", "--fp8_e4m3fn-unet --fast fp8_matrix_mult (UNet weights fp8, fp8 tensor-core matmuls)",
            "sampler −20 to −30% (linears at fp8 rate, convolutions unchanged); PSNR < 35 dB: fails on numerics",
            "flags", flags=("--fp8_e4m3fn-unet", "--fast", "fp8_matrix_mult"), numerics=True, needs_cuda=True),
    Variant("bf16_unet", "--bf16-unet (UNet in bf16 instead of ComfyUI's default fp16 on an H100)",
            "speed ±3% (same tensor-core rate); PSNR 30-40 dB (3 fewer mantissa bits)",
            "flags", flags=("--bf16-unet",), numerics=True),
    Variant("highvram", "--highvram (every model stays in GPU memory between jobs instead of ComfyUI's normal "
            "free-on-demand; 141 GB of HBM holds all of them many times over)",
            "warm jobs ±2% (nothing is evicted at this size anyway); it guards a busy worker against reloads; "
            "images identical", "flags", flags=("--highvram",), numerics=True),
    Variant("channels_last", "--force-channels-last", "sampler −5% to +5%; PSNR ≥ 40 dB",
            "flags", flags=("--force-channels-last",), numerics=True),
    Variant("split_attention", "--use-split-cross-attention instead of PyTorch SDPA (the default; xformers, "
            "flash-attn and sage are not in the image)", "sampler +20 to +60% slower; PSNR ≥ 35 dB",
            "flags", flags=("--use-split-cross-attention",), numerics=True),
    Variant("fp16_vae", "--fp16-vae (ComfyUI decodes in bf16 on an H100 by default). The workflow decodes with the "
            "checkpoint's own SDXL VAE, which overflows in fp16 on real weights (the fp16-fix VAE of "
            "models_manifest.yaml avoids that); random weights cannot show it, so a pass here is not enough",
            "total ±10 ms; PSNR ≥ 35 dB", "flags", flags=("--fp16-vae",), numerics=True,
            needs_cuda=True),  # fp16 convolutions crawl on a CPU: minutes for one tiny decode
)


def speed_variants(speeds) -> tuple[Variant, ...]:
    """The workflow contract's speed presets (``Workflow.speeds``) other than the default, as graph variants: each
    job names the preset (job input ``speed``), so its parameters and graph edits (turbo's LoRA) apply as in the
    worker. They change the image by design, so they are proposals."""
    return tuple(speed_variant(name, speeds.get(name)) for name in speeds.others())


def speed_variant(name: str, preset) -> Variant:
    edits = f", graph edits {[(e.node, e.input, e.source) for e in preset.graph]}" if preset.graph else ""
    return Variant(f"speed_{name}", f"speed preset {name!r}: {dict(preset.params)}{edits}",
                   "evaluations cut as counted by benchmarks/evaluations.py on the CPU; sampler time down by about "
                   "the same fraction (UNet and ControlNet dominate a step)", "graph",
                   job_params=lambda job, params: {"speed": name}, proposal=True)
