"""The two training loops the training benchmark times, each set up and ready to step.

"ours" is ldm's UNet trainer itself: a FreshUNet target, the latent cache (ldm.cache), and each step through
ldm.train.unet.unet_step under an Accelerator (the config's mixed precision, fused AdamW, foreach EMA,
the guarded update). "naive" is the baseline and by design not ours: what diffusers'
examples/text_to_image/train_text_to_image.py does with default flags, every step encoding the pixel batch
through the VAE and the captions through the text encoder, all in fp32, with PyTorch's default AdamW and
EMAModel without foreach.

The images are procedural and held in memory, so no files or data module are needed; models are randomly
initialised (timing does not depend on the weights) except the packaged text encoder, whose real size matters.
"""

from __future__ import annotations

import contextlib
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState, GradientState
from diffusers import UNet2DConditionModel
from diffusers.models.attention_processor import AttnProcessor, AttnProcessor2_0
from diffusers.training_utils import EMAModel
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from ldm.cache import MemoryCache, encode_dataset
from ldm.config import Config, UNetTrainConfig, vae_factor
from ldm.data.dataset import ImageCaptionDataset
from ldm.data.images import to_tensor
from ldm.data.shapes import make_shape
from ldm.models import (
    build_noise_scheduler,
    build_unet,
    build_vae,
    cross_attention_dim,
    encode_prompts,
    load_text_encoder,
    save_model,
    use_training_attention,
)
from ldm.train.losses import diffusion_loss
from ldm.train.optimization import make_lr_scheduler
from ldm.train.schedule import batch_indices, step_generator
from ldm.train.targets import FreshUNet
from ldm.train.unet import CachedBatches, prepare_training, unet_step


class SquaresDataset(ImageCaptionDataset):
    """The procedural shapes (ldm.data.shapes) held in memory, so timing never waits on image decoding."""

    def __init__(self, count: int, size: int, seed: int = 0):
        shapes = [make_shape(i, size, seed) for i in range(count)]
        self.size = size
        self.pixels = torch.stack([to_tensor(image) for image, _ in shapes])
        self.captions: list[str] = [caption for _, caption in shapes]

    def load(self, i: int) -> torch.Tensor:
        """Image i as a (3, size, size) tensor in [-1, 1]."""
        return self.pixels[i]


@dataclass
class Loop:
    """One mode's training, set up: a step to time, and what the report says about it."""

    step: Callable[[int], tuple[float, float]]  # step index -> (loss, seconds spent getting its batch)
    count_flops: Callable[[], int]  # FLOPs of one UNet forward and backward at the timed batch
    unet: torch.nn.Module
    latent_shape: list[int]
    samples_per_step: int
    ema: bool
    cache_s: float = 0.0  # ours: the one-off encoding of the dataset into the latent cache
    close: Callable[[], None] = lambda: None


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a GPU's kernels run asynchronously; a CPU's have finished)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def set_attention(unet: torch.nn.Module, attention: str) -> Callable[[], contextlib.AbstractContextManager]:
    """Override the UNet's attention for one of benchmarks.options.ATTENTION ('trainer' keeps it); returns what
    makes the SDPA backend context each step runs in."""
    if attention == "classic":
        unet.set_attn_processor(AttnProcessor())
    elif attention in ("sdpa", "math"):
        unet.set_attn_processor(AttnProcessor2_0())
    return (lambda: sdpa_kernel(SDPBackend.MATH)) if attention == "math" else contextlib.nullcontext


def _flops(unet, noise_scheduler, latents, embeds, snr_gamma, backend, autocast) -> int:
    # counted apart from the timing: the count runs slower than the step
    with FlopCounterMode(display=False) as counter, backend():
        with autocast:
            loss = diffusion_loss(unet, noise_scheduler, latents, embeds, step_generator(0, 0), snr_gamma)
        loss.backward()
    unet.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def ours(cfg: Config, data: SquaresDataset, precision: str, attention: str, channels_last: bool,
         device: torch.device = torch.device("cpu")) -> Loop:
    """ldm's trainer on this data: its target, cache, Accelerator and unet_step (precision already resolved)."""
    tc = cfg.train_unet
    with tempfile.TemporaryDirectory(prefix="ldm-bench-") as tmp:
        # a FreshUNet loads its VAE from a folder, as after scripts/train_vae.py
        torch.manual_seed(tc.seed)
        save_model(build_vae(cfg.vae, cfg.data.resolution), Path(tmp) / "vae")
        target = FreshUNet(cfg, Path(tmp), str(Path(tmp) / "vae"))
    t0 = time.perf_counter()
    # in memory: the trainer's shards add ~10 ms of memory-mapped reads a 64-row batch (scripts/benchmark.py data),
    # within this benchmark's noise, and its images are not worth files
    cache = MemoryCache(encode_dataset(target.vae.to(device), target.tokenizer, target.text_encoder.to(device), data,
                                       flip=cfg.data.flip))
    cache_s = time.perf_counter() - t0

    # the same device as naive's; the Accelerator brings the trainer's autocast and accumulation
    accelerator = Accelerator(cpu=device.type == "cpu", mixed_precision=precision,
                              gradient_accumulation_steps=tc.gradient_accumulation_steps)
    try:
        run = prepare_training(accelerator, target, tc)
    except BaseException:
        _forget_accelerator()
        raise
    backend = set_attention(run.unet, attention)
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    run.unet.to(memory_format=memory_format).train()
    batches = CachedBatches(cache, tc, float(target.vae.config.scaling_factor))
    data_s = 0.0

    def timed_batches(step: int, micro: int) -> tuple[torch.Tensor, torch.Tensor, torch.Generator]:
        nonlocal data_s
        t0 = time.perf_counter()
        latents, embeds, gen = batches(step, micro)
        data_s += time.perf_counter() - t0
        return latents.contiguous(memory_format=memory_format), embeds, gen

    def step(s: int) -> tuple[float, float]:
        before = data_s
        with backend():
            _, _, losses = unet_step(run, s, timed_batches)
        return (float(torch.stack(losses).mean()) if losses else float("nan")), data_s - before

    def count_flops() -> int:
        latents, embeds, _ = batches(0, 0)
        return _flops(run.unet, run.noise_scheduler, latents.contiguous(memory_format=memory_format), embeds,
                      tc.snr_gamma, backend, contextlib.nullcontext())  # the prepared UNet brings its own autocast

    latent = cache.tensors["mean"].shape[1:]
    return Loop(step, count_flops, run.unet, list(latent), tc.batch_size * tc.gradient_accumulation_steps,
                run.ema is not None, cache_s, _forget_accelerator)


def _forget_accelerator() -> None:
    # accelerate keeps one state per process; the next run in this process may ask for another precision
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


def naive(cfg: Config, data: SquaresDataset, precision: str, attention: str, channels_last: bool,
          device: torch.device = torch.device("cpu")) -> Loop:
    """diffusers' example loop with default flags: encode every batch, PyTorch's default AdamW, EMAModel."""
    tc = cfg.train_unet
    torch.manual_seed(tc.seed)
    tokenizer, text_encoder = load_text_encoder(cfg.text.encoder, cfg.text.max_length)
    text_encoder.to(device)
    vae = build_vae(cfg.vae, cfg.data.resolution).requires_grad_(False).eval().to(device)
    scaling = float(vae.config.scaling_factor)
    latent_size = cfg.data.resolution // vae_factor(cfg)
    unet = build_unet(cfg.unet, vae.config.latent_channels, latent_size, cross_attention_dim(text_encoder))
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    unet.to(device, memory_format=memory_format).train()
    if attention == "trainer":
        use_training_attention(unet, device, mixed_precision=precision)
    backend = set_attention(unet, attention)
    ema = _naive_ema(unet, tc)
    noise_scheduler = build_noise_scheduler(cfg.noise)
    optimizer = torch.optim.AdamW(unet.parameters(), lr=tc.learning_rate, betas=(tc.adam_beta1, tc.adam_beta2),
                                  weight_decay=tc.weight_decay)
    lr_scheduler = make_lr_scheduler(optimizer, tc, 1)
    n = len(data)

    def autocast():
        return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def batch(s: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        # as the diffusers example: a posterior sample of this batch's pixels, embeddings of its captions
        idx = batch_indices(s, 0, 1, tc.batch_size, n, tc.seed)
        with torch.no_grad():
            # a CPU generator on any device: diffusers' randn_tensor draws on the CPU and moves the noise
            latents = vae.encode(data.pixels[idx].to(device)).latent_dist.sample(generator=gen) * scaling
            embeds = encode_prompts(tokenizer, text_encoder, [data.captions[i] for i in idx])
        return latents.contiguous(memory_format=memory_format), embeds

    def step(s: int) -> tuple[float, float]:
        gen = step_generator(tc.seed, s)
        t0 = time.perf_counter()
        latents, embeds = batch(s, gen)
        synchronize(device)  # the encoding's kernels are asynchronous: wait for them to time them
        t_data = time.perf_counter() - t0
        with autocast(), backend():
            loss = diffusion_loss(unet, noise_scheduler, latents, embeds, gen, tc.snr_gamma)
        loss.backward()
        _naive_update(unet, optimizer, lr_scheduler, ema, tc.max_grad_norm)
        return float(loss.detach()), t_data

    def count_flops() -> int:
        latents, embeds = batch(0, step_generator(tc.seed, 0))
        return _flops(unet, noise_scheduler, latents, embeds, tc.snr_gamma, backend, autocast())

    return Loop(step, count_flops, unet, [vae.config.latent_channels, latent_size, latent_size], tc.batch_size,
                ema is not None, 0.0)


def _naive_ema(unet: torch.nn.Module, tc: UNetTrainConfig) -> EMAModel | None:
    """The example's EMAModel of the UNet (without foreach), or None when the config has no EMA."""
    if tc.ema_decay <= 0:
        return None
    return EMAModel(unet.parameters(), decay=tc.ema_decay, model_cls=UNet2DConditionModel, model_config=unet.config)


def _naive_update(unet: torch.nn.Module, optimizer: torch.optim.Optimizer, lr_scheduler, ema: EMAModel | None,
                  max_grad_norm: float) -> None:
    """One update after the backward, as the example takes it: clip, step, schedule, zero, then the EMA."""
    torch.nn.utils.clip_grad_norm_(unet.parameters(), max_grad_norm)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    if ema is not None:
        ema.step(unet.parameters())
