"""A loaded Stable Diffusion pipeline and how to sample from it: the orchestrator of one generate() call.

diffusers' StableDiffusionPipeline runs the denoising loop; SamplingModel composes what goes in, as a
diffusers pipeline composes its components: the model's defaults and request checks (here), prompt
embeddings (embeddings.py), LoRA adapters (loras.py), starting latents from per-image CPU generators and the
mode's stock pipeline (denoise.py), the VAE (vae.py) and the PNG text (parameters.py). Loading and writing
pipeline folders is ldm/pipeline_folder.py's; export for stock diffusers is export.py's.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import torch
from diffusers import StableDiffusionPipeline

from ldm.errors import LdmError
from ldm.folders import STOCK_GUIDANCE, folder_guidance, folder_student_steps, is_student
from ldm.pipeline_folder import load_pipeline, load_tiny_vae
from ldm.precision import resolve_precision
from ldm.sampling.denoise import Job, denoise_batch
from ldm.sampling.embeddings import PromptEmbeddings
from ldm.sampling.init_image import InitImage
from ldm.sampling.inpaint import Mask, check_mask, plan_inpaint
from ldm.sampling.loras import LoraAdapters
from ldm.sampling.parameters import ModelStamp, image_parameters, unet_hash
from ldm.sampling.prompt_syntax import parse_prompt
from ldm.sampling.requests import (
    ImageSpec,
    ModelDefaults,
    Progress,
    Settings,
    check_spec,
    denoising_steps,
    resolve_settings,
    size_step,
    student_defaults,
)
from ldm.sampling.schema import DEFAULT_STRENGTH
from ldm.sampling.vae import posterior


class SamplingModel:
    """A loaded pipeline and how to sample from it: its defaults, its LoRAs, its precision; generate."""

    def __init__(self, pipe: StableDiffusionPipeline, name: str = "model", folder: Path | None = None,
                 guidance_scale: float = STOCK_GUIDANCE, precision: str = "auto", tiny_vae=None):
        self.pipe = pipe
        self.tiny_vae = tiny_vae  # an AutoencoderTiny copying pipe.vae (the folder's vae_tiny/), or None
        self.name = name
        self.folder = folder
        self.default_guidance = guidance_scale
        self.device = pipe.unet.device
        self.precision = resolve_precision(precision, self.device)
        self.base_scheduler_config = dict(pipe.scheduler.config)
        self.loras = LoraAdapters(pipe)
        self.embeddings = PromptEmbeddings(pipe, self.device)
        self._hash: str | None = None
        # One generation at a time: an active LoRA is state of the shared UNet and text encoder.
        self._lock = threading.Lock()
        pipe.set_progress_bar_config(disable=True)
        for vae in (pipe.vae, tiny_vae):
            if vae is not None:
                vae.to(memory_format=torch.channels_last)  # its 64x64 convolutions run ~15% faster on CPU

    @property
    def factor(self) -> int:
        """Pixels per latent cell: width and height must be multiples of it."""
        return int(self.pipe.vae_scale_factor)

    @property
    def size_step(self) -> int:
        """Width and height must be multiples of this (the VAE's factor and the pipeline's 8)."""
        return size_step(self.factor)

    @property
    def default_size(self) -> int:
        """The resolution the UNet was trained at, in pixels."""
        return int(self.pipe.unet.config.sample_size) * self.factor

    @property
    def is_student(self) -> bool:
        """A few-step student: its UNet takes a guidance embedding, and it samples with LCMScheduler."""
        return is_student(self.pipe.unet.config)

    @functools.cached_property
    def defaults(self) -> ModelDefaults:
        """What a request that does not say gets: size, guidance, scheduler and steps (read once: every
        resolve asks, and a student's step count lives in its folder's files)."""
        defaults = ModelDefaults(self.default_size, self.default_guidance, tiny_decoder=self.tiny_vae is not None)
        if not self.is_student:
            return defaults
        return student_defaults(defaults, folder_student_steps(self.folder) if self.folder else None)

    def decoding_vae(self, settings: Settings):
        """What decodes a request's latents: the tiny VAE where its resolved decoder is tiny, else the VAE."""
        return self.tiny_vae if settings.decoder == "tiny" else self.vae

    @property
    def vae(self):
        """The pipeline's autoencoder (for the explorer's encode/decode of dataset images)."""
        return self.pipe.vae

    @property
    def model_hash(self) -> str:
        """Short sha256 of the UNet weights, as AUTOMATIC1111 writes 'Model hash'."""
        if self._hash is None:
            self._hash = unet_hash(self.folder)
        return self._hash

    @property
    def inpainting_unet(self) -> bool:
        """A UNet that reads the mask and the masked image besides the latents (diffusers' 9-channel kind)."""
        return self.pipe.unet.config.in_channels != self.pipe.vae.config.latent_channels

    def resolve(self, settings: Settings) -> Settings:
        """Fill in the model's defaults and check every value, raising one-line errors."""
        return resolve_settings(settings, self.factor, self.defaults)

    def request(self, settings: Settings, init: InitImage | None = None, mask: Mask | None = None) -> Settings:
        """resolve(), plus image-to-image's strength (the default with an init image, an error without one)
        and the checks of an inpainting mask."""
        s = self.resolve(settings)
        if self.inpainting_unet and mask is None:
            raise LdmError("this is an inpainting model (its UNet reads a mask): give an init image and a mask")
        if init is None:
            if s.strength is not None or mask is not None:
                raise LdmError(f"{'a mask' if mask is not None else 'a denoising strength'} needs an init image")
            return s
        if init.size != (s.width, s.height):
            raise LdmError(f"the init image is {init.size[0]}x{init.size[1]} but the request is {s.width}x{s.height}")
        if mask is not None:
            if mask.weights.shape[1:] != init.pixels.shape[1:]:
                raise LdmError(f"the mask is {mask.weights.shape[2]}x{mask.weights.shape[1]} but the init image is "
                               f"{init.size[0]}x{init.size[1]}")
            check_mask(mask)
        return s if s.strength is not None else replace(s, strength=DEFAULT_STRENGTH)

    def morph_mode(self, mode: str) -> str:
        """A morph mode made concrete. 'auto' is predictions for a few-step student, whose morphs then change
        gradually, and slerp for a full model: its guided solves flicker between the two prompts when their
        predictions blend, and one clean switch looks better than a flicker."""
        if mode != "auto":
            return mode
        return "predictions" if self.is_student else "slerp"

    def concrete(self, spec: ImageSpec) -> ImageSpec:
        """The spec with its morph mode made concrete (what is rendered, and written to the PNG)."""
        return spec if spec.morph_mode != "auto" else replace(spec, morph_mode=self.morph_mode("auto"))

    def parameters_text(self, spec: ImageSpec, settings: Settings, init: InitImage | None = None,
                        mask: Mask | None = None) -> str:
        """The AUTOMATIC1111-style `parameters` text that re-creates this image."""
        spec = self.concrete(spec)
        s = self.request(settings, init, mask)
        stamp = ModelStamp(self.name, self.model_hash, self.precision)
        return image_parameters(spec, s, stamp, None if s.lora is None else self.loras.hash(s.lora),
                                None if init is None else init.digest, None if mask is None else mask.digest)

    def exclusive(self):
        """A block no generation runs during: the weights stay as they are (no LoRA is switched on or off)."""
        return self._lock

    @torch.no_grad()
    def generate(self, specs: Sequence[ImageSpec], settings: Settings = Settings(), batch_size: int = 8,
                 progress: Progress | None = None,
                 on_batch: Callable[[int, torch.Tensor], None] | None = None,
                 init: InitImage | None = None, mask: Mask | None = None) -> torch.Tensor:
        """Images in [0, 1] (N, 3, H, W): image k depends only on specs[k] and the settings, not the batch.

        With `init`, image to image (SDEdit): the init image's latents noised to the strength's step, then
        denoised for int(steps x strength) steps; strength 1 is text to image from the same seed. With `mask`
        too, inpainting: only the mask's white area is repainted (see inpaint.py).
        on_batch(start, images) gets each batch as soon as it is done (images start, start + 1, ...), so a
        caller can keep what is finished when a long run is interrupted.
        """
        # 1. check inputs
        s = self.request(settings, init, mask)
        specs = [self.concrete(spec) for spec in specs]
        for spec in specs:
            check_spec(spec)
        if batch_size < 1:
            raise LdmError(f"batch size must be at least 1, got {batch_size}")
        # 2. embed every distinct prompt once, in fp32 so that morphs blend exact endpoint embeddings; prompt
        # editing counts the steps that run
        prompts = [p for sp in specs for p in (sp.prompt, sp.morph_to, *(m for m, _ in sp.mix)) if p is not None]
        changing = any(parse_prompt(p).changes for p in (s.negative_prompt, *prompts))  # parses: syntax errors now
        steps = denoising_steps(s)
        images = []
        with self._lock:
            self.loras.use(s.lora, s.lora_scale)  # before embedding: a LoRA may cover the text encoder
            plan = None if mask is None else plan_inpaint(init.pixels, mask, s.mask_blur, s.masked_content,
                                                           s.inpaint_area, s.inpaint_padding)
            job = Job(
                pipe=self.pipe, decoder=self.decoding_vae(s),
                scheduler_config=self.base_scheduler_config, precision=self.precision, settings=s,
                embeds=self.embeddings([s.negative_prompt, *prompts], (s.lora, s.lora_scale), max(steps, 1)),
                steps=max(steps, 1), changing=changing, total=len(specs) * steps, progress=progress,
                posterior=None if init is None or (s.strength == 1 and plan is None) else
                posterior(self.vae, init.pixels if plan is None else plan.picture, self.precision),
                init=init, plan=plan,
                masked_latents=None if plan is None else posterior(self.vae, plan.masked_picture, self.precision)[0])
            # 3.-7. each batch: conditioning, starting draws, the mode's pipeline, denoise, decode (denoise.py)
            for start in range(0, len(specs), batch_size):
                images.append(denoise_batch(job, specs[start:start + batch_size], start * steps))
                if on_batch is not None:
                    on_batch(start, images[-1])
        return torch.cat(images) if images else torch.empty(0, 3, s.height, s.width)


def load_sampling_model(folder: str | Path, device: str | torch.device | None = None,
                        precision: str = "auto", guidance_scale: float | None = None) -> SamplingModel:
    """Load a pipeline folder for sampling (see load_pipeline); guidance_scale None: the folder's default."""
    folder = Path(folder).expanduser()
    pipe = load_pipeline(folder, device)
    if guidance_scale is None:
        guidance_scale = folder_guidance(folder)
    return SamplingModel(pipe, name=folder.resolve().name, folder=folder, guidance_scale=guidance_scale,
                         precision=precision, tiny_vae=load_tiny_vae(folder, pipe.unet.device))
