"""Assemble diffusers' StableDiffusionPipeline from our components and generate images."""

from __future__ import annotations

import torch
from diffusers import DDIMScheduler, StableDiffusionPipeline


def assemble_pipeline(vae, unet, tokenizer, text_encoder, scheduler) -> StableDiffusionPipeline:
    """A stock StableDiffusionPipeline over already-loaded components (no safety checker)."""
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def sampling_scheduler(train_scheduler) -> DDIMScheduler:
    """A DDIM sampler over the training schedule (steps_offset=1 as in Stable Diffusion)."""
    return DDIMScheduler.from_config(train_scheduler.config, steps_offset=1)


@torch.no_grad()
def generate(pipe: StableDiffusionPipeline, prompts: list[str], seed: int, steps: int = 25,
             guidance_scale: float = 3.0) -> torch.Tensor:
    """Images in [0, 1] (N, 3, H, W); image k uses its own CPU generator seeded seed + k."""
    generators = [torch.Generator().manual_seed(seed + k) for k in range(len(prompts))]
    out = pipe(prompts, num_inference_steps=steps, guidance_scale=guidance_scale, generator=generators,
               output_type="pt", return_dict=True)
    return out.images.float().cpu()
