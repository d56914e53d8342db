"""What a generation asks for (Settings, ImageSpec), its defaults and checks: plain Python, no torch.

Scripts build and check these before they import diffusers, so a mistake is answered at once.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from ldm.errors import LdmError
from ldm.folders import folder_geometry, folder_guidance, folder_student_steps, refuse_pickle
from ldm.sampling.limits import check
from ldm.sampling.parameters import INPAINT_AREA_LABELS, parse_parameters
from ldm.sampling.schedulers import check_scheduler, scheduler_from_label

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "weights" / "emoji64"  # the shipped model
DEFAULT_STUDENT = DEFAULT_MODEL.with_name("emoji64-lcm")  # its few-step student (Latent Consistency Distillation)
# Chosen by measurement on the default model (see README "Sampling defaults").
DEFAULT_SCHEDULER = "euler-a"
DEFAULT_STEPS = 14
# A few-step student (a UNet with a guidance embedding, from Latent Consistency Distillation) samples with
# LCMScheduler; its folder may name its own step count (distill.default_steps in ldm_config.yaml).
STUDENT_SCHEDULER = "lcm"
STUDENT_STEPS = 4
MASKED_CONTENT = ("original", "fill", "latent-noise", "latent-nothing")  # what a masked area starts as (A1111's)
INPAINT_AREAS = ("whole", "masked")  # inpaint the whole picture, or only a box around the mask (A1111's "Only masked")
DEFAULT_STRENGTH = 0.75  # image to image's denoising strength when none is given (AUTOMATIC1111's)
MORPH_MODES = ("slerp", "lerp")
PIPELINE_MULTIPLE = 8  # diffusers' StableDiffusionPipeline.check_inputs refuses other sizes, whatever the VAE
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Settings:
    """Everything about a generation that is shared by all its images (None: the model's default)."""

    steps: int | None = None
    guidance_scale: float | None = None
    scheduler: str | None = None
    width: int | None = None
    height: int | None = None
    eta: float = 0.0
    negative_prompt: str = ""
    lora: str | None = None  # a LoRA file in diffusers' format (pytorch_lora_weights.safetensors)
    lora_scale: float = 1.0
    strength: float | None = None  # image-to-image denoising strength (None: text to image)
    # inpainting (with a mask): blur of the mask's edge in pixels, what the masked area starts as, and whether
    # the model sees the whole picture or a box around the mask grown by `inpaint_padding` pixels
    mask_blur: int = 4
    masked_content: str = "original"
    inpaint_area: str = "whole"
    inpaint_padding: int = 32


@dataclass(frozen=True)
class ImageSpec:
    """What decides one image's pixels besides the Settings: prompt (or a morph of two) and noise."""

    prompt: str
    seed: int
    variation_seed: int | None = None
    variation_strength: float = 0.0
    morph_to: str | None = None
    morph_t: float = 0.0
    morph_mode: str = "slerp"
    # (prompt, weight) pairs whose embeddings are added to the conditioning: a concept direction from
    # prompt a to prompt b at strength s is ((b, s), (a, -s)); a blend of captions is one term per caption
    mix: tuple[tuple[str, float], ...] = ()


def concept_mix(from_prompt: str, to_prompt: str, strength: float) -> tuple[tuple[str, float], ...]:
    """The mix that moves a prompt's embedding `strength` times the way from one prompt to another."""
    return () if strength == 0 else ((to_prompt, strength), (from_prompt, -strength))


def check_spec(spec: ImageSpec) -> None:
    """Raise a one-line error for an out-of-range seed, variation strength, morph position or mode."""
    check("variation_strength", spec.variation_strength)
    check("morph_t", spec.morph_t)
    if spec.morph_mode not in MORPH_MODES:
        raise LdmError(f"unknown interpolation {spec.morph_mode!r}: choose slerp or lerp")
    check("seed", spec.seed)
    for term in spec.mix:
        if not (isinstance(term, tuple) and len(term) == 2 and isinstance(term[0], str)):
            raise LdmError(f"a prompt mix term must be (prompt, weight), got {term!r}")
        check("mix_weight", term[1])


def size_step(factor: int) -> int:
    """The multiple every width and height must be for a VAE that downsamples by `factor`: the one size rule."""
    return math.lcm(factor, PIPELINE_MULTIPLE)


@dataclass(frozen=True)
class ModelDefaults:
    """What a model samples with when a request does not say."""

    size: int  # pixels, each side
    guidance: float
    scheduler: str = DEFAULT_SCHEDULER
    steps: int = DEFAULT_STEPS


def student_defaults(defaults: ModelDefaults, steps: int | None) -> ModelDefaults:
    """A model's defaults once it is known to be a few-step student (steps: its folder's, when it names one)."""
    return replace(defaults, scheduler=STUDENT_SCHEDULER, steps=steps or STUDENT_STEPS)


def folder_defaults(folder: Path, guidance: float | None = None) -> tuple[int, ModelDefaults]:
    """(VAE factor, sampling defaults) of a pipeline folder, read from its files without loading it."""
    factor, size = folder_geometry(folder)
    defaults = ModelDefaults(size, folder_guidance(folder) if guidance is None else guidance)
    steps = folder_student_steps(folder)
    return factor, defaults if steps is None else student_defaults(defaults, steps)


def resolve_settings(settings: Settings, factor: int, defaults: ModelDefaults) -> Settings:
    """Fill in a model's defaults (size, guidance, sampler) and check every value, raising one-line errors."""
    s = replace(
        settings,
        scheduler=defaults.scheduler if settings.scheduler is None else settings.scheduler,
        steps=defaults.steps if settings.steps is None else settings.steps,
        guidance_scale=defaults.guidance if settings.guidance_scale is None else settings.guidance_scale,
        width=defaults.size if settings.width is None else settings.width,
        height=defaults.size if settings.height is None else settings.height,
    )
    check_scheduler(s.scheduler)
    s = replace(s, steps=check("steps", s.steps), guidance_scale=check("guidance", s.guidance_scale),
                eta=check("eta", s.eta), strength=None if s.strength is None else check("strength", s.strength),
                mask_blur=check("mask_blur", s.mask_blur), inpaint_padding=check("inpaint_padding", s.inpaint_padding))
    for value, choices, what in ((s.masked_content, MASKED_CONTENT, "masked content"),
                                 (s.inpaint_area, INPAINT_AREAS, "inpaint area")):
        if value not in choices:
            raise LdmError(f"unknown {what} {value!r}: choose {', '.join(choices)}")
    if s.lora is not None:
        refuse_pickle(s.lora)
        if not Path(s.lora).is_file():
            raise LdmError(f"LoRA file not found: {s.lora}")
    step = size_step(factor)
    for side, value in (("width", s.width), ("height", s.height)):
        if isinstance(value, bool) or not isinstance(value, int) or value < step or value % step:
            raise LdmError(f"{side} {value!r} is not a positive multiple of {step}, this model's size step")
    return s


def denoising_steps(s: Settings) -> int:
    """The sampling steps a request runs: all of them, or image to image's int(steps x strength) (diffusers'
    rule; 0 when the strength is too small for one step)."""
    return s.steps if s.strength is None else min(int(s.steps * s.strength), s.steps)


def image_specs(prompts: Sequence[str], num_images: int, seed: int, variation_seed: int | None = None,
                variation_strength: float = 0.0) -> list[ImageSpec]:
    """num_images per prompt; image k of the run (counting across prompts) gets seed + k."""
    check("images", num_images)
    if not prompts:
        raise LdmError("no prompt given")
    specs = []
    for prompt in prompts:
        for _ in range(num_images):
            k = len(specs)
            specs.append(ImageSpec(prompt, seed + k, None if variation_seed is None else variation_seed + k,
                                   variation_strength))
    return specs


def parse_mix(text: str | None) -> tuple[tuple[str, float], ...]:
    """The `Prompt mix` field back into (prompt, weight) pairs."""
    if not text:
        return ()
    try:
        return tuple((str(p), float(w)) for p, w in json.loads(text))
    except (ValueError, TypeError):
        raise LdmError(f"PNG parameters: Prompt mix {text!r} is not a list of [prompt, weight]") from None


def spec_from_parameters(text: str) -> tuple[ImageSpec, Settings, dict[str, str]]:
    """Parse a `parameters` chunk back into what re-creates the image (and the raw fields)."""
    prompt, negative, fields = parse_parameters(text)

    def number(key: str, kind=float, default=None):
        if key not in fields:
            if default is None:
                raise LdmError(f"PNG parameters lack {key!r}")
            return default
        try:
            return kind(fields[key])
        except ValueError:
            raise LdmError(f"PNG parameters: {key} {fields[key]!r} is not a number") from None

    size = fields.get("Size", "")
    try:
        width, height = (int(v) for v in size.split("x")) if size else (None, None)
    except ValueError:
        raise LdmError(f"PNG parameters: size {size!r} is not WIDTHxHEIGHT") from None
    lora, _, lora_scale = fields.get("LoRA", "").rpartition(":")
    try:
        lora_scale = float(lora_scale) if lora else 1.0
    except ValueError:
        raise LdmError(f"PNG parameters: LoRA {fields['LoRA']!r} is not NAME:SCALE") from None
    settings = Settings(
        steps=number("Steps", int), guidance_scale=number("CFG scale", float, 7.0),
        scheduler=scheduler_from_label(fields.get("Sampler", "Euler a")), width=width, height=height,
        eta=number("Eta", float, 0.0), negative_prompt=negative, lora=lora or None, lora_scale=lora_scale,
        strength=number("Denoising strength", float) if "Denoising strength" in fields else None,
        mask_blur=number("Mask blur", int, 4), masked_content=fields.get("Masked content", "original"),
        inpaint_area={v: k for k, v in INPAINT_AREA_LABELS.items()}.get(fields.get("Inpaint area"), "whole"),
        inpaint_padding=number("Masked area padding", int, 32),
    )
    spec = ImageSpec(
        prompt=prompt, seed=number("Seed", int),
        variation_seed=number("Variation seed", int) if "Variation seed" in fields else None,
        variation_strength=number("Variation seed strength", float, 0.0),
        morph_to=fields.get("Morph to"), morph_t=number("Morph t", float, 0.0),
        morph_mode=fields.get("Morph mode", "slerp"), mix=parse_mix(fields.get("Prompt mix")),
    )
    return spec, settings, fields
