"""The Seed walk and Prompt morph tabs' handlers on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import pytest
from PIL import Image

from app.handlers.animate import AnimateHandlers
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
