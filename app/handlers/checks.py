"""A server's checks of the raw values a page or an API caller sends: one-line refusals, upper bounds included.

Values arrive as Gradio sends them (64.0 for 64, a list where text was expected), so each is checked here
rather than converted.
"""

from __future__ import annotations

import random

from ldm.errors import LdmError, quoted
from ldm.sampling.limits import BOUNDS, SIZE_FACTOR, check
from ldm.sampling.requests import Settings
from ldm.sampling.sampler import SamplingModel
from ldm.sampling.schema import DECODERS

MAX_SEED = int(BOUNDS["seed"].server_high)


def server(name: str, value) -> int | float:
    """`value` inside the server's range for BOUNDS[name]."""
    return check(name, value, server=True)


def choice(what: str, value) -> str:
    """A value that must be one of a listed set of names (checked against the set by the caller)."""
    if not isinstance(value, str):  # sent by an API client rather than picked from the UI's list
        raise LdmError(f"{what} must be one of the listed names, got {value!r}")
    return value


def one_of(what: str, value, allowed) -> str:
    """A value sent back by the page (or made up by an API caller) that must be one of `allowed`."""
    if choice(what, value) not in allowed:
        raise LdmError(f"{what} must be one of {', '.join(allowed)}, got {quoted(value)}")
    return value


def whole(value):
    """64 for Gradio's 64.0 (its sliders send floats); a fraction such as 64.5 is left for the checks to refuse."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def keyframe_count(keyframes: list, what: str) -> None:
    """Refuse fewer than 2 or more than the server's most keyframes."""
    bound = BOUNDS["keyframes"]
    if not bound.low <= len(keyframes) <= bound.server_high:
        raise LdmError(f"give between {bound.low} and {bound.server_high} {what}")


def prompt(text: str | None, what: str = "prompt") -> str:
    """The prompt, refused when missing, not text, or longer than the server allows."""
    if text is None:
        raise LdmError(f"{what} is missing")
    if not isinstance(text, str):
        raise LdmError(f"{what} must be text")
    longest = int(BOUNDS["prompt_chars"].server_high)
    if len(text) > longest:
        raise LdmError(f"{what} is longer than {longest} characters")
    return text


def prompt_lines(text: str | None) -> list[str]:
    """Keyframe prompts, one per non-empty line, each checked, between 2 and the server's most."""
    keyframes = [prompt(p.strip()) for p in str(text or "").splitlines() if p.strip()]
    keyframe_count(keyframes, "prompts, one per line")
    return keyframes


def seed(value) -> int:
    """A checked seed; None or a negative number draws a random one."""
    if value is None or (not isinstance(value, bool) and isinstance(value, int | float) and value < 0):
        return random.randrange(MAX_SEED)
    return server("seed", value)


def seeds(text: str) -> list[int]:
    """Keyframe seeds from text like '1, 2, 3'."""
    try:
        values = [int(s) for s in str(text).replace(",", " ").split()]
    except ValueError:
        raise LdmError("seeds must be whole numbers separated by commas or spaces") from None
    keyframe_count(values, "seeds")
    return [server("seed", s) for s in values]


def largest_side(model: SamplingModel) -> int:
    """The widest or tallest image a request may ask of `model`, in pixels (a multiple of its size step)."""
    step = model.size_step
    return model.default_size * SIZE_FACTOR // step * step


def settings(model: SamplingModel, steps, guidance, scheduler, width=None, height=None, negative_prompt="",
             biggest: int | None = None, decoder: str | None = None) -> Settings:
    """Checked sampling settings for `model`; None means the model's default. biggest: the largest side
    (default: the model's own); decoder: full or tiny (tiny only for a model that ships one)."""
    defaults = model.defaults
    guidance = defaults.guidance if guidance is None else guidance
    steps = defaults.steps if steps is None else steps
    scheduler = defaults.scheduler if scheduler is None else scheduler
    steps, guidance = server("steps", steps), server("guidance", guidance)
    choice("scheduler", scheduler)
    step, biggest = model.size_step, biggest or largest_side(model)
    for side, value in (("width", width), ("height", height)):
        if value is not None and (isinstance(value, bool) or not step <= value <= biggest):
            raise LdmError(f"{side} must be between {step} and {biggest}, got {value!r}")
    prompt(negative_prompt or "", "negative prompt")
    if decoder is not None:
        one_of("decoder", decoder, DECODERS)
    return model.resolve(Settings(
        steps=steps, guidance_scale=guidance, scheduler=scheduler, width=whole(width), height=whole(height),
        negative_prompt=negative_prompt or "", decoder=decoder))
