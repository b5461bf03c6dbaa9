"""Train the ETHMumbai style LoRA: SDXL UNet only, kohya keys, loadable by ComfyUI's LoraLoader.

    python -m training.train --base-model models/checkpoints/sd_xl_base_1.0.safetensors \\
        --dataset data/ethmumbai --output runs/ethmumbai_v1 --validation-photos photos/

Writes into --output: ``checkpoints/NAME-stepNNNNNN.safetensors`` (+ resumable ``state-stepNNNNNN.pt``)
every --save-every steps, ``loss.png`` / ``losses.json``, ``validation/*.png`` contact sheets, and at the
end ``NAME.safetensors`` with its sidecar ``NAME.json`` (hashes, hyperparameters, manifest entry).
Run the same command with ``--resume`` to continue from the newest state (or ``--resume PATH``).
Ctrl-C saves a state before exiting.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch.utils.checkpoint import checkpoint

from avatar_driver import paths
from avatar_driver.manifest import sha256_file
from training import comfy_runtime, plots, sidecar
from training.cache import Encoded, EncodingCache
from training.dataset import dataset_hash, split_items
from training.device import DEVICES, PRECISIONS, pick_device, pick_dtype
from training.lora import TARGETS, LoRANetwork, NetworkSpec
from training.validate import DEFAULT_STRENGTHS, Validator, list_photos, parse_params, parse_strengths

SAVE_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
HYPERPARAMETERS = ("steps", "rank", "alpha", "target", "learning_rate", "weight_decay", "batch_size", "max_grad_norm",
                   "gradient_checkpointing", "seed", "precision", "save_dtype")
# Held-out loss: every validation image at these timesteps with fixed noise, so checkpoints compare.
VAL_TIMESTEPS = (100, 300, 500, 700, 900)

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
    release_url: str | None = None


@dataclass
class Example:
    """One cached training image on the device: latent in model space and its UNet conditioning."""

    latent: torch.Tensor
    conds: dict[str, torch.Tensor]

    @property
    def group(self) -> tuple:
        return (tuple(self.latent.shape),) + tuple(tuple(v.shape) for v in self.conds.values())


@dataclass
class State:
    step: int = 0
    losses: list[float] = field(default_factory=list)
    val_losses: dict[int, float] = field(default_factory=dict)
    seconds: float = 0.0


def to_example(model, encoded: Encoded, device: torch.device) -> Example:
    """Conditioning exactly as ComfyUI's sampler builds it (``extra_conds``: SDXL size/crop embeddings
    from the latent size, as ``samplers.encode_model_conds`` does at render time)."""
    latent = model.process_latent_in(encoded.latent)
    height, width = latent.shape[-2:]
    conds = model.extra_conds(cross_attn=encoded.cond, pooled_output=encoded.pooled, width=width * 8,
                              height=height * 8, device=torch.device("cpu"), noise=latent)
    return Example(latent.to(device), {key: cond.cond.to(device) for key, cond in conds.items()})


def batch_of(examples: list[Example]) -> Example:
    return Example(torch.cat([e.latent for e in examples]),
                   {key: torch.cat([e.conds[key] for e in examples]) for key in examples[0].conds})


def sample_batch(examples: list[Example], batch_size: int, generator: torch.Generator) -> Example:
    """A random example plus others of the same bucket (same latent and text shapes) to fill the batch."""
    first = examples[int(torch.randint(len(examples), (1,), generator=generator))]
    same = [e for e in examples if e.group == first.group and e is not first]
    order = torch.randperm(len(same), generator=generator).tolist()[: batch_size - 1]
    return batch_of([first] + [same[i] for i in order])


def diffusion_loss(model, batch: Example, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """Noise-prediction MSE (the SDXL/kohya/diffusers objective) through ComfyUI's own ``apply_model``.

    ComfyUI's EPS model returns the denoised latent ``x - sigma·eps``; eps is recovered from it, so
    every timestep weighs the same as in standard training (a loss on the denoised latent would
    weigh each timestep by sigma²).
    """
    sampling = model.model_sampling
    sigma = sampling.sigmas[timesteps]
    noisy = sampling.noise_scaling(sigma, noise, batch.latent)
    denoised = model.apply_model(noisy, sigma, transformer_options={}, **batch.conds)
    eps = (noisy - denoised) / sigma.view(-1, *([1] * (noisy.ndim - 1)))
    return F.mse_loss(eps.float(), noise.float())


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


class Trainer:
    def __init__(self, config: TrainConfig):
        self.config = config
        self.out = Path(config.output)
        self.device = pick_device(config.device)
        self.dtype = pick_dtype(self.device, config.precision)
        self.spec = NetworkSpec(config.rank, config.alpha, config.target)
        self.state = State()
        self.generator = torch.Generator().manual_seed(config.seed)

    # ---------------------------------------------------------------- set-up

    def prepare(self) -> None:
        config = self.config
        comfy_runtime.import_comfy(self.device, [Path(p) for p in config.plugins])
        self.base = Path(config.base_model)
        log.info("hashing base model %s", self.base)
        self.base_sha256 = sha256_file(self.base)
        dataset = Path(config.dataset)
        train_items, val_items = split_items(dataset, "train"), split_items(dataset, "val")
        if not train_items:
            raise ValueError(f"{dataset}/train has no .png images (prepare it with python -m training.prepare_dataset)")
        self.dataset_sha256 = dataset_hash(dataset)
        self.counts = {"train_images": len(train_items), "val_images": len(val_items)}

        cache = EncodingCache(self.out / "cache" / self.base_sha256[:16])
        images, captions = cache.missing(train_items + val_items)
        patcher, clip, vae = comfy_runtime.load_checkpoint(self.base, self.dtype, bool(captions), bool(images))
        cache.fill(images, captions, clip, vae)
        del clip, vae
        comfy_runtime.free_memory()

        self.patcher = patcher
        self.model = patcher.model
        import comfy.model_base

        if self.model.model_type != comfy.model_base.ModelType.EPS:
            raise ValueError(f"{self.base.name}: only epsilon-prediction checkpoints (SDXL base) are supported, "
                             f"this one is {self.model.model_type.name}")
        self.model.to(self.device).requires_grad_(False)
        self.train_examples = [to_example(self.model, e, self.device) for e in cache.load(train_items)]
        self.val_examples = [to_example(self.model, e, self.device) for e in cache.load(val_items)]
        self.network = LoRANetwork(self.model, self.spec).to(self.device)
        self.network.attach()
        if config.gradient_checkpointing:
            enable_gradient_checkpointing(self.model.diffusion_model)
        self.optimizer = torch.optim.AdamW(self.network.parameters(), lr=config.learning_rate,
                                           weight_decay=config.weight_decay)
        log.info("LoRA: %d layers, %.2f M parameters, rank %d alpha %g on %s; UNet %s on %s",
                 len(self.network.layers), sum(p.numel() for p in self.network.parameters()) / 1e6,
                 config.rank, config.alpha, config.target, self.dtype, self.device)

    # ---------------------------------------------------------------- checkpoints

    def state_path(self, step: int) -> Path:
        return self.out / "checkpoints" / f"state-step{step:06d}.pt"

    def lora_name(self, step: int) -> str:
        return f"{self.config.name}-step{step:06d}.safetensors"

    def save_lora(self, path: Path) -> dict[str, torch.Tensor]:
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        # No safetensors metadata: its order is not stable, and identical weights should hash the same.
        state = self.network.kohya_state_dict(SAVE_DTYPES[self.config.save_dtype])
        save_file(state, str(partial))
        partial.chmod(0o644)  # safetensors creates files readable by their owner only
        partial.replace(path)
        return state

    def save_state(self) -> Path:
        path = self.state_path(self.state.step)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"step": self.state.step, "losses": self.state.losses, "val_losses": self.state.val_losses,
                    "seconds": self.state.seconds, "network": self.network.state_dict(),
                    "optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(),
                    "spec": asdict(self.spec), "base_sha256": self.base_sha256}, path.with_suffix(".partial"))
        path.with_suffix(".partial").replace(path)
        for old in sorted((self.out / "checkpoints").glob("state-step*.pt"))[: -self.config.keep_states]:
            old.unlink()
        return path

    def latest_state(self) -> Path:
        states = sorted((self.out / "checkpoints").glob("state-step*.pt"))
        if not states:
            raise FileNotFoundError(f"no state-step*.pt in {self.out / 'checkpoints'} to resume from")
        return states[-1]

    def resume(self, path: Path) -> None:
        saved = torch.load(path, map_location="cpu", weights_only=True)
        if saved["spec"] != asdict(self.spec):
            raise ValueError(f"{path} was trained with {saved['spec']}, not {asdict(self.spec)}")
        if saved["base_sha256"] != self.base_sha256:
            raise ValueError(f"{path} was trained on another base model (sha256 {saved['base_sha256'][:12]}…)")
        self.network.load_state_dict(saved["network"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.generator.set_state(saved["generator"])
        self.state = State(saved["step"], list(saved["losses"]), {int(k): v for k, v in saved["val_losses"].items()},
                           saved["seconds"])
        log.info("resumed from %s at step %d", path, self.state.step)

    # ---------------------------------------------------------------- training

    def train_step(self) -> float:
        batch = sample_batch(self.train_examples, self.config.batch_size, self.generator)
        noise = torch.randn(batch.latent.shape, generator=self.generator).to(self.device)
        timesteps = torch.randint(len(self.model.model_sampling.sigmas), (batch.latent.shape[0],),
                                  generator=self.generator).to(self.device)
        loss = diffusion_loss(self.model, batch, noise, timesteps)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"loss is {loss.item()} at step {self.state.step + 1}; "
                                     "on MPS try --precision fp32, else lower --learning-rate")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.network.parameters(), self.config.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach().item()

    def checkpoint(self, validator: Validator | None, final: bool = False) -> None:
        """Save LoRA + state; held-out loss; loss curve; contact sheet when due."""
        step = self.state.step
        self.save_lora(self.out / "checkpoints" / self.lora_name(step))
        if self.val_examples:
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

    def write_losses(self) -> None:
        plots.loss_curve(self.out / "loss.png", self.state.losses, self.state.val_losses,
                         f"{self.config.name}: rank {self.config.rank}, lr {self.config.learning_rate:g}")
        (self.out / "losses.json").write_text(json.dumps(
            {"train": self.state.losses, "val": {str(k): v for k, v in self.state.val_losses.items()}}) + "\n")

    def run(self, validator: Validator | None) -> None:
        config = self.config
        if validator is not None and self.state.step == 0:
            self.baseline(validator)
        started = time.monotonic() - self.state.seconds
        window = (time.monotonic(), self.state.step)  # for the it/s figure: training steps only
        try:
            while self.state.step < config.steps:
                self.state.losses.append(self.train_step())
                self.state.step += 1
                self.state.seconds = time.monotonic() - started
                if self.state.step % config.log_every == 0 or self.state.step == config.steps:
                    rate = (self.state.step - window[1]) / max(time.monotonic() - window[0], 1e-9)
                    log.info("step %d/%d loss %.4f (EMA %.4f) %.2f it/s", self.state.step, config.steps,
                             self.state.losses[-1], plots.ema(self.state.losses)[-1], rate)
                    window = (time.monotonic(), self.state.step)
                if self.state.step % config.save_every == 0 and self.state.step < config.steps:
                    self.checkpoint(validator)
                    window = (time.monotonic(), self.state.step)
        except KeyboardInterrupt:
            log.warning("interrupted: saved %s; continue with --resume", self.save_state())
            raise
        self.checkpoint(validator, final=True)

    # ---------------------------------------------------------------- the result

    def finish(self) -> Path:
        """``NAME.safetensors`` (checked through LoraLoader's code path) and its sidecar JSON."""
        lora_path = self.out / f"{self.config.name}.safetensors"
        lora_sd = self.save_lora(lora_path)
        self.network.detach()
        patched, unloaded = comfy_runtime.lora_load_check(self.patcher, None, lora_sd)
        if unloaded or patched != len(self.network.layers):
            raise RuntimeError(f"ComfyUI patches {patched} of {len(self.network.layers)} layers from "
                               f"{lora_path.name}; not loaded: {unloaded[:5]}")
        lora = sidecar.describe(lora_path) | {"format": "kohya LoRA (lora_unet_*), ComfyUI LoraLoader",
                                              "keys": len(lora_sd), "modules": len(self.network.layers),
                                              "dtype": self.config.save_dtype,
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
            "dataset": {"path": str(Path(config.dataset).resolve()), "sha256": self.dataset_sha256, **self.counts},
            "hyperparameters": {key: getattr(config, key) for key in HYPERPARAMETERS}
            | {"optimizer": "AdamW", "objective": "epsilon MSE, timesteps uniform over 0-999",
               "resolutions": sorted({f"{e.latent.shape[-1] * 8}x{e.latent.shape[-2] * 8}"
                                      for e in self.train_examples})},
            "training": {"device": self.device.type, "unet_dtype": str(self.dtype).removeprefix("torch."),
                         "steps": self.state.step, "seconds": round(self.state.seconds, 1),
                         "final_train_loss_ema": plots.ema(self.state.losses)[-1],
                         "validation_loss": val[max(val)] if val else None},
            "manifest_entry": entry,
        })
        log.info("wrote %s (%d bytes, sha256 %s) and %s", lora_path, lora["size"], lora["sha256"],
                 lora_path.with_suffix(".json").name)
        return lora_path


def train(config: TrainConfig, resume: str | None = None) -> Path:
    """Run (or resume) training; returns the final LoRA path."""
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(asdict(config), indent=2) + "\n")
    trainer = Trainer(config)
    trainer.prepare()
    if resume:
        trainer.resume(trainer.latest_state() if resume == "latest" else Path(resume))
    validator = None
    if config.validation_photos:
        validator = Validator(out, trainer.base, list_photos(Path(config.validation_photos)), trainer.device,
                              tuple(config.strengths), config.validation_params, config.validation_seed,
                              [Path(p) for p in config.plugins],
                              Path(config.model_paths_config) if config.model_paths_config else None)
    else:
        log.info("no --validation-photos: contact sheets are skipped (held-out loss is still computed)")
    try:
        trainer.run(validator)
        return trainer.finish()
    finally:
        if validator is not None:
            validator.stop()


def parse_args(argv: list[str] | None = None) -> tuple[TrainConfig, str | None]:
    defaults = TrainConfig("", "", "")
    parser = argparse.ArgumentParser(prog="python -m training.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-model", required=True, help="SDXL base checkpoint (.safetensors)")
    parser.add_argument("--dataset", required=True, help="folder made by python -m training.prepare_dataset")
    parser.add_argument("--output", required=True, help="run folder (checkpoints, plots, final LoRA)")
    parser.add_argument("--name", default=defaults.name, help="LoRA file name without extension")
    parser.add_argument("--manifest-name", default=defaults.manifest_name, help="models_manifest.yaml entry name")
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--rank", type=int, default=defaults.rank)
    parser.add_argument("--alpha", type=float, default=defaults.alpha)
    parser.add_argument("--target", choices=TARGETS, default=defaults.target,
                        help="transformer: all Linear layers of the transformer blocks (kohya default); "
                             "attention: q/k/v/out only")
    parser.add_argument("--learning-rate", "--lr", type=float, default=defaults.learning_rate)
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--max-grad-norm", type=float, default=defaults.max_grad_norm)
    parser.add_argument("--no-gradient-checkpointing", dest="gradient_checkpointing", action="store_false")
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
    parser.add_argument("--plugin", dest="plugins", action="append", default=[],
                        help="ComfyUI custom-node folder to import first (e.g. one registering a model class)")
    parser.add_argument("--model-paths-config", default=None,
                        help=f"extra_model_paths.yaml for the validation renders (default: {paths.model_paths_config()})")
    parser.add_argument("--validation-photos", default=None, help="folder of face photos for the contact sheets")
    parser.add_argument("--strengths", type=parse_strengths, default=DEFAULT_STRENGTHS)
    parser.add_argument("--val-param", action="append", default=[],
                        help="workflow param for the renders, key=value (e.g. size=768, steps=20)")
    parser.add_argument("--validation-seed", type=int, default=defaults.validation_seed)
    parser.add_argument("--release-url", default=None, help="download URL for the manifest entry")
    parser.add_argument("--resume", nargs="?", const="latest", default=None,
                        help="continue from the newest state in --output, or from the given state file")
    args = parser.parse_args(argv)
    for name in ("steps", "rank", "batch_size", "save_every", "log_every", "keep_states"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    values = vars(args)
    resume = values.pop("resume")
    values["strengths"] = list(values["strengths"])
    values["validation_params"] = parse_params(values.pop("val_param"))
    return TrainConfig(**values), resume


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config, resume = parse_args(argv)
    try:
        print(train(config, resume))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
