"""DreamBooth-style LoRA with prior preservation (Ruiz et al. 2023): a new concept taught to a pipeline folder's
UNet from a few images captioned with a new word, while class images the model drew itself from a class prompt
("face", "a bird") keep that class looking as it did.

The loss follows diffusers' examples/dreambooth/train_dreambooth_lora.py: instance and class rows go through the
UNet as one batch, and the class rows' denoising loss, weighted by teach.prior_weight, is added to the instance
rows'. Rows that hold the empty prompt's prediction where the frozen model had it (teach.keep_unconditional)
join the same UNet call. Class images are drawn once (with the adapters off) and kept as latents beside the run,
so a resumed run reads them instead of drawing them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch

from ldm.config import Config, TrainConfig
from ldm.errors import LdmError
from ldm.models import encode_prompts
from ldm.pipeline_folder import assemble_pipeline
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import SamplingModel
from ldm.shards import metadata, write_tensors
from ldm.train.early_stop import SettlesOnPreviews
from ldm.train.losses import noised, row_losses
from ldm.train.targets import LoraFinetune
from ldm.train.teach_inputs import check_new_word

log = logging.getLogger("ldm")
CLASS_LATENTS_FILE = "class_latents.safetensors"


def prior_preservation_loss(unet, noise_scheduler, latents: torch.Tensor, embeds: torch.Tensor,
                            class_latents: torch.Tensor, class_embeds: torch.Tensor, generator: torch.Generator,
                            prior_weight: float, snr_gamma: float | None = None,
                            kept: KeptUnconditional | None = None) -> torch.Tensor:
    """DreamBooth's loss: the instance rows' mean denoising loss plus prior_weight times the class rows', from one
    UNet call over both (noise and timesteps drawn for the instance rows first, then the class rows); with `kept`,
    its rows in the same call."""
    # L = E[|eps - eps_theta(x_t, t, c)|^2] + lambda E[|eps' - eps_theta(x'_t', t', c_pr)|^2]  (paper eq. 2)
    noisy, t, target = noised(noise_scheduler, torch.cat([latents, class_latents]), generator)
    n, m = latents.shape[0], class_latents.shape[0]
    return _weighted_rows(unet, noise_scheduler, (noisy, t, target, torch.cat([embeds, class_embeds.to(embeds.dtype)])),
                          [1.0 / n] * n + [prior_weight / m] * m, generator, snr_gamma, latents, kept)


def instance_loss(unet, noise_scheduler, latents: torch.Tensor, embeds: torch.Tensor, generator: torch.Generator,
                  snr_gamma: float | None = None, kept: KeptUnconditional | None = None) -> torch.Tensor:
    """The instance rows' mean denoising loss (no prior term); with `kept`, its rows in the same call."""
    noisy, t, target = noised(noise_scheduler, latents, generator)
    n = latents.shape[0]
    return _weighted_rows(unet, noise_scheduler, (noisy, t, target, embeds), [1.0 / n] * n, generator, snr_gamma,
                          latents, kept)


@dataclass
class KeptUnconditional:
    """Rows that keep the empty prompt's prediction as the model made it before teaching: at the instance images'
    x_t, the adapted UNet's unconditional prediction is pulled toward the frozen model's.

    Classifier-free guidance draws every prompt as u + g (c - u): adapters that move the unconditional prediction
    u, which no instance row trains, move every prompt's images."""

    uncond: torch.Tensor  # the empty prompt's embedding (1, L, D)
    weight: float
    frozen: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (x_t, t, embeds) -> prediction
    rows: int = 1  # of each micro-batch's instance images


def _weighted_rows(unet, noise_scheduler, rows: tuple, weights: list[float], generator: torch.Generator,
                   snr_gamma: float | None, latents: torch.Tensor, kept: KeptUnconditional | None) -> torch.Tensor:
    # one UNet call over every row (DDP syncs once per backward); min-SNR weights the denoising rows only
    noisy, t, target, embeds = rows
    denoising = len(t)
    if kept is not None and kept.weight > 0:
        latents = latents[:kept.rows]  # a frozen forward per row: a few rows hold the empty prompt in place
        k_noisy, k_t, _ = noised(noise_scheduler, latents, generator)
        uncond = kept.uncond.expand(latents.shape[0], -1, -1).to(latents.device, embeds.dtype)
        with torch.no_grad():
            k_target = kept.frozen(k_noisy, k_t, uncond)
        noisy, t = torch.cat([noisy, k_noisy]), torch.cat([t, k_t])
        target, embeds = torch.cat([target, k_target.to(target.dtype)]), torch.cat([embeds, uncond])
        weights = [*weights, *[kept.weight / latents.shape[0]] * latents.shape[0]]
    pred = unet(noisy, t, encoder_hidden_states=embeds).sample
    losses = torch.cat([row_losses(pred[:denoising], target[:denoising], noise_scheduler, t[:denoising], snr_gamma),
                        row_losses(pred[denoising:], target[denoising:], noise_scheduler, t[denoising:])])
    return (losses * torch.tensor(weights, device=losses.device, dtype=losses.dtype)).sum()


def _frozen(unet: torch.nn.Module, noisy: torch.Tensor, t: torch.Tensor, embeds: torch.Tensor) -> torch.Tensor:
    # the model as it was: its adapters off for one call (on the module a DDP wrapper holds)
    inner = getattr(unet, "module", unet)
    inner.disable_adapters()
    try:
        return inner(noisy, t, encoder_hidden_states=embeds).sample
    finally:
        inner.enable_adapters()


def draw_class_latents(model: SamplingModel, prompt: str, count: int, steps: int, seed: int,
                       batch_size: int = 8) -> torch.Tensor:
    """`count` images the model draws from `prompt` (seeds seed, seed + 1, ...), encoded back to the latents
    (N, C, h, w) the UNet trains on (the VAE posterior's mean, scaled)."""
    specs = [ImageSpec(prompt, seed + k) for k in range(count)]
    images = model.generate(specs, Settings(steps=steps), batch_size=batch_size)
    vae = model.vae
    with torch.no_grad():
        pixels = (images * 2 - 1).to(vae.device, vae.dtype)
        mean = torch.cat([vae.encode(part).latent_dist.mean for part in pixels.split(batch_size)])
    return (mean.float() * vae.config.scaling_factor).cpu()


def cached_class_latents(path: Path, prompt: str, count: int, steps: int, seed: int,
                         draw: Callable[[], torch.Tensor]) -> torch.Tensor:
    """The class latents kept at `path` when they were drawn with these settings, else draw() written there."""
    wanted = {"prompt": prompt, "count": str(count), "steps": str(steps), "seed": str(seed)}
    if path.is_file() and metadata(path) == wanted:
        from safetensors.torch import load_file

        return load_file(path)["latents"]
    latents = draw()
    write_tensors(path, {"latents": latents}, wanted)
    return latents


class DreamBoothLora(SettlesOnPreviews, LoraFinetune):
    """LoRA adapters on a pipeline folder's UNet that learn teach.name from the run's images, with prior
    preservation from teach.class_prompt; the result is a LoRA file."""

    def __init__(self, cfg: Config, output_dir: Path, vae_path: str | None = None):
        if cfg.finetune.lora_text_encoder:
            raise LdmError("finetune.lora_text_encoder: teaching adapts the UNet only here")
        super().__init__(cfg, output_dir, vae_path)
        check_new_word(self.tokenizer, cfg.teach.name)
        t = cfg.teach
        self.prior = bool(t.class_prompt) and t.class_images > 0 and t.prior_weight > 0
        self.class_latents: torch.Tensor | None = None
        self.class_embeds: torch.Tensor | None = None

    def place(self, device: torch.device, tc: TrainConfig, mixed_precision: str) -> None:
        """The frozen VAE on the device, and the class prompt's and the empty prompt's embeddings."""
        super().place(device, tc, mixed_precision)
        self.text_encoder.to(device)
        if self.prior:
            self.class_embeds = encode_prompts(self.tokenizer, self.text_encoder, [self.cfg.teach.class_prompt])
        self.uncond_embeds = encode_prompts(self.tokenizer, self.text_encoder, [""])

    def before_steps(self, batches, start: int, tc: TrainConfig, device: torch.device,
                     caption_lists: Sequence[Sequence[str]], show_progress: bool = False) -> None:
        """Draw (or read back) the class images the prior term trains on, with the adapters off."""
        if not self.prior:
            return
        t = self.cfg.teach

        def draw() -> torch.Tensor:
            log.info("drawing %d class images of %r for prior preservation", t.class_images, t.class_prompt)
            self.unet.disable_adapters()
            self.unet.eval()
            try:
                pipe = assemble_pipeline(self.vae, self.unet, self.tokenizer, self.text_encoder,
                                         self.init.sampling_scheduler)
                model = SamplingModel(pipe, guidance_scale=tc.guidance_scale, precision="fp32")
                return draw_class_latents(model, t.class_prompt, t.class_images, t.class_steps, tc.seed + 10_000)
            finally:
                self.unet.enable_adapters()
                self.unet.train()

        self.class_latents = cached_class_latents(self.output_dir / CLASS_LATENTS_FILE, t.class_prompt,
                                                  t.class_images, t.class_steps, tc.seed, draw)

    def loss(self, unet: torch.nn.Module, latents: torch.Tensor, embeds: torch.Tensor,
             generator: torch.Generator, tc: TrainConfig) -> torch.Tensor:
        """The instance loss, plus the weighted prior term over as many class rows (drawn from `generator`)."""
        kept = None
        if self.cfg.teach.keep_unconditional > 0:
            kept = KeptUnconditional(self.uncond_embeds, self.cfg.teach.keep_unconditional, partial(_frozen, unet))
        if not self.prior:
            return instance_loss(unet, self.noise_scheduler, latents, embeds, generator, tc.snr_gamma, kept)
        rows = torch.randint(len(self.class_latents), (latents.shape[0],), generator=generator)
        class_latents = self.class_latents[rows].to(latents.device, latents.dtype)
        class_embeds = self.class_embeds.expand(latents.shape[0], -1, -1).to(embeds.device)
        return prior_preservation_loss(unet, self.noise_scheduler, latents, embeds, class_latents, class_embeds,
                                       generator, self.cfg.teach.prior_weight, tc.snr_gamma, kept)

