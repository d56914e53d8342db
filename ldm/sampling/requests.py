"""What a generation asks for (Settings, ImageSpec), its defaults and checks: plain Python, no torch.

Scripts build and check these before they import diffusers, so a mistake is answered at once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, make_dataclass, replace
from dataclasses import field as dataclass_field
from pathlib import Path

from ldm.errors import LdmError
from ldm.folders import folder_geometry, folder_guidance, folder_student_steps, has_tiny_vae, refuse_pickle
from ldm.sampling.limits import check, check_bound
from ldm.sampling.schema import (
    DEFAULT_SCHEDULER,
    DEFAULT_STEPS,
    SETTINGS,
    SPEC,
    STUDENT_SCHEDULER,
    STUDENT_STEPS,
    Field,
    part,
)

DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "weights" / "emoji64"  # the shipped model
DEFAULT_STUDENT = DEFAULT_MODEL.with_name("emoji64-lcm")  # its few-step student (Latent Consistency Distillation)
PIPELINE_MULTIPLE = 8  # diffusers' StableDiffusionPipeline.check_inputs refuses other sizes, whatever the VAE
Progress = Callable[[int, int], None]


def request_class(name: str, doc: str, fields: tuple[Field, ...]) -> type:
    """A frozen dataclass with one attribute per field, in order, each with the schema's default."""
    return make_dataclass(name, [(f.name, f.kind, dataclass_field(default=f.default)) for f in fields],
                          frozen=True, namespace={"__doc__": doc, "__module__": __name__})


Settings = request_class("Settings", "Everything about a generation that is shared by all its images (None: the "
                         "model's default).", part(SETTINGS))
ImageSpec = request_class("ImageSpec", "What decides one image's pixels besides the Settings: prompt (or a morph of "
                          "two, or a mix) and noise.", part(SPEC))


def checked(request, fields: tuple[Field, ...]):
    """`request` with each field's value checked against its choices and range (whole numbers made int), or a
    one-line LdmError. An optional value left unset (None) is not checked."""
    changes = {}
    for f in fields:
        value = getattr(request, f.name)
        if value is None and f.default is None:
            continue
        if f.choices and value not in f.choices:
            raise LdmError(f"unknown {f.what_named} {value!r}: choose one of {', '.join(f.choices)}")
        if f.bound is not None and f.kind is tuple:  # (prompt, weight) terms: each weight in range
            for term in value:
                if not (isinstance(term, tuple) and len(term) == 2 and isinstance(term[0], str)):
                    raise LdmError(f"a prompt mix term must be (prompt, weight), got {term!r}")
                check_bound(f.bound, term[1])
        elif f.bound is not None:
            changes[f.name] = check_bound(f.bound, value)
    return replace(request, **changes)


def concept_mix(from_prompt: str, to_prompt: str, strength: float) -> tuple[tuple[str, float], ...]:
    """The mix that moves a prompt's embedding `strength` times the way from one prompt to another."""
    return () if strength == 0 else ((to_prompt, strength), (from_prompt, -strength))


def check_spec(spec: ImageSpec) -> None:
    """Raise a one-line error for an out-of-range seed, variation strength, morph position, mode or mix."""
    checked(spec, part(SPEC))


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
    tiny_decoder: bool = False  # the folder ships a tiny VAE (vae_tiny/)
    decoder: str = "full"


def student_defaults(defaults: ModelDefaults, steps: int | None) -> ModelDefaults:
    """A model's defaults once it is known to be a few-step student (steps: its folder's, when it names one): its
    scheduler and steps, and its tiny decoder when it ships one (decoding is a third of its image's time)."""
    return replace(defaults, scheduler=STUDENT_SCHEDULER, steps=steps or STUDENT_STEPS,
                   decoder="tiny" if defaults.tiny_decoder else "full")


def folder_defaults(folder: Path, guidance: float | None = None) -> tuple[int, ModelDefaults]:
    """(VAE factor, sampling defaults) of a pipeline folder, read from its files without loading it."""
    factor, size = folder_geometry(folder)
    defaults = ModelDefaults(size, folder_guidance(folder) if guidance is None else guidance,
                             tiny_decoder=has_tiny_vae(folder))
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
        decoder=defaults.decoder if settings.decoder is None else settings.decoder,
    )
    s = checked(s, part(SETTINGS))
    if s.decoder == "tiny" and not defaults.tiny_decoder:
        raise LdmError("this model ships no tiny decoder (vae_tiny/): use the full one, or teach one with "
                       "scripts/train_tiny_vae.py")
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


def seeded_specs(prompts: Sequence[str], seed: int, variation_seed: int | None = None,
                 variation_strength: float = 0.0) -> list[ImageSpec]:
    """One image per prompt; image k gets seed + k (and variation seed + k): the one rule for a run's seeds."""
    return [ImageSpec(prompt, seed + k, None if variation_seed is None else variation_seed + k, variation_strength)
            for k, prompt in enumerate(prompts)]


def image_specs(prompts: Sequence[str], num_images: int, seed: int, variation_seed: int | None = None,
                variation_strength: float = 0.0) -> list[ImageSpec]:
    """num_images per prompt; image k of the run (counting across prompts) gets seed + k."""
    check("images", num_images)
    if not prompts:
        raise LdmError("no prompt given")
    return seeded_specs([p for p in prompts for _ in range(num_images)], seed, variation_seed, variation_strength)
