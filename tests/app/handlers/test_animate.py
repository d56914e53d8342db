"""The Seed walk and Prompt morph tabs' handlers on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import pytest
from PIL import Image

from app.handlers.animate import AnimateHandlers
from app.handlers.shared import Shared
from ldm.errors import LdmError
from ldm.sampling.parameters import read_png_parameters


@pytest.fixture
def handlers(shared):
    return AnimateHandlers(shared)


def test_seed_walk_and_morph_write_gif_mp4_and_frames(handlers):
    gif, mp4, frames = handlers.interpolate_seeds("a red square", "1, 2", frames=3, steps=1)
    assert Image.open(gif).n_frames == 3 and len(frames) == 3 and mp4.endswith(".mp4")
    gif, _, frames = handlers.morph("red\na blue circle", seed=3, frames=4, mode="lerp", steps=1)
    assert Image.open(gif).n_frames == 4 and "Morph mode: lerp" in read_png_parameters(frames[2])


def test_walk_and_morph_render_with_the_picked_model(tiny_model, tiny_student, tmp_path):
    handlers = AnimateHandlers(Shared(tiny_model, None, tmp_path, live=tiny_student))
    name = next(n for n, m in handlers.shared.models.by_name.items() if m is tiny_student)
    _, _, frames = handlers.morph("red\na blue circle", seed=3, frames=3, model=name)
    text = read_png_parameters(frames[1])
    assert "Sampler: LCM" in text and f"Model: {name}" in text and "Morph mode: predictions" in text  # its auto
    _, _, frames = handlers.interpolate_seeds("a red square", "1, 2", frames=3)  # the main model by default
    assert f"Model: {tiny_model.name}" in read_png_parameters(frames[1])
    with pytest.raises(LdmError, match="unknown model 'nope'"):
        handlers.morph("a\nb", model="nope")


@pytest.mark.parametrize("call, message", [
    (lambda h: h.interpolate_seeds("x", "1, banana", steps=1), "whole numbers"),
    (lambda h: h.interpolate_seeds("x", "1", steps=1), "give between 2 and 8 seeds"),
    (lambda h: h.interpolate_seeds("x", "1, -4", steps=1), "seed must be"),
    (lambda h: h.interpolate_seeds("x", "1, 2", frames=1, steps=1), "frames must be a whole number between 2"),
    (lambda h: h.morph("only one", steps=1), "give between 2 and 8 prompts"),
    (lambda h: h.morph("a\nb", mode="cubic", steps=1), "interpolation must be one of auto, predictions, slerp, lerp"),
])
def test_animations_refuse_bad_keyframes(handlers, call, message):
    with pytest.raises(LdmError, match=message):
        call(handlers)
