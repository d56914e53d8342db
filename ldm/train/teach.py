"""DreamBooth-style LoRA with prior preservation (Ruiz et al. 2023): a new concept taught to a pipeline folder's
UNet from a few images captioned with a new word, while class images the model drew itself from a class prompt
("face", "a bird") keep that class looking as it did.

The loss follows diffusers' examples/dreambooth/train_dreambooth_lora.py: instance and class rows go through the
UNet as one batch, and the class rows' denoising loss, weighted by teach.prior_weight, is added to the instance
rows'. Class images are drawn once (with the adapters off) and kept as latents beside the run, so a resumed run
reads them instead of drawing them again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
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
from ldm.train.losses import diffusion_loss, per_sample_diffusion_loss
from ldm.train.targets import LoraFinetune
from ldm.train.teach_inputs import check_new_word

log = logging.getLogger("ldm")
CLASS_LATENTS_FILE = "class_latents.safetensors"


def prior_preservation_loss(unet, noise_scheduler, latents: torch.Tensor, embeds: torch.Tensor,
                            class_latents: torch.Tensor, class_embeds: torch.Tensor, generator: torch.Generator,
                            prior_weight: float, snr_gamma: float | None = None) -> torch.Tensor:
    """DreamBooth's loss: the instance rows' mean denoising loss plus prior_weight times the class rows', from one
    UNet call over both (noise and timesteps drawn for the instance rows first, then the class rows)."""
    # L = E[|eps - eps_theta(x_t, t, c)|^2] + lambda E[|eps' - eps_theta(x'_t', t', c_pr)|^2]  (paper eq. 2)
    both = per_sample_diffusion_loss(unet, noise_scheduler, torch.cat([latents, class_latents]),
                                     torch.cat([embeds, class_embeds.to(embeds.dtype)]), generator, snr_gamma)
    n = latents.shape[0]
    return both[:n].mean() + prior_weight * both[n:].mean()


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
        """The frozen VAE on the device, and the class prompt's embedding."""
        super().place(device, tc, mixed_precision)
        if self.prior:
            self.text_encoder.to(device)
            self.class_embeds = encode_prompts(self.tokenizer, self.text_encoder, [self.cfg.teach.class_prompt])

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
        if not self.prior:
            return diffusion_loss(unet, self.noise_scheduler, latents, embeds, generator, tc.snr_gamma)
        rows = torch.randint(len(self.class_latents), (latents.shape[0],), generator=generator)
        class_latents = self.class_latents[rows].to(latents.device, latents.dtype)
        class_embeds = self.class_embeds.expand(latents.shape[0], -1, -1).to(embeds.device)
        return prior_preservation_loss(unet, self.noise_scheduler, latents, embeds, class_latents, class_embeds,
                                       generator, self.cfg.teach.prior_weight, tc.snr_gamma)

