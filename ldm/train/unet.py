"""Train the text-conditioned latent UNet on cached latents with Accelerate."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.training_utils import EMAModel
from safetensors.torch import load_file

from ldm.cache import MemoryCache, ShardedCache, load_or_build_cache, sample_batch
from ldm.config import Config, TrainConfig, load_config
from ldm.data.dataset import build_dataset
from ldm.errors import LdmError
from ldm.folders import find_vae
from ldm.media import make_grid, save_image_atomic
from ldm.models import (
    embed_prompts,
    use_training_attention,
)
from ldm.pipeline_folder import assemble_pipeline, sampling_scheduler
from ldm.sampling.requests import Settings, seeded_specs
from ldm.sampling.sampler import SamplingModel
from ldm.train.checkpoints import TrainingState
from ldm.train.loop import Run, StepResult
from ldm.train.optimization import NonFiniteGuard, ema_weights, make_lr_scheduler, make_optimizer, optimizer_update
from ldm.train.runtime import count_params, make_accelerator, start_logs
from ldm.train.schedule import batch_indices, step_generator
from ldm.train.targets import EMA_DIR, TEACH_METHODS, FreshUNet, make_target

log = logging.getLogger("ldm")


def _save_samples(training: UNetTraining, target: FreshUNet, cfg: Config, output_dir: Path, step: int) -> torch.Tensor:
    """A grid of the validation prompts drawn by the model as it is (its EMA weights when EMA is on)."""
    accelerator, tc = training.accelerator, cfg.train_unet
    model = accelerator.unwrap_model(training.unet)
    model.eval()
    try:
        with ema_weights(training.ema, training.trainable):
            encoder = accelerator.unwrap_model(training.text_encoder)
            pipe = assemble_pipeline(target.vae, model, target.tokenizer, encoder,
                                     sampling_scheduler(training.noise_scheduler))
            precision = accelerator.mixed_precision  # resolved: "no", "bf16" or "fp16"
            sampler = SamplingModel(pipe, guidance_scale=tc.guidance_scale,
                                    precision="fp32" if precision == "no" else precision)
            specs = seeded_specs(tc.validation_prompts, tc.seed)
            images = sampler.generate(specs, Settings(steps=tc.sample_steps, scheduler=target.preview_scheduler))
    finally:
        model.train()
    path = save_image_atomic(make_grid(images), output_dir / "samples" / f"unet-{step:07d}.png")
    tracker = accelerator.get_tracker("tensorboard") if accelerator.log_with else None
    if tracker is not None:
        tracker.writer.add_images("samples", images, step)
    log.info("step %d: samples -> %s", step, path)
    return images


@dataclass
class UNetTraining:
    """What each optimizer step of the UNet trainer touches, after accelerator.prepare."""

    accelerator: Accelerator
    tc: TrainConfig
    unet: torch.nn.Module
    text_encoder: torch.nn.Module
    noise_scheduler: object
    trainable: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    lr_scheduler: object
    ema: EMAModel | None
    guard: NonFiniteGuard
    loss: Callable[..., torch.Tensor]  # the target's: (unet, latents, embeds, generator, tc) -> loss
    text_encoder_trains: bool = False  # its LoRA adapters: then it is in each checkpoint too
    # the prepared model whose weights train, through which gradients sync and clip: the UNet, or the text encoder
    # when only it trains (textual inversion)
    learner: torch.nn.Module | None = None

    def state(self) -> TrainingState:
        """What a checkpoint holds: the UNet (and a text encoder that trains), the optimizer and LR schedule."""
        models = [self.unet, self.text_encoder] if self.text_encoder_trains else [self.unet]
        return TrainingState(models, self.optimizer, self.lr_scheduler)


def prepare_training(accelerator: Accelerator, target: FreshUNet, tc: TrainConfig) -> UNetTraining:
    """Build the target's UNet (seeded), its attention, EMA, AdamW and LR schedule, prepared by Accelerate."""
    device = accelerator.device
    torch.manual_seed(tc.seed)
    target.build()
    unet, text_encoder = target.unet, target.text_encoder
    use_training_attention(unet, device, tc.attention, accelerator.mixed_precision)
    if tc.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    ema = target.make_ema(tc.ema_decay) if tc.ema_decay > 0 else None
    optimizer = make_optimizer(target.trainable, tc)
    lr_scheduler = make_lr_scheduler(optimizer, tc, accelerator.num_processes)
    unet_trains = any(p.requires_grad for p in unet.parameters())
    if unet_trains:
        unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)
    else:  # textual inversion: DistributedDataParallel refuses a model without a weight that trains
        optimizer, lr_scheduler = accelerator.prepare(optimizer, lr_scheduler)
        unet.to(device)
    if target.encode_prompts_each_step:  # its adapters (or its new token's vector) train
        text_encoder = accelerator.prepare(text_encoder)
    if ema is not None:
        ema.to(device)
    target.place(device, tc, accelerator.mixed_precision)
    text_encoder.to(device)
    return UNetTraining(accelerator, tc, unet, text_encoder, target.noise_scheduler, target.trainable, optimizer,
                        lr_scheduler, ema, NonFiniteGuard(tc.max_nonfinite_steps), target.loss,
                        target.encode_prompts_each_step, unet if unet_trains else text_encoder)


class CachedBatches:
    """Each step's micro-batches drawn from the latent cache, in the trainer's seeded order.

    With prefetch > 0, `workers` background threads draw the next micro-batches while the model trains (a
    sharded cache reads its rows from disk; several threads keep a large batch's reads ahead of a fast GPU);
    each draw depends only on (step, micro-batch), so the batches are the same either way.
    embed(caption positions, dropped), when given, replaces the cached embeddings (a text encoder that trains);
    it runs on the caller's thread."""

    def __init__(self, cache: ShardedCache | MemoryCache, tc: TrainConfig, scaling: float, rank: int = 0,
                 world: int = 1, embed: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                 prefetch: int = 2, workers: int = 1):
        self.cache, self.tc, self.scaling, self.rank, self.world, self.embed = cache, tc, scaling, rank, world, embed
        self.n = len(cache)
        # at least one micro-batch ahead per worker, or the extra workers would wait
        self.prefetch = max(prefetch, workers) if prefetch > 0 else 0
        self._pool = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="ldm-batches") if prefetch > 0 else None
        self._ahead: dict[tuple[int, int], Future] = {}

    def _draw(self, step: int, micro: int):
        tc = self.tc
        gen = step_generator(tc.seed, step, micro, self.rank)
        idx = batch_indices(step, micro, tc.gradient_accumulation_steps, tc.batch_size, self.n, tc.seed, self.rank,
                            self.world)
        return (*sample_batch(self.cache, idx, gen, self.scaling, tc.caption_dropout, tc.primary_caption_share), gen)

    def _after(self, step: int, micro: int) -> tuple[int, int]:
        return (step, micro + 1) if micro + 1 < self.tc.gradient_accumulation_steps else (step + 1, 0)

    def __call__(self, step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        """Latents, embeddings and the generator that then draws the noise, for one micro-batch."""
        if self._pool is None:
            latents, embeds, dropped, picks, gen = self._draw(step, micro)
        else:
            future = self._ahead.pop((step, micro), None) or self._pool.submit(self._draw, step, micro)
            for stale in [k for k in self._ahead if k < (step, micro)]:  # a caller that jumped ahead
                self._ahead.pop(stale).cancel()
            key = (step, micro)
            for _ in range(self.prefetch):
                key = self._after(*key)
                if key not in self._ahead:
                    self._ahead[key] = self._pool.submit(self._draw, *key)
            latents, embeds, dropped, picks, gen = future.result()
        if self.embed is not None:
            embeds = self.embed(picks, dropped)
        return latents, embeds, gen

    def close(self) -> None:
        """Stop drawing ahead."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool, self._ahead = None, {}


def unet_step(run: UNetTraining, step: int,
              batches: Callable[[int, int], tuple[torch.Tensor, torch.Tensor, torch.Generator]],
              ) -> tuple[bool, float, list[torch.Tensor]]:
    """One optimizer step: gradients accumulated over the step's micro-batches, the guarded update, then EMA.

    Returns whether the weights changed, the gradient norm and the finite micro-batch losses."""
    accelerator, tc, unet, device = run.accelerator, run.tc, run.unet, run.accelerator.device
    loss_ok, losses = True, []
    for micro in range(tc.gradient_accumulation_steps):
        with accelerator.accumulate(run.learner):
            latents, embeds, gen = batches(step, micro)
            # autocast here as well as in the prepared UNet: frozen models the loss runs (a teacher) share it
            with accelerator.autocast():
                loss = run.loss(unet, latents.to(device), embeds.to(device), gen, tc)
            if not run.guard.all_finite(accelerator, loss):
                loss_ok = False
                continue
            accelerator.backward(loss)
            losses.append(loss.detach())
    updated, grad_norm = optimizer_update(accelerator, run.learner, run.optimizer, run.lr_scheduler, tc, run.guard,
                                          step, loss_ok)
    if updated and run.ema is not None:
        run.ema.step(run.trainable)
    return updated, grad_norm, losses


def train_unet(cfg: Config, output_dir: str | Path, resume: str | None = None, vae_path: str | None = None,
               trust_pickle: bool = False) -> Path:
    """Train the UNet; write checkpoints under output_dir/checkpoints/unet and the pipeline to output_dir.

    trust_pickle lets --resume convert a checkpoint that an older ldm saved with pickles.
    """
    output_dir = Path(output_dir)
    tc = cfg.train_unet
    accelerator = make_accelerator(tc, output_dir)

    # 1. what this run trains (its Target: fresh, fine-tune, LoRA, distillation), its frozen encoders, the cache
    target = make_target(cfg, output_dir, vae_path)
    dataset = build_dataset(cfg.data, "train", seed=tc.seed)
    start_logs(accelerator, "unet")
    cache = load_or_build_cache(accelerator, output_dir / "cache", target.vae, target.tokenizer, target.text_encoder,
                                dataset, cfg.data.flip, num_workers=cfg.data.num_workers)

    # 2. the model and its trainable parameters, EMA, optimizer; resume
    training = prepare_training(accelerator, target, tc)
    save_extra, load_extra = _checkpoint_extras(target, training.ema, accelerator.device)
    run = Run(accelerator, cfg, tc, "unet", output_dir, training.state(), save_extra, load_extra)
    start = run.resume(resume, trust_pickle)
    log.info("unet %s params, %d training images, batch %d x %d processes x %d accumulation, %s precision",
             count_params(training.unet), len(cache), tc.batch_size, accelerator.num_processes,
             tc.gradient_accumulation_steps, accelerator.mixed_precision)

    # 3. the loop; data.num_workers threads read the cache's rows ahead of the steps (images were encoded already)
    batches = CachedBatches(cache, tc, float(target.vae.config.scaling_factor), accelerator.process_index,
                            accelerator.num_processes, _prompt_embedder(target, training, dataset),
                            workers=max(cfg.data.num_workers, 1))
    try:
        with accelerator.autocast():  # as each step's loss runs: a teacher's solves share it
            target.before_steps(batches, start, tc, accelerator.device, dataset.caption_lists,
                                accelerator.is_local_main_process)
        training.unet.train()
        run.loop(start, partial(_step_result, training, target, batches),
                 preview=partial(_preview, training, target, cfg, output_dir) if tc.validation_prompts else None,
                 preview_every=tc.sample_every)
    finally:
        batches.close()

    # 4. the result, with EMA weights when EMA is on: a LoRA file, or a pipeline folder
    if accelerator.is_main_process:
        unwrap = accelerator.unwrap_model
        with ema_weights(training.ema, training.trainable):
            target.write_result(unwrap(training.unet), unwrap(training.text_encoder))
        log.info("result -> %s", output_dir)
    run.end()
    return output_dir


def _preview(training: UNetTraining, target: FreshUNet, cfg: Config, output_dir: Path, step: int) -> bool:
    """The preview grid, and whether the Target may stop here (a teach run whose previews stopped changing)."""
    return target.settled(_save_samples(training, target, cfg, output_dir, step))


def _step_result(training: UNetTraining, target: FreshUNet, batches: CachedBatches, index: int) -> StepResult:
    """unet_step for the loop: its metrics, the loss averaged over micro-batches and processes and the Target's own
    (a fake-score network's loss), on logging steps."""
    updated, grad_norm, losses = unet_step(training, index, batches)
    reduce = training.accelerator.reduce
    return StepResult(updated, grad_norm, lambda: {"loss": float(reduce(torch.stack(losses).mean(), reduction="mean")),
                                                   **target.metrics()})


def _checkpoint_extras(target: FreshUNet, ema: EMAModel | None, device: torch.device
                       ) -> tuple[Callable[[Path], None], Callable[[Path], None]]:
    """How a checkpoint saves and restores what is not the prepared UNet's state: the EMA weights (the Target's
    format, when EMA is on) and what the Target trains beside the UNet (save_extra: a fake-score network)."""

    def save(folder: Path) -> None:
        if ema is not None:
            target.save_ema(ema, folder)
        target.save_extra(folder)

    def load(folder: Path) -> None:
        if ema is not None:
            target.load_ema(ema, folder)
            ema.to(device)
        target.load_extra(folder)

    return save, load


def _prompt_embedder(target: FreshUNet, training: UNetTraining, dataset
                     ) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None:
    """Fresh embeddings each step from a text encoder that trains (its LoRA adapters), or None: the cache's."""
    if not target.encode_prompts_each_step:
        return None
    flat_captions = [c for captions in dataset.caption_lists for c in captions]  # as the cache's caption positions

    def embed(picks: torch.Tensor, dropped: torch.Tensor) -> torch.Tensor:
        prompts = ["" if d else flat_captions[p] for p, d in zip(picks.tolist(), dropped.tolist(), strict=True)]
        return embed_prompts(target.tokenizer, training.text_encoder, prompts)

    return embed


def pipeline_from_checkpoint(checkpoint: str | Path, out_dir: str | Path, vae_path: str | Path | None = None) -> Path:
    """Write a pipeline folder from a UNet training checkpoint (EMA weights when it has them).

    The run's own Target writes it, so a fine-tune or a distilled student keeps its folder's VAE, text encoder
    and scheduler, as the run's final result would.
    """
    checkpoint = Path(checkpoint)
    config_file = checkpoint / "config.yaml"
    if not config_file.is_file():
        raise LdmError(f"{checkpoint} is not a UNet checkpoint (no config.yaml)")
    cfg = load_config(config_file)
    if cfg.finetune.init_from and cfg.finetune.method in ("lora", *TEACH_METHODS):
        raise LdmError(f"{checkpoint} holds LoRA adapters or an embedding, not a UNet: let the run finish (or "
                       "--resume it) for its file")
    out_dir = Path(out_dir)
    if cfg.finetune.init_from:
        target = make_target(cfg, out_dir)
    else:  # a fresh UNet's VAE lives in its run folder (or was named to the run)
        run_dir = checkpoint.parents[2] if len(checkpoint.parents) > 2 else checkpoint.parent
        target = FreshUNet(cfg, out_dir, str(vae_path or find_vae(cfg, run_dir, None)))
    target.build()
    # the weights go into the run's own UNet: the EMA folder's config also holds EMAModel's settings (decay, ...),
    # which diffusers would warn about on every load of the export
    ema = checkpoint / EMA_DIR / "diffusion_pytorch_model.safetensors"
    target.unet.load_state_dict(load_file(ema if ema.is_file() else checkpoint / "model.safetensors"))
    target.write_result(target.unet, target.text_encoder)
    return out_dir
