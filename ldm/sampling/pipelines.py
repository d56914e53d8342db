"""diffusers' image-to-image and inpainting pipelines, started from ldm's own draws.

The stock pipelines draw the starting noise and the VAE posterior sample from a torch generator; ldm draws
both from each image's own seeds (noise.py), so that an image depends on its seed alone and strength 1 is
text to image from the same seed. Each subclass replaces only `prepare_latents`; the denoising loop,
schedulers, guidance and (for inpainting) the re-noised known latents outside the mask are diffusers'.
"""

from __future__ import annotations

import torch
from diffusers import StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline
from diffusers.image_processor import VaeImageProcessor


class SeededImg2Img(StableDiffusionImg2ImgPipeline):
    """diffusers' image-to-image loop, started from ldm's draws: `clean` latents (the init image's posterior
    sampled with each image's own generators) and `start_noise` (the seeds' noise), mixed by the scheduler's
    own add_noise."""

    start_noise: torch.Tensor
    clean: torch.Tensor

    def prepare_latents(self, image, timestep, batch_size, num_images_per_prompt, dtype, device, generator=None):
        return self.scheduler.add_noise(self.clean.to(device, dtype), self.start_noise.to(device, dtype), timestep)


class SeededInpaint(StableDiffusionInpaintPipeline):
    """diffusers' inpainting loop started from ldm's draws, as SeededImg2Img (strength 1: pure noise)."""

    start_noise: torch.Tensor
    clean: torch.Tensor

    def prepare_latents(self, batch_size, num_channels_latents, height, width, dtype, device, generator,
                        latents=None, image=None, timestep=None, is_strength_max=True, return_noise=False,
                        return_image_latents=False):
        noise, clean = self.start_noise.to(device, dtype), self.clean.to(device, dtype)
        start = noise * self.scheduler.init_noise_sigma if is_strength_max else \
            self.scheduler.add_noise(clean, noise, timestep)
        return (start, *((noise,) if return_noise else ()), *((clean,) if return_image_latents else ()))


def pipeline_for(components: dict, scheduler, kind: type = StableDiffusionPipeline) -> StableDiffusionPipeline:
    """The loaded modules as a `kind` pipeline under a scheduler of this call's own: concurrent calls never
    share its state."""
    pipe = kind(**{**components, "scheduler": scheduler}, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def seeded_pipeline(kind: type, components: dict, scheduler, noise: torch.Tensor, clean: torch.Tensor):
    """A SeededImg2Img or SeededInpaint over the loaded modules, started from `noise` and `clean` latents."""
    pipe = pipeline_for(components, scheduler, kind)
    pipe.image_processor = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor,
                                             vae_latent_channels=components["vae"].config.latent_channels)
    pipe.start_noise, pipe.clean = noise, clean
    return pipe
