"""One batch through diffusers' denoising loop, in one of three modes: text to image, image to image, inpainting.

The sampler (sampler.py) checks the request and prepares what every batch shares (a Job); this module gives
each image its conditioning and its own starting draws, picks the stock pipeline of the mode, runs it under
a fresh scheduler and decodes the result.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import StableDiffusionPipeline

from ldm.precision import autocast
from ldm.sampling.embeddings import blends_predictions, conditioning, morph_conditioning, prompt_step
from ldm.sampling.init_image import InitImage
from ldm.sampling.inpaint import InpaintPlan
from ldm.sampling.noise import NoiseSource, SeedBlend, scheduler_noise
from ldm.sampling.pipelines import SeededImg2Img, SeededInpaint, pipeline_for, seeded_pipeline
from ldm.sampling.prediction_morph import PredictionMorph
from ldm.sampling.prompt_syntax import Runs, parse_prompt
from ldm.sampling.requests import ImageSpec, Progress, Settings, denoising_steps
from ldm.sampling.schedulers import make_scheduler
from ldm.sampling.vae import decode_each


@dataclass
class Job:
    """One generate() call's shared state: the model, resolved settings, embeddings, the steps that run, progress."""

    pipe: StableDiffusionPipeline  # the loaded modules; each batch runs them in a pipeline of its own
    decoder: object  # what decodes the latents: pipe.vae, or the tiny VAE copying it (settings.decoder)
    scheduler_config: dict  # the model's noise schedule, for each batch's fresh scheduler
    precision: str
    settings: Settings
    embeds: dict[Runs, torch.Tensor]
    steps: int  # sampling steps that run (image to image: int(steps x strength)), for prompt editing
    changing: bool  # some prompt changes text between steps
    total: int
    progress: Progress | None
    posterior: tuple[torch.Tensor, torch.Tensor] | None  # image to image below strength 1: the init's mean, std
    init: InitImage | None = None
    plan: InpaintPlan | None = None  # inpainting
    masked_latents: torch.Tensor | None = None  # inpainting: the masked picture's posterior mean (unscaled)

    @property
    def device(self) -> torch.device:
        """Where the model's modules are."""
        return self.pipe.unet.device

    def conditions(self, batch: list[ImageSpec], step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's prompt embeddings and the negative prompt's at 1-based `step`."""
        cond = torch.cat([conditioning(sp, self.embeds, step, self.steps) for sp in batch])
        negative = self.embeds[parse_prompt(self.settings.negative_prompt).runs_at(step, self.steps)]
        return cond, negative.expand(len(batch), -1, -1)

    def prediction_morph(self, batch: list[ImageSpec], step: int) -> PredictionMorph:
        """The batch's morph frames that blend predictions, with their other prompt's embeddings at `step`."""
        rows = [k for k, sp in enumerate(batch) if blends_predictions(sp)]
        other = [morph_conditioning(batch[k], self.embeds, step, self.steps) for k in rows]
        return PredictionMorph(rows, torch.cat(other) if other else torch.empty(0),
                               torch.tensor([batch[k].morph_t for k in rows]))


def _unet_output_to_fp32(module, args, output):
    # Under autocast the UNet answers in bf16/fp16; the scheduler's update of the latents stays fp32.
    if isinstance(output, tuple):
        return (output[0].float(), *output[1:])
    output.sample = output.sample.float()
    return output


def paste_back(images: torch.Tensor, job: Job) -> torch.Tensor:
    """Inpainting: the new pixels go back into the init image inside the blurred mask only; else the images."""
    return images if job.plan is None else job.plan.compose(images, job.init.pixels)


def clean_latents(job: Job, source: NoiseSource, shape: tuple) -> torch.Tensor | None:
    """Image to image's start (scaled): the init image's latent drawn from its posterior with each image's own
    generators; inpainting's masked content then fills the mask. None for text to image."""
    if job.posterior is None:
        return None
    mean, std = job.posterior
    clean = (mean + std * source.randn(shape)) * job.pipe.vae.config.scaling_factor
    content = job.settings.masked_content
    if job.plan is not None and content in ("latent-noise", "latent-nothing"):
        inside = F.interpolate(job.plan.mask[None], size=shape[2:], mode="area")
        start = source.randn(shape) if content == "latent-noise" else torch.zeros(shape)
        clean = clean * (1 - inside) + start * inside
    return clean


def mode_pipeline(job: Job, scheduler, noise: torch.Tensor, clean: torch.Tensor | None):
    """The stock pipeline of the job's mode over the model's modules, and its starting arguments."""
    s, device = job.settings, job.device
    if clean is None:
        return (pipeline_for(job.pipe.components, scheduler),
                {"latents": noise.to(device), "height": s.height, "width": s.width})
    if job.plan is None:
        return (seeded_pipeline(SeededImg2Img, job.pipe.components, scheduler, noise, clean),
                {"image": clean.to(device), "strength": s.strength})
    # inpainting: diffusers keeps the known latents (re-noised each step) outside the mask
    masked = job.masked_latents * job.pipe.vae.config.scaling_factor
    return (seeded_pipeline(SeededInpaint, job.pipe.components, scheduler, noise, clean),
            {"image": (job.plan.picture[None] / 2 + 0.5).to(device), "mask_image": job.plan.mask[None],
             "masked_image_latents": masked.to(device), "strength": s.strength, "height": s.height,
             "width": s.width})


def denoise_batch(job: Job, batch: list[ImageSpec], done: int) -> torch.Tensor:
    """The batch's images in [0, 1] (N, 3, H, W); `done` images' steps came before it (for progress)."""
    s, device = job.settings, job.device
    # 3. per-image conditioning: a prompt's embedding, or a blend of two for morph frames, plus any mix
    cond, uncond = job.conditions(batch, 1)
    morph = job.prediction_morph(batch, 1)
    # 4. starting noise from each image's own CPU generators; image to image then draws the init image's
    # latent from the VAE posterior with the same generators
    source = NoiseSource([SeedBlend(sp.seed, sp.variation_seed, sp.variation_strength) for sp in batch])
    factor = int(job.pipe.vae_scale_factor)
    shape = (len(batch), job.pipe.vae.config.latent_channels, s.height // factor, s.width // factor)
    noise = source.randn(shape)
    clean = clean_latents(job, source, shape)
    if clean is not None and denoising_steps(s) == 0:  # too little strength for one step: the init's latent
        return paste_back(decode_each(job.decoder, clean, job.precision), job)
    # 5. a fresh scheduler of the chosen kind over the model's noise schedule, in a pipeline of its own
    scheduler = make_scheduler(s.scheduler, job.scheduler_config)
    pipe, start = mode_pipeline(job, scheduler, noise, clean)

    def on_step(pipe, i, t, kwargs):
        if job.progress is not None:
            job.progress(done + (i + 1) * len(batch), job.total)
        iterations = pipe.num_timesteps
        if job.changing and i + 1 < iterations:  # prompt editing / alternation: the next iteration's texts
            step = prompt_step(i + 1, iterations, job.steps)
            if step != prompt_step(i, iterations, job.steps):
                c, u = job.conditions(batch, step)
                c = torch.cat([u, c]) if pipe.do_classifier_free_guidance else c
                kwargs["prompt_embeds"] = c.to(kwargs["prompt_embeds"])
                morph.other = job.prediction_morph(batch, step).other
        return kwargs

    # 6. denoise through the stock pipeline
    hook = pipe.unet.register_forward_hook(_unet_output_to_fp32)
    try:
        with scheduler_noise(scheduler, source), autocast(job.precision, device), \
                morph.attach(pipe.unet, len(batch)):
            latents = pipe(
                prompt_embeds=cond.to(device), negative_prompt_embeds=uncond.to(device),
                num_inference_steps=s.steps, guidance_scale=s.guidance_scale, eta=s.eta, output_type="latent",
                callback_on_step_end=on_step,
                callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"] if job.changing else ["latents"],
                **start,
            ).images
    finally:
        hook.remove()
    # 7. decode one image at a time
    return paste_back(decode_each(job.decoder, latents, job.precision), job)
