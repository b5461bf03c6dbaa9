"""Run as ``python -m tests.training.recipe_probe BASE DATASET CACHE PLUGIN``: the recipe options on the tiny model.

Builds a real ``Trainer`` on the tiny SDXL-shaped checkpoint (ComfyUI as a library, as the CLI does), exercises
caption dropout, min-SNR weighting, noise offset, LR warm-up and EMA, and prints one JSON object of what it saw.
Expected values are computed here independently of training/recipe.py (the schedule from SDXL's betas, the EMA
recurrence by hand) so the test can compare. Runs in a subprocess so the test process never imports ComfyUI.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file

from training import recipe
from training.train import TrainConfig, Trainer, diffusion_loss, sample_batch

DRAWS = 400


def trainer(base: str, dataset: str, cache: str, plugin: str, out: str, **options) -> Trainer:
    config = TrainConfig(base_model=base, dataset=dataset, output=out, plugins=[plugin], device="cpu", rank=4,
                         alpha=4, learning_rate=1e-2, cache_dir=cache, save_dtype="fp32", **options)
    built = Trainer(config)
    built.prepare()
    return built


def caption_dropout(t: Trainer, rate: float) -> dict:
    """How often sample_batch puts the empty caption in, and whether that is the real empty-caption embedding."""
    import comfy.sd

    _, clip, _, _ = comfy.sd.load_checkpoint_guess_config(t.config.base_model, output_vae=False, output_clip=True)
    cond, pooled = clip.encode_from_tokens(clip.tokenize(""), return_pooled=True)
    cached_cond, cached_pooled = t.cache.text("")
    runs = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(7)
        runs.append([sample_batch(t.train_examples, 1, generator, rate) for _ in range(DRAWS)])
    masks = [[dropped[0] for _, dropped in run] for run in runs]
    dropped_use_cached = all(torch.equal(batch.conds["c_crossattn"], cached_cond) for batch, d in runs[0] if d[0])
    kept_differ = all(not torch.equal(batch.conds["c_crossattn"], cached_cond) for batch, d in runs[0] if not d[0])
    # The pooled text vector is the first columns of SDXL's ADM input "y"; the rest are the image size embeddings.
    pooled_columns = cached_pooled.shape[-1]
    pooled_in_y = all(torch.equal(batch.conds["y"][:, :pooled_columns], cached_pooled) for batch, d in runs[0] if d[0])
    return {"rate": rate, "draws": DRAWS, "dropped": sum(masks[0]), "same_seed_same_mask": masks[0] == masks[1],
            "dropped_use_cached_empty_embedding": dropped_use_cached and pooled_in_y, "kept_use_caption": kept_differ,
            # the cache entry is the empty caption's encoding (fp16 text encoders: equal up to rounding)
            "cached_vs_fresh_empty_max_difference": max(float((cached_cond - cond.float()).abs().max()),
                                                        float((cached_pooled - pooled.float()).abs().max())),
            "caption_vs_empty_min_difference": min(float((e.conds["c_crossattn"] - cached_cond).abs().max())
                                                   for e in t.train_examples)}


def min_snr(t: Trainer, gamma: float) -> dict:
    """Loss with min-SNR over plain loss at fixed noise, per timestep, and min(SNR, γ)/SNR from SDXL's own betas."""
    betas = torch.linspace(0.00085 ** 0.5, 0.012 ** 0.5, 1000, dtype=torch.float64) ** 2  # scaled_linear
    alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
    example = t.train_examples[0]
    rows = []
    with torch.no_grad():
        for timestep in (0, 50, 200, 500, 999):
            noise = torch.randn(example.latent.shape, generator=torch.Generator().manual_seed(timestep))
            steps = torch.tensor([timestep])
            plain = float(diffusion_loss(t.model, example, noise, steps))
            weighted = float(diffusion_loss(t.model, example, noise, steps, gamma))
            snr = float(alphas_cumprod[timestep] / (1.0 - alphas_cumprod[timestep]))
            rows.append({"timestep": timestep, "ratio": weighted / plain, "expected": min(snr, gamma) / snr})
    return {"gamma": gamma, "rows": rows}


def noise_offset(t: Trainer, offset: float) -> dict:
    shape = t.train_examples[0].latent.shape
    plain = recipe.make_noise(shape, torch.Generator().manual_seed(3), 0.0)
    offset_noise = recipe.make_noise(shape, torch.Generator().manual_seed(3), offset)
    shift = offset_noise - plain
    per_channel = shift.mean(dim=(-2, -1)).flatten()
    return {"offset": offset, "shift_spatial_std": float(shift.std(dim=(-2, -1)).max()),
            "per_channel_shift": per_channel.tolist(), "plain_std": float(plain.std())}


def warmup_and_ema(t: Trainer, steps: int) -> dict:
    """Learning rate at each step, and the EMA against the recurrence computed here from the raw weights."""
    lrs, expected = [], {name: p.detach().clone() for name, p in t.network.named_parameters()}
    for step in range(1, steps + 1):
        t.train_step()
        t.state.step = step
        lrs.append(t.optimizer.param_groups[0]["lr"])
        decay = min(t.config.ema, (1 + step) / (10 + step))
        for name, p in t.network.named_parameters():
            expected[name] = decay * expected[name] + (1 - decay) * p.detach()
    ema_error = max(float((t.ema.shadow[name] - expected[name]).abs().max()) for name in expected)
    raw = {name: p.detach().clone() for name, p in t.network.named_parameters()}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "probe.safetensors"
        t.save_lora(path)
        saved = load_file(path)
    ups = [key for key in saved if key.endswith(".lora_up.weight")]
    layer = {key: key.removesuffix(".lora_up.weight") for key in ups}
    saved_is_ema = all(torch.equal(saved[key], t.ema.shadow[f"layers.{layer[key]}.up.weight"]) for key in ups)
    saved_is_raw = all(torch.equal(saved[key], raw[f"layers.{layer[key]}.up.weight"]) for key in ups)
    after_save_raw = all(torch.equal(p, raw[name]) for name, p in t.network.named_parameters())
    return {"lrs": lrs, "ema_max_error": ema_error, "saved_is_ema": saved_is_ema, "saved_is_raw": saved_is_raw,
            "raw_weights_back_after_save": after_save_raw,
            "ema_raw_max_difference": max(float((t.ema.shadow[n] - raw[n]).abs().max()) for n in raw)}


def main() -> None:
    base, dataset, cache, plugin = sys.argv[1:5]
    with tempfile.TemporaryDirectory() as out:
        t = trainer(base, dataset, cache, plugin, out, caption_dropout=0.25, warmup_steps=4, ema=0.8)
        print(json.dumps({"caption_dropout": caption_dropout(t, 0.25), "min_snr": min_snr(t, 5.0),
                          "noise_offset": noise_offset(t, 0.1), "warmup_and_ema": warmup_and_ema(t, 5),
                          "learning_rate": t.config.learning_rate}))


if __name__ == "__main__":
    main()
