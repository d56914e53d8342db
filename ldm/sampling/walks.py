"""Seed walks and prompt morphs: keyframe paths turned into per-frame ImageSpecs, rendered evenly."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from ldm.errors import LdmError
from ldm.sampling.easing import EASINGS
from ldm.sampling.interpolate import frame_distances, max_jump_ratio, path_positions, point_at, respace
from ldm.sampling.requests import ImageSpec, Progress, Settings
from ldm.sampling.sampler import SamplingModel
from ldm.sampling.schema import FIELD, MORPH_MODES

MORPH_MODE = FIELD["morph_mode"].default  # the schema's: 'auto', resolved by the model


def _keyframes(prompts: Sequence[str], seeds: Sequence[int]) -> int:
    if not prompts or not seeds:
        raise LdmError("a walk needs at least one prompt and one seed")
    if len(prompts) > 1 and len(seeds) > 1 and len(prompts) != len(seeds):
        raise LdmError(f"a morph combined with a seed walk needs as many seeds as prompts "
                       f"({len(prompts)} prompts, {len(seeds)} seeds)")
    count = max(len(prompts), len(seeds))
    if count < 2:
        raise LdmError("an interpolation needs at least 2 seeds or 2 prompts")
    return count


def spec_at(u: float, prompts: Sequence[str], seeds: Sequence[int], loop: bool = False, ease: str = "linear",
            morph_mode: str = MORPH_MODE) -> ImageSpec:
    """The frame at path position u: keyframe i's prompt and seed blended toward keyframe i+1's."""
    count = _keyframes(prompts, seeds)
    point = point_at(u, count, ease, loop)
    i, j = point.keys(count)
    prompt_a, prompt_b = (prompts[i], prompts[j]) if len(prompts) > 1 else (prompts[0], prompts[0])
    seed_a, seed_b = (seeds[i], seeds[j]) if len(seeds) > 1 else (seeds[0], seeds[0])
    if point.t == 0:
        return ImageSpec(prompt_a, seed_a)
    return ImageSpec(
        prompt_a, seed_a,
        variation_seed=seed_b if seed_b != seed_a else None, variation_strength=point.t if seed_b != seed_a else 0.0,
        morph_to=prompt_b if prompt_b != prompt_a else None, morph_t=point.t if prompt_b != prompt_a else 0.0,
        morph_mode=morph_mode,
    )


Frames = Callable[[list[int], list[ImageSpec], torch.Tensor], None]


def render_walk(model: SamplingModel, prompts: Sequence[str], seeds: Sequence[int], frames: int,
                settings: Settings = Settings(), loop: bool = False, ease: str = "linear", morph_mode: str = MORPH_MODE,
                even: bool = False, batch_size: int = 8, progress: Progress | None = None,
                on_frames: Frames | None = None) -> tuple[list[ImageSpec], torch.Tensor]:
    """Frames of a seed walk and/or prompt morph through the keyframes, with their specs.

    With `even`, a first pass measures how much the image changes between frames and a second pass
    re-places the frames so that each step changes the image by about the same amount. The re-placing
    is an estimate (image change is not linear between two measured frames), so the re-placed walk is
    measured too and kept only when it is at least as even as the uniform one (max_jump_ratio).
    on_frames(indices, specs, images) gets frames as soon as they are final (in batches; with `even`,
    all at once after the comparison, or the uniform walk when interrupted during the second pass), so
    a caller can keep what is finished when a long walk is interrupted.
    """
    count = _checked_walk(prompts, seeds, frames, ease, morph_mode)
    settings = model.resolve(settings)  # the model's own steps, for the second pass's progress
    positions = path_positions(frames, count, loop)
    passes = 2 if even else 1

    def report(done: int, total: int) -> None:
        if progress is not None:
            progress(done, total * passes)

    specs = [spec_at(u, prompts, seeds, loop, ease, morph_mode) for u in positions]
    images = model.generate(specs, settings, batch_size, report,
                            on_batch=None if even else _hand_over(on_frames, list(range(frames)), specs))
    if not even:
        return specs, images
    new_positions = _even_positions(positions, images, count, loop)
    new_specs = [spec_at(u, prompts, seeds, loop, ease, morph_mode) for u in new_positions]
    total = len(specs) * settings.steps

    def report_second(done: int, _total: int) -> None:
        if progress is not None:
            progress(total + done, total * passes)

    try:
        even_images = _render_new_positions(model, dict(zip(positions, images, strict=True)), new_positions,
                                            new_specs, settings, batch_size, report_second)
    except KeyboardInterrupt:  # the uniform walk is complete: it is what the caller keeps
        if on_frames is not None:
            on_frames(list(range(frames)), specs, images)
        raise
    if max_jump_ratio(_closed(even_images, loop)) > max_jump_ratio(_closed(images, loop)):
        new_specs, even_images = specs, images  # the estimate made it less even: the uniform walk stays
    if on_frames is not None:
        on_frames(list(range(frames)), new_specs, even_images)
    return new_specs, even_images


def _checked_walk(prompts: Sequence[str], seeds: Sequence[int], frames: int, ease: str, morph_mode: str) -> int:
    """The keyframe count, after one-line errors for a frame count, easing or interpolation we lack."""
    count = _keyframes(prompts, seeds)
    if frames < 2:
        raise LdmError(f"frames must be at least 2, got {frames}")
    if ease not in EASINGS:
        raise LdmError(f"unknown easing {ease!r}: choose one of {', '.join(EASINGS)}")
    if morph_mode not in MORPH_MODES:
        raise LdmError(f"unknown interpolation {morph_mode!r}: choose one of {', '.join(MORPH_MODES)}")
    return count


def _hand_over(on_frames: Frames | None, indices: list[int], specs: list[ImageSpec]):
    """An on_batch callback giving on_frames each batch's frames as they come, or None without on_frames."""
    def hand_over(start: int, images: torch.Tensor) -> None:
        chosen = indices[start:start + len(images)]
        on_frames(chosen, [specs[k] for k in chosen], images)

    return hand_over if on_frames is not None else None


def _closed(frames: torch.Tensor, loop: bool) -> torch.Tensor:
    """The frames, with a loop's first frame repeated at the end."""
    # A loop's last gap runs back to the first frame; close it so it is spaced like the others.
    return torch.cat([frames, frames[:1]]) if loop else frames


def _even_positions(positions: list[float], images: torch.Tensor, count: int, loop: bool) -> list[float]:
    """Path positions re-placed so that each step changes the measured images by about the same amount."""
    closed_positions = positions + ([float(count)] if loop else [])
    frames = len(positions)
    return respace(closed_positions, frame_distances(_closed(images, loop)), frames + (1 if loop else 0))[:frames]


def _render_new_positions(model: SamplingModel, known: dict[float, torch.Tensor], positions: list[float],
                          specs: list[ImageSpec], settings: Settings, batch_size: int,
                          report: Progress) -> torch.Tensor:
    """The frames at these positions: those already rendered reused, the others generated."""
    todo = [k for k, u in enumerate(positions) if u not in known]
    if todo:
        fresh = model.generate([specs[k] for k in todo], settings, batch_size, report)
        known = {**known, **dict(zip([positions[k] for k in todo], fresh, strict=True))}
    return torch.stack([known[u] for u in positions])
