"""A generation request described once: each value's type, default, range, PNG key, CLI flag and UI label.

Data only (no torch). Settings and ImageSpec (requests.py), the range checks (limits.py), the PNG text both
ways (parameters.py), sample.py's flags (ldm/cli.py) and the web UI's controls (app/widgets.py) are made from
FIELDS, so a new request value (a sampler option, say) is one line here, plus the code that uses it.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, dataclass

from ldm.sampling.schedulers import SCHEDULERS

REQUIRED = MISSING  # a default that says the value must be given (dataclasses' own marker)
SAME = "same"  # png_absent: a PNG without the key gives the field's default
SETTINGS, SPEC, STAMP = "settings", "spec", "stamp"  # where a field lives (see Field.part)

# Chosen by measurement on the default model (see README "Sampling defaults").
DEFAULT_SCHEDULER = "euler-a"
DEFAULT_STEPS = 14
# A few-step student (a UNet with a guidance embedding, from Latent Consistency Distillation) samples with
# LCMScheduler; its folder may name its own step count (distill.default_steps in ldm_config.yaml).
STUDENT_SCHEDULER = "lcm"
STUDENT_STEPS = 4
DEFAULT_STRENGTH = 0.75  # image to image's denoising strength when none is given (AUTOMATIC1111's)
MASKED_CONTENT = ("original", "fill", "latent-noise", "latent-nothing")  # what a masked area starts as (A1111's)
INPAINT_AREAS = ("whole", "masked")  # inpaint the whole picture, or only a box around the mask (A1111's "Only masked")
MORPH_MODES = ("auto", "predictions", "slerp", "lerp")
# The VAE decoder: the model's own, or the tiny one its folder may ship (vae_tiny/, ldm/train/tiny_vae.py)
DECODERS = ("full", "tiny")


@dataclass(frozen=True)
class Bound:
    """The range of one value."""

    what: str  # how messages name it
    low: float
    server_high: float  # the web UI's ceiling
    whole: bool = True
    low_open: bool = False  # the value must lie strictly above `low`
    local_high: float = math.inf
    server_only: bool = False  # checked on a server only: locally any value goes

    def describe(self, server: bool) -> str:
        """The accepted range in words, for messages."""
        if server:
            kind = "a whole number" if self.whole else "a number"
            return f"{kind} between {_show(self.low)} and {_show(self.server_high)}"
        if self.local_high < math.inf:
            return f"in [{_show(self.low)}, {_show(self.local_high)}]"
        if self.low_open:
            return f"above {_show(self.low)}"
        return f"at least {_show(self.low)}" if self.whole else f">= {_show(self.low)}"


def _show(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Field:
    """One value of a request and every name it goes by."""

    name: str  # its attribute on Settings or ImageSpec (a stamp: its keyword in image_parameters)
    kind: type  # int, float, str; tuple for a prompt mix
    default: object = None  # None: unset (steps, guidance, scheduler, size: the model's); REQUIRED: no default
    part: str = SETTINGS  # SETTINGS (shared by a run's images), SPEC (one image's) or STAMP (what made an image:
    #                       written into its PNG text, never asked for)
    bound: Bound | None = None  # its range (limits.py checks it; a prompt mix: each weight's)
    choices: tuple[str, ...] = ()
    labels: tuple[str, ...] = ()  # the PNG text's words for the choices, where AUTOMATIC1111's differ from ours
    what: str = ""  # how messages about its choices name it (default: the name in words)
    png: str | None = None  # its key in AUTOMATIC1111's `parameters` text
    png_when: str = "always"  # when the text carries it (parameters.WRITTEN_WHEN names the rules)
    png_absent: object = SAME  # what a text without the key means (REQUIRED: it is refused)
    codec: str = ""  # how the text spells it, where str() and kind() do not (parameters.CODECS)
    flag: str | None = None  # scripts/sample.py's flag
    help: str = ""  # the flag's help
    label: str | None = None  # the web UI control's label
    ui_default: object = SAME  # the web UI control's value, where it is not the default
    axis: str | None = None  # its name as an X/Y/Z plot axis (xyz.py), where a plot may vary it
    axis_label: str = ""  # how a plot's grid names it (default: its PNG key, as AUTOMATIC1111's grids do)

    @property
    def what_named(self) -> str:
        """How messages name the field."""
        return self.what or self.name.replace("_", " ")

    @property
    def ui_value(self) -> object:
        """The value a web UI control starts at."""
        return self.default if self.ui_default == SAME else self.ui_default

    @property
    def flag_default(self) -> object:
        """The flag's value when it is not given (None for a required value: the script chooses, e.g. a seed)."""
        return None if self.default is REQUIRED else self.default


_SEED = Bound("seed", 0, 2**32 - 1, local_high=2**63 - 1)
_UNIT = {"whole": False, "local_high": 1}  # a fraction in [0, 1]

# In the order the PNG text writes them (AUTOMATIC1111's), which is also ImageSpec's order of arguments.
FIELDS: tuple[Field, ...] = (
    Field("prompt", str, REQUIRED, SPEC, label="Prompt", axis="prompt",
          axis_label="Prompt S/R"),  # the text's first line
    Field("negative_prompt", str, "", flag="--negative-prompt", help="what to steer away from",
          label="Negative prompt"),  # the text's second line
    Field("steps", int, bound=Bound("steps", 1, 100), png="Steps", png_absent=REQUIRED, flag="--steps",
          help=f"denoising steps (default: the model's; {DEFAULT_STEPS}, or {STUDENT_STEPS} for a few-step student)",
          label="Steps", axis="steps"),
    Field("scheduler", str, choices=tuple(SCHEDULERS), png="Sampler", codec="scheduler", png_absent=DEFAULT_SCHEDULER,
          flag="--scheduler", label="Scheduler", axis="scheduler",
          help=f"sampler (default: the model's; {DEFAULT_SCHEDULER}, or {STUDENT_SCHEDULER} for a few-step student)"),
    Field("guidance_scale", float, bound=Bound("guidance scale", 0, 30, whole=False), png="CFG scale", png_absent=7.0,
          flag="--guidance", help="classifier-free guidance scale (default: the model's)", label="Guidance",
          axis="guidance"),
    Field("seed", int, REQUIRED, SPEC, bound=_SEED, png="Seed", flag="--seed", label="Seed", axis="seed",
          help="seed of the first image; image k uses seed + k (default: random)"),
    Field("width", int, png="Size", codec="size", flag="--width", help="pixels (default: the model's training size)",
          label="Width"),
    Field("height", int, flag="--height", help="pixels (default: the model's training size)",
          label="Height"),  # written with the width, as Size
    Field("model_hash", str, part=STAMP, png="Model hash"),
    Field("model", str, part=STAMP, png="Model"),
    Field("variation_seed", int, None, SPEC, bound=_SEED, png="Variation seed", png_when="variation",
          flag="--variation-seed", help="second seed slerped into the noise", label="Variation seed"),
    Field("variation_strength", float, 0.0, SPEC, bound=Bound("variation strength", 0, 1, **_UNIT),
          png="Variation seed strength", png_when="variation", flag="--variation-strength",
          help="0 = seed only, 1 = variation seed only", label="Variation strength", axis="variation-strength",
          axis_label="Var. strength"),
    Field("eta", float, 0.0, bound=Bound("eta", 0, 1, whole=False), png="Eta", png_when="nonzero", flag="--eta",
          help="DDIM eta (0: deterministic)", label="Eta", axis="eta"),
    Field("strength", float, None, bound=Bound("denoising strength", 0, 1, **_UNIT), png="Denoising strength",
          png_when="set", flag="--strength", label="Denoising strength", ui_default=DEFAULT_STRENGTH,
          axis="strength", axis_label="Denoising",
          help="image to image: how much to change the init image, 0 (none) to 1 (text to image); "
          f"default {DEFAULT_STRENGTH}"),
    Field("init_hash", str, part=STAMP, png="Init image hash", png_when="image_to_image"),
    Field("mask_blur", int, 4, bound=Bound("mask blur", 0, 64), png="Mask blur", png_when="inpainting",
          flag="--mask-blur", help="inpainting: soften the mask's edge by this many pixels", label="Mask blur (px)"),
    Field("masked_content", str, "original", choices=MASKED_CONTENT, png="Masked content", png_when="inpainting",
          flag="--masked-content", help="inpainting: what the masked area starts as", label="Masked content"),
    Field("inpaint_area", str, "whole", choices=INPAINT_AREAS, labels=("Whole picture", "Only masked"),
          png="Inpaint area", png_when="inpainting", flag="--inpaint-area", label="Inpaint area",
          help="inpainting: the whole picture, or only a box around the mask at full size"),
    Field("inpaint_padding", int, 32, bound=Bound("inpaint padding", 0, 256), png="Masked area padding",
          png_when="masked_area", flag="--inpaint-padding", help="inpainting: pixels around the mask's box",
          label="Padding around the mask (px)"),
    Field("mask_hash", str, part=STAMP, png="Mask hash", png_when="set"),
    Field("lora", str, png="LoRA", codec="lora", png_when="set", flag="--lora", label="LoRA",
          help="a LoRA file (diffusers format, e.g. runs/my-lora/pytorch_lora_weights.safetensors)"),
    Field("lora_scale", float, 1.0, bound=Bound("LoRA scale", -2, 2, whole=False, server_only=True),
          flag="--lora-scale", help="LoRA strength (default 1.0)", label="LoRA scale", axis="lora-scale",
          axis_label="LoRA scale"),  # written with the LoRA
    Field("lora_hash", str, part=STAMP, png="LoRA hash", png_when="lora"),
    Field("morph_to", str, None, SPEC, png="Morph to", png_when="morph"),
    Field("morph_t", float, 0.0, SPEC, bound=Bound("morph position", 0, 1, **_UNIT), png="Morph t",
          png_when="morph"),  # between two keyframes
    # 'auto' is the model's: predictions for a few-step student, slerp for a full model (SamplingModel.morph_mode)
    Field("morph_mode", str, "auto", SPEC, choices=MORPH_MODES, what="interpolation", png="Morph mode",
          png_when="morph", flag="--morph-mode", label="Interpolation",
          help="how a morph blends its prompts: the model's predictions for each (one more UNet row a frame), or "
               "their embeddings (slerp, lerp); auto (default): predictions for a few-step student, slerp else"),
    # (prompt, weight) pairs whose embeddings are added to the conditioning: a concept direction from prompt a to
    # prompt b at strength s is ((b, s), (a, -s)); a blend of captions is one term per caption. Far beyond 3: noise.
    Field("mix", tuple, (), SPEC, bound=Bound("prompt mix weight", -3, 3, whole=False, local_high=3),
          png="Prompt mix", png_when="nonzero", codec="json"),
    Field("precision", str, part=STAMP, png="Precision"),
    # unset: the model's, tiny for a few-step student whose folder ships one (decoding is a third of its image's
    # time), full else; a text without the key was decoded by the full VAE, as every image before tiny ones
    Field("decoder", str, None, choices=DECODERS, png="Decoder", png_when="tiny", png_absent="full",
          flag="--decoder", label="Decoder",
          help="the VAE decoder: full, or tiny (a distilled copy the model folder ships as vae_tiny/, several times "
               "faster); default: tiny for a few-step student that ships one, full else"),
)
FIELD = {f.name: f for f in FIELDS}


def part(name: str, fields: tuple[Field, ...] = FIELDS) -> tuple[Field, ...]:
    """The fields of one part (SETTINGS, SPEC or STAMP), in order."""
    return tuple(f for f in fields if f.part == name)
