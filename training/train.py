"""Train the ETHMumbai style LoRA: SDXL UNet only, kohya keys, loadable by ComfyUI's LoraLoader.

    python -m training.train --base-model models/checkpoints/sd_xl_base_1.0.safetensors \\
        --dataset data/ethmumbai --output runs/ethmumbai_v1 --validation-photos photos/

Start with ``--dry-run`` (two real steps: peak memory, seconds per step, ETA; writes nothing) and a
``--preset`` for your machine (mac16, mac32, mac64, cuda24; explicit options override it).

Writes into --output: ``checkpoints/NAME-stepNNNNNN.safetensors`` (+ resumable ``state-stepNNNNNN.pt``)
every --save-every steps, ``loss.png`` / ``losses.json`` / ``loss.csv``, ``validation/*.png`` contact
sheets, and at the end ``NAME.safetensors`` with its sidecar ``NAME.json`` (hashes, hyperparameters,
manifest entry). Ctrl-C (or ``--stop-at STEP``) finishes the current step, then writes the resumable
state and ``NAME-stepNNNNNN.safetensors`` (+ sidecar) to use as it is; run the same command with
``--resume`` to continue from the newest state (or ``--resume PATH``).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import logging
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch.utils.checkpoint import checkpoint

from avatar_driver import paths
from avatar_driver.manifest import sha256_file
from training import comfy_runtime, metadata, plots, progress, recipe, sidecar
from training.cache import ENV_CACHE_DIR, Encoded, EncodingCache, default_cache_dir
from training.dataset import InputError, dataset_hash, dataset_trigger, split_items
from training.device import DEVICES, PRECISIONS, PeakMemory, pick_device, pick_dtype
from training.lora import TARGETS, LoRANetwork, NetworkSpec
from training.validate import (
    DEFAULT_SAMPLE_PROMPTS,
    DEFAULT_STRENGTHS,
    Validator,
    list_photos,
    parse_params,
    parse_strengths,
)

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
HYPERPARAMETERS = ("steps", "rank", "alpha", "target", "learning_rate", "weight_decay", "batch_size", "max_grad_norm",
                   "gradient_checkpointing", "seed", "precision", "save_dtype", "resolution", "noise_offset",
                   "min_snr_gamma", "caption_dropout", "warmup_steps", "ema", "attention", "preset")
# Held-out loss: every validation image at these timesteps with fixed noise, so checkpoints compare.
VAL_TIMESTEPS = (100, 300, 500, 700, 900)
PRESETS_FILE = Path(__file__).with_name("presets.json")
DRY_RUN_STEPS = 2
MIN_TRAIN_IMAGES = 2

log = logging.getLogger("training")


@dataclass
class TrainConfig:
    base_model: str
    dataset: str
    output: str
    name: str = "ethmumbai_style_v1"
    manifest_name: str = "ethmumbai_lora"
    steps: int = 2000
    rank: int = 16
    alpha: float = 16.0
    target: str = "transformer"
    learning_rate: float = 1e-4
    weight_decay: float = 1e-2
    batch_size: int = 1
    max_grad_norm: float = 1.0
    gradient_checkpointing: bool = True
    save_every: int = 250
    validate_every: int | None = None  # None: at every save; 0: only before training and at the end
    keep_states: int = 2
    seed: int = 42
    device: str = "auto"
    precision: str = "auto"
    save_dtype: str = "fp16"
    log_every: int = 10
    plugins: list[str] = field(default_factory=list)
    model_paths_config: str | None = None
    validation_photos: str | None = None
    strengths: list[float] = field(default_factory=lambda: list(DEFAULT_STRENGTHS))
    validation_params: dict = field(default_factory=dict)
    validation_seed: int = 42
    sample_prompts: list[str] = field(default_factory=lambda: list(DEFAULT_SAMPLE_PROMPTS))
    release_url: str | None = None
    preset: str | None = None
    resolution: int | None = None  # None: the dataset's own sizes; else images above resolution² are downscaled
    cache_dir: str | None = None  # None: training.cache.default_cache_dir()
    trigger: str | None = None  # None: the dataset's (report.json)
    noise_offset: float = 0.0
    min_snr_gamma: float | None = None
    caption_dropout: float = 0.0
    warmup_steps: int = 0
    ema: float | None = None  # EMA decay of the LoRA weights; the saved files then hold the EMA weights
    attention: str = "auto"
    stop_at: int | None = None


@dataclass
class Example:
    """One cached training image on the device: latent in model space and its UNet conditioning (and the
    conditioning with the empty caption, at the same image size, for caption dropout)."""

    latent: torch.Tensor
    conds: dict[str, torch.Tensor]
    empty_conds: dict[str, torch.Tensor] | None = None

    @property
    def group(self) -> tuple:
        return (tuple(self.latent.shape),) + tuple(tuple(v.shape) for v in self.conds.values())


@dataclass
class State:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    val_losses: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def unet_conds(model, latent: torch.Tensor, cond: torch.Tensor, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
    """Conditioning exactly as ComfyUI's sampler builds it (``extra_conds``: SDXL size/crop embeddings
    from the latent size, as ``samplers.encode_model_conds`` does at render time)."""
    height, width = latent.shape[-2:]
    conds = model.extra_conds(cross_attn=cond, pooled_output=pooled, width=width * 8, height=height * 8,
                              device=torch.device("cpu"), noise=latent)
    return {key: value.cond for key, value in conds.items()}


def to_example(model, encoded: Encoded, device: torch.device, empty: tuple | None = None) -> Example:
    """``empty``: the (cond, pooled) embedding of the empty caption, when caption dropout is on."""
    latent = model.process_latent_in(encoded.latent)

    def conds_on_device(cond: torch.Tensor, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: value.to(device) for key, value in unet_conds(model, latent, cond, pooled).items()}

    return Example(latent.to(device), conds_on_device(encoded.cond, encoded.pooled),
                   conds_on_device(*empty) if empty is not None else None)


def batch_of(examples: list[Example], dropped: list[bool] | None = None) -> Example:
    """One batch; ``dropped[i]``: example i trains on the empty caption."""
    conds = [e.empty_conds if drop else e.conds for e, drop in zip(examples, dropped or [False] * len(examples),
                                                                    strict=True)]
    return Example(torch.cat([e.latent for e in examples]), {key: torch.cat([c[key] for c in conds]) for key in conds[0]})


def sample_batch(examples: list[Example], batch_size: int, generator: torch.Generator,
                 caption_dropout: float = 0.0) -> tuple[Example, list[bool]]:
    """A random example plus others of the same bucket (same latent and text shapes) to fill the batch,
    each on the empty caption with probability ``caption_dropout``. Returns the batch and which were dropped."""
    first = examples[int(torch.randint(len(examples), (1,), generator=generator))]
    same = [e for e in examples if e.group == first.group and e is not first]
    order = torch.randperm(len(same), generator=generator).tolist()[: batch_size - 1]
    chosen = [first] + [same[i] for i in order]
    dropped = recipe.dropout_mask(len(chosen), caption_dropout, generator)
    return batch_of(chosen, dropped), dropped


def diffusion_loss(model, batch: Example, noise: torch.Tensor, timesteps: torch.Tensor,
                   min_snr_gamma: float | None = None) -> torch.Tensor:
    """Noise-prediction MSE (the SDXL/kohya/diffusers objective) through ComfyUI's own ``apply_model``,
    each sample weighted by min(SNR, γ)/SNR when ``min_snr_gamma`` is set.

    ComfyUI's EPS model returns the denoised latent ``x - sigma·eps``; eps is recovered from it, so
    every timestep weighs the same as in standard training (a loss on the denoised latent would
    weigh each timestep by sigma²).
    """
    sampling = model.model_sampling
    sigma = sampling.sigmas[timesteps]
    noisy = sampling.noise_scaling(sigma, noise, batch.latent)
    denoised = model.apply_model(noisy, sigma, transformer_options={}, **batch.conds)
    eps = (noisy - denoised) / sigma.view(-1, *([1] * (noisy.ndim - 1)))
    per_sample = (eps.float() - noise.float()).pow(2).mean(dim=tuple(range(1, eps.ndim)))
    if min_snr_gamma:
        per_sample = per_sample * recipe.min_snr_weights(sigma, min_snr_gamma).to(per_sample.device)
    return per_sample.mean()


def enable_gradient_checkpointing(diffusion_model: torch.nn.Module) -> None:
    """Recompute each ResBlock / transformer block in the backward pass instead of storing activations."""
    from comfy.ldm.modules.attention import SpatialTransformer
    from comfy.ldm.modules.diffusionmodules.openaimodel import ResBlock

    for module in diffusion_model.modules():
        if isinstance(module, (ResBlock, SpatialTransformer)):
            module.forward = functools.partial(checkpoint, module.forward, use_reentrant=False)


@torch.no_grad()
def validation_loss(model, examples: list[Example], seed: int) -> float:
    losses = []
    for index, example in enumerate(examples):
        for timestep in VAL_TIMESTEPS:
            generator = torch.Generator().manual_seed(seed * 100_003 + index * 1_009 + timestep)
            noise = torch.randn(example.latent.shape, generator=generator).to(example.latent.device)
            t = torch.tensor([timestep], device=example.latent.device)
            losses.append(float(diffusion_loss(model, example, noise, t)))
    return sum(losses) / len(losses)


@contextlib.contextmanager
def stop_on_interrupt() -> Iterator[list[str]]:
    """The first Ctrl-C asks the loop to stop after the current step (it then saves); a second one
    interrupts at once. Yields a list that holds the reason once a stop was asked for."""
    asked: list[str] = []

    def handler(signum, frame):
        if asked:
            raise KeyboardInterrupt
        asked.append("Ctrl-C")
        log.warning("Ctrl-C: stopping after this step and saving (Ctrl-C again to quit without saving)")

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread (training imported as a library): plain KeyboardInterrupt
        yield asked
        return
    try:
        yield asked
    finally:
        signal.signal(signal.SIGINT, previous)


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.out = Path(config.output)
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(self.device, config.precision)
        self.spec = NetworkSpec(config.rank, config.alpha, config.target)
        self.state = State()
        self.generator = torch.Generator().manual_seed(config.seed)
        self.memory = PeakMemory(self.device)
        self.ema: recipe.EMA | None = None

    # ---------------------------------------------------------------- set-up

    def prepare(self) -> None:
        config = self.config
        self.base = Path(config.base_model)
        if not self.base.is_file():
            raise InputError(f"base model {self.base} not found (python scripts/fetch_models.py fetches the "
                             "manifest's SDXL base)")
        dataset = Path(config.dataset)
        if not (dataset / "train").is_dir():
            raise InputError(f"{dataset}/train does not exist (prepare the dataset with python -m "
                             "training.prepare_dataset)")
        train_items, val_items = split_items(dataset, "train"), split_items(dataset, "val")
        if len(train_items) < MIN_TRAIN_IMAGES:
            raise InputError(f"{dataset}/train has {len(train_items)} image(s); at least {MIN_TRAIN_IMAGES} are "
                             "needed (20-40 recommended)")
        # The inputs are checked before ComfyUI is imported: a typo costs a second, not a minute.
        self.attention = comfy_runtime.import_comfy(self.device, [Path(p) for p in config.plugins], config.attention)
        log.info("attention: --attention %s -> ComfyUI's %s", config.attention, self.attention)
        log.info("hashing base model %s", self.base)
        self.base_sha256 = sha256_file(self.base)
        self.dataset_sha256 = dataset_hash(dataset)
        self.counts = {"train_images": len(train_items), "val_images": len(val_items)}
        self.train_captions = [item.caption for item in train_items]
        self.trigger = dataset_trigger(dataset) if config.trigger is None else config.trigger

        cache_root = Path(config.cache_dir) if config.cache_dir else default_cache_dir()
        self.cache = EncodingCache(cache_root, self.base_sha256, config.resolution)
        empty = ("",) if config.caption_dropout > 0 else ()
        images, captions = self.cache.missing(train_items + val_items, empty)
        patcher, clip, vae = comfy_runtime.load_checkpoint(self.base, self.dtype, bool(captions), bool(images))
        self.cache.fill(images, captions, clip, vae)
        log.info("encoding cache %s: encoded %d latents and %d captions, the rest reused", self.cache.folder,
                 self.cache.encoded["latents"], self.cache.encoded["captions"])
        del clip, vae
        comfy_runtime.free_memory()

        self.patcher = patcher
        self.model = patcher.model
        import comfy.model_base

        if self.model.model_type != comfy.model_base.ModelType.EPS:
            raise InputError(f"{self.base.name}: only epsilon-prediction checkpoints (SDXL base) are supported, "
                             f"this one is {self.model.model_type.name}")
        self.model.to(self.device).requires_grad_(False)
        empty_text = self.cache.text("") if config.caption_dropout > 0 else None
        self.train_examples = [to_example(self.model, e, self.device, empty_text)
                               for e in self.cache.load(train_items)]
        self.val_examples = [to_example(self.model, e, self.device) for e in self.cache.load(val_items)]
        self.network = LoRANetwork(self.model, self.spec).to(self.device)
        self.network.attach()
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(self.model.diffusion_model)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        if config.ema:
            self.ema = recipe.EMA(self.network, config.ema)
        log.info("LoRA: %d layers, %.2f M parameters, rank %d alpha %g on %s; UNet %s on %s",
                 len(self.network.layers), self.lora_parameters() / 1e6, config.rank, config.alpha, config.target,
                 self.dtype, self.device)

    def lora_parameters(self) -> int:
        return sum(p.numel() for p in self.network.parameters())

    def sizes(self) -> Counter:
        """Training image sizes ("WxH") and how many of each."""
        return Counter(f"{e.latent.shape[-1] * 8}x{e.latent.shape[-2] * 8}" for e in self.train_examples)

    # ---------------------------------------------------------------- checkpoints

    def state_path(self, step: int) -> Path:
        return self.out / "checkpoints" / f"state-step{step:06d}.pt"

    def lora_name(self, step: int) -> str:
        return f"{self.config.name}-step{step:06d}.safetensors"

    def saved_weights(self) -> contextlib.AbstractContextManager:
        """The weights that files and the held-out loss use: the EMA ones with --ema, else the raw ones."""
        return self.ema.applied(self.network) if self.ema is not None else contextlib.nullcontext()

    def metadata(self, name: str) -> dict[str, str]:
        sizes = self.sizes()
        width, height = (int(v) for v in sizes.most_common(1)[0][0].split("x"))
        mixed = {torch.float32: "no", torch.bfloat16: "bf16"}[self.dtype]
        return metadata.lora_metadata(
            name=name, trigger=self.trigger, base_name=self.base.name, base_sha256=self.base_sha256,
            dataset_sha256=self.dataset_sha256, train_images=self.counts["train_images"], captions=self.train_captions,
            step=self.state.step, config=self.config, resolution=(width, height), mixed_precision=mixed)

    def save_lora(self, path: Path) -> dict[str, torch.Tensor]:
        """kohya LoRA with ss_*/modelspec metadata; the same weights and settings give the same bytes."""
        with self.saved_weights():
            state = self.network.kohya_state_dict(SAVE_DTYPES[self.config.save_dtype])
        metadata.write_safetensors(path, state, self.metadata(path.stem))
        return state

    def save_state(self) -> Path:
        path = self.state_path(self.state.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"step": self.state.step, "losses": self.state.losses, "val_losses": self.state.val_losses,
                    "seconds": self.state.seconds, "network": self.network.state_dict(),
                    "ema": self.ema.state_dict() if self.ema is not None else None,
                    "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                    "spec": asdict(self.spec), "base_sha256": self.base_sha256}, path.with_suffix(".partial"))
        path.with_suffix(".partial").replace(path)
        for old in sorted((self.out / "checkpoints").glob("state-step*.pt"))[: -self.config.keep_states]:
            old.unlink()
        return path

    def latest_state(self) -> Path:
        states = sorted((self.out / "checkpoints").glob("state-step*.pt"))
        if not states:
            raise InputError(f"no state-step*.pt in {self.out / 'checkpoints'} to resume from")
        return states[-1]

    def resume(self, path: Path) -> None:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["spec"] != asdict(self.spec):
            raise InputError(f"{path} was trained with {saved['spec']}, not {asdict(self.spec)}")
        if saved["base_sha256"] != self.base_sha256:
            raise InputError(f"{path} was trained on another base model (sha256 {saved['base_sha256'][:12]}…)")
        self.network.load_state_dict(saved["network"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.generator.set_state(saved["generator"])
        if self.ema is not None:
            if saved.get("ema") is not None:
                self.ema.load_state_dict(saved["ema"])
            else:
                self.ema = recipe.EMA(self.network, self.config.ema)
                log.warning("%s has no EMA weights: the EMA starts from the resumed weights", path.name)
        self.state = State(saved["step"], list(saved["losses"]), {int(k): v for k, v in saved["val_losses"].items()},
                           saved["seconds"])
        log.info("resumed from %s at step %d", path, self.state.step)

    # ---------------------------------------------------------------- training

    def train_step(self) -> float:
        config = self.config
        step = self.state.step + 1
        for group in self.optimizer.param_groups:
            group["lr"] = recipe.warmup_lr(step, config.learning_rate, config.warmup_steps)
        batch, _ = sample_batch(self.train_examples, config.batch_size, self.generator, config.caption_dropout)
        noise = recipe.make_noise(batch.latent.shape, self.generator, config.noise_offset).to(self.device)
        timesteps = torch.randint(len(self.model.model_sampling.sigmas), (batch.latent.shape[0],),
                                  generator=self.generator).to(self.device)
        loss = diffusion_loss(self.model, batch, noise, timesteps, config.min_snr_gamma)
        self.memory.sample()
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {step}; "
                                     "on MPS try --precision fp32, else lower --learning-rate")
        loss.backward()
        self.memory.sample()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.memory.sample()
        if self.ema is not None:
            self.ema.update(self.network, step)
        return loss.detach().item()

    def checkpoint(self, validator: Validator | None, final: bool = False) -> None:
        """Save LoRA + state; held-out loss; loss curve; contact sheet when due."""
        step = self.state.step
        self.save_lora(self.out / "checkpoints" / self.lora_name(step))
        if self.val_examples:
            with self.saved_weights():
                self.state.val_losses[step] = validation_loss(self.model, self.val_examples, self.config.seed)
            log.info("step %d: validation loss %.4f", step, self.state.val_losses[step])
        self.save_state()
        self.write_losses()
        every = self.config.save_every if self.config.validate_every is None else self.config.validate_every
        if validator is not None and (final or (every and step % every == 0)):
            try:
                validator.contact_sheet(self.lora_name(step), f"step{step:06d}")
            except Exception:  # the LoRA is saved already: a failed render must not end hours of training
                log.exception("validation renders at step %d failed; training goes on "
                              "(render them later with python -m training.validate)", step)

    def baseline(self, validator: Validator) -> None:
        """Step-0 contact sheet (the LoRA is still zero): shows the base look, and checks the whole
        validation set-up (workflow, models, photos) before any training time is spent."""
        self.save_lora(self.out / "checkpoints" / self.lora_name(0))
        validator.contact_sheet(self.lora_name(0), "step000000")

    def learning_rates(self) -> list[float]:
        return [recipe.warmup_lr(step, self.config.learning_rate, self.config.warmup_steps)
                for step in range(1, len(self.state.losses) + 1)]

    def write_losses(self) -> None:
        plots.loss_curve(self.out / "loss.png", self.state.losses, self.state.val_losses,
                         f"{self.config.name}: rank {self.config.rank}, lr {self.config.learning_rate:g}")
        (self.out / "losses.json").write_text(json.dumps(
            {"train": self.state.losses, "val": {str(k): v for k, v in self.state.val_losses.items()}}) + "\n")
        progress.write_loss_csv(self.out / "loss.csv", self.state.losses, plots.ema(self.state.losses),
                                self.learning_rates())

    def run(self, validator: Validator | None) -> str | None:
        """Train to --steps; returns None when done, or why it stopped early (state and LoRA then saved)."""
        config = self.config
        if validator is not None and self.state.step == 0:
            self.baseline(validator)
        started = time.monotonic() - self.state.seconds
        bar = progress.Progress(config.steps, self.state.step, config.log_every, self.out / "tensorboard")
        try:
            with stop_on_interrupt() as asked:
                while self.state.step < config.steps:
                    self.state.losses.append(self.train_step())
                    self.state.step += 1
                    self.state.seconds = time.monotonic() - started
                    step = self.state.step
                    bar.update(step, self.state.losses[-1], plots.ema(self.state.losses)[-1],
                               self.optimizer.param_groups[0]["lr"])
                    if step % config.log_every == 0:
                        progress.write_loss_csv(self.out / "loss.csv", self.state.losses, plots.ema(self.state.losses),
                                                self.learning_rates())
                    if step == config.stop_at and step < config.steps:
                        asked.append(f"--stop-at {step}")
                    if asked:
                        return asked[0]
                    if step % config.save_every == 0 and step < config.steps:
                        bar.pause()
                        self.checkpoint(validator)
                        if step in self.state.val_losses:
                            bar.validation(step, self.state.val_losses[step])
                        bar.resume()
        finally:
            bar.close()
        self.checkpoint(validator, final=True)
        return None

    # ---------------------------------------------------------------- the result

    def publish(self, lora_path: Path) -> Path:
        """Write a usable LoRA (checked through LoraLoader's code path) and its sidecar JSON."""
        lora_sd = self.save_lora(lora_path)
        patched, unloaded = comfy_runtime.lora_load_check(self.patcher, None, lora_sd)
        if unloaded or patched != len(self.network.layers):
            raise RuntimeError(f"ComfyUI patches {patched} of {len(self.network.layers)} layers from "
                               f"{lora_path.name}; not loaded: {unloaded[:5]}")
        lora = sidecar.describe(lora_path) | {"format": "kohya LoRA (lora_unet_*), ComfyUI LoraLoader",
                                              "keys": len(lora_sd), "modules": len(self.network.layers),
                                              "dtype": self.config.save_dtype, "ema": bool(self.ema),
                                              "comfyui_check": {"patched_weights": patched, "unloaded_keys": unloaded}}
        config = self.config
        notes = (f"trained with training/ on dataset sha256 {self.dataset_sha256[:16]} "
                 f"({self.counts['train_images']} images) from {self.base.name} (sha256 {self.base_sha256[:16]}): "
                 f"rank {config.rank}, alpha {config.alpha:g}, {config.target}, {self.state.step} steps, "
                 f"lr {config.learning_rate:g}, batch {config.batch_size}")
        entry = sidecar.manifest_entry(lora, config.manifest_name, notes, config.release_url)
        val = self.state.val_losses
        sidecar.write(lora_path.with_suffix(".json"), {
            "lora": lora,
            "base_model": sidecar.describe(self.base, self.base_sha256),
            "dataset": {"path": str(Path(config.dataset).resolve()), "sha256": self.dataset_sha256,
                        "trigger": self.trigger, **self.counts},
            "hyperparameters": {key: getattr(config, key) for key in HYPERPARAMETERS}
            | {"optimizer": "AdamW", "objective": "epsilon MSE, timesteps uniform over 0-999",
               "resolutions": sorted(self.sizes())},
            "training": {"device": self.device.type, "unet_dtype": str(self.dtype).removeprefix("torch."),
                         "attention": self.attention, "steps": self.state.step,
                         "seconds": round(self.state.seconds, 1),
                         "final_train_loss_ema": plots.ema(self.state.losses)[-1],
                         "validation_loss": val[max(val)] if val else None},
            "manifest_entry": entry,
        })
        log.info("wrote %s (%d bytes, sha256 %s; ComfyUI LoraLoader check: %d weights patched, %d keys not "
                 "loaded) and %s", lora_path, lora["size"], lora["sha256"], patched, len(unloaded),
                 lora_path.with_suffix(".json").name)
        return lora_path

    def finish(self) -> Path:
        """``NAME.safetensors`` and its sidecar."""
        self.network.detach()
        return self.publish(self.out / f"{self.config.name}.safetensors")

    def stop(self, reason: str) -> Path:
        """After Ctrl-C or --stop-at: the resumable state, and ``NAME-stepN.safetensors`` to use as it is."""
        state = self.save_state()
        self.write_losses()
        lora = self.publish(self.out / self.lora_name(self.state.step))
        log.warning("stopped (%s) at step %d of %d: %s is usable; %s resumes (same command plus --resume)",
                    reason, self.state.step, self.config.steps, lora.name, state.name)
        return lora

    def dry_run(self) -> dict:
        """Two real training steps: peak memory, seconds per step and the ETA of the configured run."""
        self.memory.reset()
        seconds = []
        for _ in range(DRY_RUN_STEPS):
            began = time.monotonic()
            self.train_step()
            self.state.step += 1
            seconds.append(time.monotonic() - began)
        peak, counter = self.memory.peak()
        per_step = seconds[-1]  # the first step also pays for allocation and kernel warm-up
        steps = self.config.steps - self.state.step + DRY_RUN_STEPS
        return {"device": self.device.type, "unet_dtype": str(self.dtype).removeprefix("torch."),
                "attention": self.attention, "layers": len(self.network.layers),
                "lora_parameters": self.lora_parameters(), "sizes": dict(sorted(self.sizes().items())),
                "peak_bytes": peak, "memory_counter": counter, "seconds_per_step": per_step,
                "first_step_seconds": seconds[0], "steps": steps, "eta_seconds": steps * per_step}


def dry_run_report(config: TrainConfig, trainer: Trainer, result: dict) -> str:
    """The dry run's printout: one ``name: value`` line per field."""
    sizes = ", ".join(f"{size} x{n}" for size, n in result["sizes"].items())
    lines = [
        f"dry run: {DRY_RUN_STEPS} real training steps; nothing written to {config.output}",
        f"  preset: {config.preset or 'none'}",
        f"  device: {result['device']}, UNet {result['unet_dtype']}, attention {result['attention']} "
        f"(--attention {config.attention})",
        f"  LoRA: rank {config.rank}, alpha {config.alpha:g}, {config.target}, {result['layers']} layers, "
        f"{result['lora_parameters'] / 1e6:.2f} M parameters",
        f"  data: {trainer.counts['train_images']} train + {trainer.counts['val_images']} val images at {sizes}; "
        f"batch {config.batch_size}; gradient checkpointing {'on' if config.gradient_checkpointing else 'off'}",
        f"  cache: {trainer.cache.folder} (encoded now: {trainer.cache.encoded['latents']} latents, "
        f"{trainer.cache.encoded['captions']} captions; kept for the real run)",
        f"  peak memory: {result['peak_bytes'] / 1e9:.3f} GB, {result['memory_counter']}",
        f"  seconds per step: {result['seconds_per_step']:.3f} (first step {result['first_step_seconds']:.3f}, "
        "with warm-up)",
        f"  ETA: {result['steps']} steps x {result['seconds_per_step']:.3f} s = "
        f"{progress.duration(result['eta_seconds'])} (training only; each contact sheet adds its renders)",
    ]
    return "\n".join(lines) + "\n"


def train(config: TrainConfig, resume: str | None = None, dry_run: bool = False) -> Path | str:
    """Run (or resume) training; returns the final LoRA path, the early-stop LoRA path, or the dry-run report."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    out = Path(config.output)
    trainer = Trainer(config)
    trainer.prepare()
    if resume:
        trainer.resume(trainer.latest_state() if resume == "latest" else Path(resume))
    if dry_run:
        return dry_run_report(config, trainer, trainer.dry_run())
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    validator = None
    if config.validation_photos:
        validator = Validator(out, trainer.base, list_photos(Path(config.validation_photos)), trainer.device,
                              tuple(config.strengths), config.validation_params, config.validation_seed,
                              [Path(p) for p in config.plugins],
                              Path(config.model_paths_config) if config.model_paths_config else None,
                              prompts=[p.format(trigger=trainer.trigger) for p in config.sample_prompts])
    else:
        log.info("no --validation-photos: contact sheets are skipped (held-out loss is still computed)")
    try:
        stopped = trainer.run(validator)
        return trainer.stop(stopped) if stopped else trainer.finish()
    finally:
        if validator is not None:
            validator.stop()


def load_presets(path: Path = PRESETS_FILE) -> dict:
    return json.loads(path.read_text())


def optional_int(text: str) -> int | None:
    return None if text.lower() == "none" else int(text)


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, str | None, bool]:
    defaults = TrainConfig("", "", "")
    presets = load_presets()
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True, help="SDXL base checkpoint (.safetensors)")
    parser.add_argument("--dataset", required=True, help="folder made by python -m training.prepare_dataset")
    parser.add_argument("--output", required=True, help="run folder (checkpoints, plots, final LoRA)")
    parser.add_argument("--dry-run", action="store_true",
                        help="run two real steps, print peak memory, seconds per step and the ETA, write nothing")
    parser.add_argument("--preset", choices=sorted(presets),
                        help="machine preset (training/presets.json): " + "; ".join(
                            f"{name}: {preset['label']}" for name, preset in sorted(presets.items()))
                        + ". Options given explicitly override it")
    parser.add_argument("--name", default=defaults.name, help="LoRA file name without extension")
    parser.add_argument("--manifest-name", default=defaults.manifest_name, help="models_manifest.yaml entry name")
    parser.add_argument("--trigger", default=None,
                        help="trigger word for the file metadata and sample prompts (default: the dataset's)")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--stop-at", type=int, default=None,
                        help="stop at this step as Ctrl-C does: save the state and NAME-stepN.safetensors")
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--alpha", type=float, default=defaults.alpha)
    parser.add_argument("--target", choices=TARGETS, default=defaults.target,
                        help="transformer: all Linear layers of the transformer blocks (kohya default); "
                             "attention: q/k/v/out only")
    parser.add_argument("--resolution", type=optional_int, default=defaults.resolution,
                        help="train at most at resolution² pixels: larger dataset images are cropped to the "
                             "nearest aspect bucket and downscaled when cached (default: the dataset's sizes)")
    parser.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps,
                        help="raise the learning rate linearly over this many steps (default: none)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm)
    parser.add_argument("--noise-offset", type=float, default=defaults.noise_offset,
                        help="add this × one random value per channel to the noise (0.03-0.1 typical; default 0)")
    parser.add_argument("--min-snr-gamma", type=float, default=defaults.min_snr_gamma,
                        help="weight each sample's loss by min(SNR, γ)/SNR (5 typical; default off)")
    parser.add_argument("--caption-dropout", type=float, default=defaults.caption_dropout,
                        help="train this fraction of samples on the empty caption (0.05-0.1 typical; default 0)")
    parser.add_argument("--ema", type=float, nargs="?", const=0.999, default=defaults.ema,
                        help="keep an EMA of the LoRA weights (decay, default 0.999) and save it instead of the raw "
                             "weights")
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
    parser.add_argument("--gradient-checkpointing", dest="gradient_checkpointing", action="store_true",
                        help="recompute activations in the backward pass (the default)")
    parser.add_argument("--attention", choices=list(comfy_runtime.ATTENTION_FLAGS), default=defaults.attention,
                        help="auto: ComfyUI's choice (sub-quadratic on MPS and CPU, SDPA on NVIDIA); "
                             "sdpa: PyTorch scaled_dot_product_attention; sub-quadratic: chunked, lowest peak memory")
    parser.add_argument("--save-every", type=int, default=defaults.save_every)
    parser.add_argument("--validate-every", type=int, default=None,
                        help="contact sheet every N steps (default: at every save; 0: only at the end)")
    parser.add_argument("--keep-states", type=int, default=defaults.keep_states,
                        help="resumable states kept (LoRA checkpoints are all kept)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--device", choices=DEVICES, default=defaults.device)
    parser.add_argument("--precision", choices=PRECISIONS, default=defaults.precision)
    parser.add_argument("--save-dtype", choices=SAVE_DTYPES, default=defaults.save_dtype)
    parser.add_argument("--log-every", type=int, default=defaults.log_every)
    parser.add_argument("--cache-dir", default=None,
                        help=f"latent/text-embedding cache shared by runs (default: ${ENV_CACHE_DIR} or "
                             "~/.cache/ethmumbai_avatar/training)")
    parser.add_argument("--plugin", dest="plugins", action="append", default=[],
                        help="ComfyUI custom-node folder to import first (e.g. one registering a model class)")
    parser.add_argument("--model-paths-config", default=None,
                        help=f"extra_model_paths.yaml for the validation renders (default: {paths.model_paths_config()})")
    parser.add_argument("--validation-photos", default=None, help="folder of face photos for the contact sheets")
    parser.add_argument("--strengths", type=parse_strengths, default=DEFAULT_STRENGTHS)
    parser.add_argument("--val-param", action="append", default=[],
                        help="workflow param for the renders, key=value (e.g. size=768, steps=20)")
    parser.add_argument("--sample-prompt", dest="sample_prompts", action="append", default=None,
                        help="text-to-image prompt rendered beside the photos ({trigger} is filled in; repeat for "
                             "more; default: two built-in prompts)")
    parser.add_argument("--validation-seed", type=int, default=defaults.validation_seed)
    parser.add_argument("--release-url", default=None, help="download URL for the manifest entry")
    parser.add_argument("--resume", nargs="?", const="latest", default=None,
                        help="continue from the newest state in --output, or from the given state file")
    chosen, _ = parser.parse_known_args(argv)
    if chosen.preset:
        parser.set_defaults(**presets[chosen.preset]["settings"])
    args = parser.parse_args(argv)
    for name in ("steps", "rank", "batch_size", "save_every", "log_every", "keep_states"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if not 0 <= args.caption_dropout < 1:
        parser.error("--caption-dropout must be in [0, 1)")
    if args.ema is not None and not 0 < args.ema < 1:
        parser.error("--ema (the decay) must be between 0 and 1")
    if args.resolution is not None and (args.resolution % 64 or args.resolution < 256):
        parser.error("--resolution must be a multiple of 64, at least 256")
    if args.stop_at is not None and args.stop_at < 1:
        parser.error("--stop-at must be at least 1")
    values = vars(args)
    resume, dry_run = values.pop("resume"), values.pop("dry_run")
    values["strengths"] = list(values["strengths"])
    values["validation_params"] = parse_params(values.pop("val_param"))
    values["sample_prompts"] = values["sample_prompts"] or list(DEFAULT_SAMPLE_PROMPTS)
    return TrainConfig(**values), resume, dry_run


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config, resume, dry_run = parse_args(argv)
    try:
        result = train(config, resume, dry_run)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted without saving")
        return 130
    print(result, end="" if dry_run else "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
