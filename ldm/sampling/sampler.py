"""Load any diffusers Stable Diffusion folder and generate reproducible images through its pipeline.

diffusers' StableDiffusionPipeline runs the denoising loop; this module decides what goes in: prompt
embeddings (blended for morphs), starting latents from per-image CPU generators (blended for seed walks
and variation seeds), a fresh scheduler of the chosen kind, and the precision.
"""

from __future__ import annotations

import functools
import os
import shutil
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, StableDiffusionPipeline
from diffusers.image_processor import VaeImageProcessor

from ldm.errors import LdmError
from ldm.folders import STOCK_GUIDANCE, check_model_folder, folder_guidance, folder_student_steps, is_student
from ldm.io import one_line
from ldm.models import REFERENCE_FILE, load_pipeline_text_encoder
from ldm.precision import autocast, resolve_precision
from ldm.sampling.emphasis import apply_weights, token_weights
from ldm.sampling.init_image import InitImage
from ldm.sampling.inpaint import InpaintPlan, Mask, check_mask, plan_inpaint
from ldm.sampling.interpolate import blend
from ldm.sampling.loras import LoraAdapters
from ldm.sampling.noise import NoiseSource, SeedBlend, scheduler_noise
from ldm.sampling.parameters import ModelStamp, image_parameters, unet_hash
from ldm.sampling.pipelines import SeededImg2Img, SeededInpaint
from ldm.sampling.prompt_syntax import Runs, parse_prompt, plain_text
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
from ldm.sampling.schedulers import make_scheduler
from ldm.sampling.schema import DEFAULT_STRENGTH

EMBEDDING_CACHE = 256  # prompts whose embeddings a SamplingModel keeps


def assemble_pipeline(vae, unet, tokenizer, text_encoder, scheduler) -> StableDiffusionPipeline:
    """A stock StableDiffusionPipeline over already-loaded components (no safety checker)."""
    return StableDiffusionPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, scheduler=scheduler,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False,
    )


def sampling_scheduler(train_scheduler) -> DDIMScheduler:
    """A DDIM sampler over the training schedule (steps_offset=1 as in Stable Diffusion)."""
    return DDIMScheduler.from_config(train_scheduler.config, steps_offset=1)


def conditioning(spec: ImageSpec, embeds: dict[Runs, torch.Tensor], step: int = 1, steps: int = 1) -> torch.Tensor:
    """One image's prompt embedding at 1-based denoising `step` of `steps` (prompt editing and alternation
    change the text between steps): its prompt or morph blend, plus its mix terms."""
    def embed(prompt: str) -> torch.Tensor:
        return embeds[parse_prompt(prompt).runs_at(step, steps)]

    cond = embed(spec.prompt)
    if spec.morph_to is not None:
        cond = blend(cond, embed(spec.morph_to), spec.morph_t, spec.morph_mode)
    for prompt, weight in spec.mix:
        cond = cond + weight * embed(prompt)
    return cond


def prompt_step(i: int, iterations: int, steps: int) -> int:
    """The 1-based sampling step that denoising-loop iteration i belongs to (second-order samplers run
    more iterations than steps)."""
    return min(steps, i * steps // max(iterations, 1) + 1)


def default_device() -> torch.device:
    """The first GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _unet_output_to_fp32(module, args, output):
    # Under autocast the UNet answers in bf16/fp16; the scheduler's update of the latents stays fp32.
    if isinstance(output, tuple):
        return (output[0].float(), *output[1:])
    output.sample = output.sample.float()
    return output


@dataclass
class _Job:
    """One generate() call's shared state: resolved settings, embeddings, the steps that run, progress."""

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


class SamplingModel:
    """A loaded pipeline and how to sample from it: its defaults, its LoRAs, its precision; generate and decode."""

    def __init__(self, pipe: StableDiffusionPipeline, name: str = "model", folder: Path | None = None,
                 guidance_scale: float = STOCK_GUIDANCE, precision: str = "auto"):
        self.pipe = pipe
        self.name = name
        self.folder = folder
        self.default_guidance = guidance_scale
        self.device = pipe.unet.device
        self.precision = resolve_precision(precision, self.device)
        self.base_scheduler_config = dict(pipe.scheduler.config)
        self.loras = LoraAdapters(pipe)
        self._hash: str | None = None
        # One generation at a time: an active LoRA is state of the shared UNet and text encoder.
        self._lock = threading.Lock()
        self._embeddings: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        pipe.set_progress_bar_config(disable=True)
        pipe.vae.to(memory_format=torch.channels_last)  # its 64x64 convolutions run ~15% faster on CPU

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
        defaults = ModelDefaults(self.default_size, self.default_guidance)
        if not self.is_student:
            return defaults
        return student_defaults(defaults, folder_student_steps(self.folder) if self.folder else None)

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

    def resolve(self, settings: Settings) -> Settings:
        """Fill in the model's defaults and check every value, raising one-line errors."""
        return resolve_settings(settings, self.factor, self.defaults)

    def parameters_text(self, spec: ImageSpec, settings: Settings, init: InitImage | None = None,
                        mask: Mask | None = None) -> str:
        """The AUTOMATIC1111-style `parameters` text that re-creates this image."""
        s = self.request(settings, init, mask)
        stamp = ModelStamp(self.name, self.model_hash, self.precision)
        return image_parameters(spec, s, stamp, None if s.lora is None else self.loras.hash(s.lora),
                                None if init is None else init.digest, None if mask is None else mask.digest)

    def exclusive(self):
        """A block no generation runs during: the weights stay as they are (no LoRA is switched on or off)."""
        return self._lock

    def _embed(self, prompts: Sequence[str], lora: tuple, steps: int) -> dict[Runs, torch.Tensor]:
        """Embeddings of every text the prompts take over `steps` steps, keyed by their runs (text, weight)."""
        # Recent texts' embeddings are kept (under the lock, keyed by the active LoRA): live controls ask
        # for the same few prompts many times a second, and the encoder costs as much as a student's step.
        texts = dict.fromkeys(runs for prompt in dict.fromkeys(prompts)
                              for _, runs in parse_prompt(prompt).schedule(steps))
        out = {}
        for runs in texts:
            key = (runs, *lora)
            if key not in self._embeddings:
                embeds, _ = self.pipe.encode_prompt(plain_text(runs), self.device, 1, False)
                weights = token_weights(self.pipe.tokenizer, runs) if any(w != 1 for _, w in runs) else None
                embeds = embeds.float()
                self._embeddings[key] = embeds if weights is None else apply_weights(embeds, weights)
                while len(self._embeddings) > EMBEDDING_CACHE:
                    self._embeddings.popitem(last=False)
            self._embeddings.move_to_end(key)
            out[runs] = self._embeddings[key]
        return out

    def _pipeline(self, scheduler) -> StableDiffusionPipeline:
        # The loaded modules under a scheduler of this call's own: concurrent calls never share its state.
        pipe = StableDiffusionPipeline(**{**self.pipe.components, "scheduler": scheduler},
                                       requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

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

    @property
    def inpainting_unet(self) -> bool:
        """A UNet that reads the mask and the masked image besides the latents (diffusers' 9-channel kind)."""
        return self.pipe.unet.config.in_channels != self.pipe.vae.config.latent_channels

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
        specs = list(specs)
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
            job = _Job(s, self._embed([s.negative_prompt, *prompts], (s.lora, s.lora_scale), max(steps, 1)),
                       max(steps, 1), changing, len(specs) * steps, progress,
                       None if init is None or (s.strength == 1 and plan is None) else
                       self._posterior(init.pixels if plan is None else plan.picture), init, plan,
                       None if plan is None else self._posterior(plan.masked_picture)[0])
            for start in range(0, len(specs), batch_size):
                batch = specs[start:start + batch_size]
                images.append(self._generate_batch(batch, job, start * steps))
                if on_batch is not None:
                    on_batch(start, images[-1])
        return torch.cat(images) if images else torch.empty(0, 3, s.height, s.width)

    def _posterior(self, picture: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # the VAE posterior of a picture (3, H, W), (1, C, h, w) mean and std; each image draws its own sample
        pixels = picture[None].to(self.device, memory_format=torch.channels_last)
        with autocast(self.precision, self.device):
            dist = self.pipe.vae.encode(pixels).latent_dist
        return dist.mean.float().cpu(), dist.std.float().cpu()

    def _generate_batch(self, batch: list[ImageSpec], job: _Job, done: int) -> torch.Tensor:
        s = job.settings

        # 3. per-image conditioning: a prompt's embedding, or a blend of two for morph frames, plus any mix
        def conditions(step: int) -> tuple[torch.Tensor, torch.Tensor]:
            cond = torch.cat([conditioning(sp, job.embeds, step, job.steps) for sp in batch])
            negative = job.embeds[parse_prompt(s.negative_prompt).runs_at(step, job.steps)]
            return cond, negative.expand(len(batch), -1, -1)

        cond, uncond = conditions(1)
        # 4. starting noise from each image's own CPU generators; image to image then draws the init image's
        # latent from the VAE posterior with the same generators
        source = NoiseSource([SeedBlend(sp.seed, sp.variation_seed, sp.variation_strength) for sp in batch])
        channels = self.pipe.vae.config.latent_channels
        shape = (len(batch), channels, s.height // self.factor, s.width // self.factor)
        latents = source.randn(shape)
        clean = None
        if job.posterior is not None:
            mean, std = job.posterior
            clean = (mean + std * source.randn(shape)) * self.pipe.vae.config.scaling_factor
            if job.plan is not None and s.masked_content in ("latent-noise", "latent-nothing"):
                inside = F.interpolate(job.plan.mask[None], size=shape[2:], mode="area")
                start = source.randn(shape) if s.masked_content == "latent-noise" else torch.zeros(shape)
                clean = clean * (1 - inside) + start * inside
            if denoising_steps(s) == 0:  # too little strength for one step: the init image's latent as it is
                return self._finish(torch.cat([self.decode(latent) for latent in clean.split(1)]), job)
        # 5. a fresh scheduler of the chosen kind over the model's noise schedule, in a pipeline of its own
        scheduler = make_scheduler(s.scheduler, self.base_scheduler_config)
        if clean is None:
            pipe = self._pipeline(scheduler)
            start = {"latents": latents.to(self.device), "height": s.height, "width": s.width}
        elif job.plan is None:
            pipe = self._seeded(SeededImg2Img, scheduler, latents, clean)
            start = {"image": clean.to(self.device), "strength": s.strength}
        else:  # inpainting: diffusers keeps the known latents (re-noised each step) outside the mask
            pipe = self._seeded(SeededInpaint, scheduler, latents, clean)
            start = {"image": (job.plan.picture[None] / 2 + 0.5).to(self.device), "mask_image": job.plan.mask[None],
                     "masked_image_latents": (job.masked_latents * self.pipe.vae.config.scaling_factor).to(self.device),
                     "strength": s.strength, "height": s.height, "width": s.width}

        def on_step(pipe, i, t, kwargs):
            if job.progress is not None:
                job.progress(done + (i + 1) * len(batch), job.total)
            iterations = pipe.num_timesteps
            if job.changing and i + 1 < iterations:  # prompt editing / alternation: the next iteration's texts
                step = prompt_step(i + 1, iterations, job.steps)
                if step != prompt_step(i, iterations, job.steps):
                    c, u = conditions(step)
                    c = torch.cat([u, c]) if pipe.do_classifier_free_guidance else c
                    kwargs["prompt_embeds"] = c.to(kwargs["prompt_embeds"])
            return kwargs

        # 6. denoise through the stock pipeline
        hook = pipe.unet.register_forward_hook(_unet_output_to_fp32)
        try:
            with scheduler_noise(scheduler, source), autocast(self.precision, self.device):
                latents = pipe(
                    prompt_embeds=cond.to(self.device), negative_prompt_embeds=uncond.to(self.device),
                    num_inference_steps=s.steps, guidance_scale=s.guidance_scale, eta=s.eta, output_type="latent",
                    callback_on_step_end=on_step,
                    callback_on_step_end_tensor_inputs=["latents", "prompt_embeds"] if job.changing else ["latents"],
                    **start,
                ).images
        finally:
            hook.remove()
        # 7. decode one image at a time: the VAE's convolutions give batch-size-dependent bits, and a seed
        # must mean the same pixels in a batch of one or sixteen
        return self._finish(torch.cat([self.decode(latent) for latent in latents.float().split(1)]), job)

    @staticmethod
    def _finish(images: torch.Tensor, job: _Job) -> torch.Tensor:
        # inpainting: the new pixels go back into the init image inside the blurred mask only
        return images if job.plan is None else job.plan.compose(images, job.init.pixels)

    def _seeded(self, kind: type, scheduler, noise: torch.Tensor, clean: torch.Tensor):
        pipe = kind(**{**self.pipe.components, "scheduler": scheduler}, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        pipe.image_processor = VaeImageProcessor(vae_scale_factor=pipe.vae_scale_factor,
                                                 vae_latent_channels=self.pipe.vae.config.latent_channels)
        pipe.start_noise, pipe.clean = noise, clean
        return pipe

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents (N, C, h, w) as the UNet sees them (scaled) -> images in [0, 1] (N, 3, H, W), in fp32.

        The decode runs in the model's precision: for a few-step student it is a quarter of an image's time
        in fp32, and bf16 moves its pixels by a few levels of 255 at most (50 dB PSNR against fp32)."""
        vae = self.pipe.vae
        latents = latents.to(self.device, torch.float32) / vae.config.scaling_factor
        with autocast(self.precision, self.device):
            image = vae.decode(latents.contiguous(memory_format=torch.channels_last), return_dict=False)[0]
        return (image.float().cpu() / 2 + 0.5).clamp(0, 1)


def load_pipeline(folder: str | Path, device: str | torch.device | None = None) -> StableDiffusionPipeline:
    """A StableDiffusionPipeline from an ldm or diffusers folder, offline, safetensors only."""
    folder = check_model_folder(folder)
    kwargs = {"safety_checker": None, "feature_extractor": None, "requires_safety_checker": False}
    if (folder / "text_encoder" / REFERENCE_FILE).is_file():  # ours: the encoder lives in an installed package
        kwargs["tokenizer"], kwargs["text_encoder"] = load_pipeline_text_encoder(folder)
    try:
        pipe = StableDiffusionPipeline.from_pretrained(folder, use_safetensors=True, local_files_only=True,
                                                       **kwargs)
    except Exception as exc:  # diffusers/transformers raise many types for malformed folders
        raise LdmError(f"cannot load pipeline from {folder}: {one_line(exc)}") from None
    return pipe.to(torch.device(device) if device else default_device())


def load_sampling_model(folder: str | Path, device: str | torch.device | None = None,
                        precision: str = "auto", guidance_scale: float | None = None) -> SamplingModel:
    """Load a pipeline folder for sampling (see load_pipeline); guidance_scale None: the folder's default."""
    folder = Path(folder).expanduser()
    pipe = load_pipeline(folder, device)
    if guidance_scale is None:
        guidance_scale = folder_guidance(folder)
    return SamplingModel(pipe, name=folder.resolve().name, folder=folder, guidance_scale=guidance_scale,
                         precision=precision)


def export_pipeline(folder: str | Path, out: str | Path, dtype: str = "fp32", lora: str | None = None,
                    lora_scale: float = 1.0, reference_encoder: bool = False) -> Path:
    """Write a self-contained copy (text encoder included, a LoRA fused in if given) for stock diffusers.

    With reference_encoder, a packaged encoder the source only references stays a reference: how the
    shipped model is kept small in git (it then needs ldm, or the package, to load).
    """
    dtypes = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
    if dtype not in dtypes:
        raise LdmError(f"unknown dtype {dtype!r}: choose one of {', '.join(dtypes)}")
    out = Path(out).expanduser()
    if out.exists() and any(out.iterdir()):
        raise LdmError(f"output folder {out} exists and is not empty")
    pipe = load_pipeline(folder, "cpu")
    if lora is not None:
        SamplingModel(pipe).resolve(Settings(lora=lora))  # checks the file
        LoraAdapters(pipe).use(lora, lora_scale)
        pipe.fuse_lora(lora_scale=1.0)  # the adapter weight already carries the scale
        pipe.unload_lora_weights()
    pipe = pipe.to(dtype=dtypes[dtype])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-export")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        pipe.save_pretrained(tmp, safe_serialization=True)
        reference = Path(folder) / "text_encoder" / REFERENCE_FILE
        if reference_encoder and reference.is_file():
            shutil.rmtree(tmp / "text_encoder")
            (tmp / "text_encoder").mkdir()
            shutil.copy2(reference, tmp / "text_encoder" / REFERENCE_FILE)
        config = Path(folder) / "ldm_config.yaml"
        if config.is_file():
            shutil.copy2(config, tmp / config.name)
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out
