"""Seed walks and prompt morphs: keyframes land exactly, no duplicated frames, even spacing."""

import pytest
import torch

from ldm.errors import LdmError
from ldm.sampling.interpolate import max_jump_ratio
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.walks import render_walk

ANCESTRAL = Settings(steps=5, scheduler="euler-a")


def test_seed_walk_passes_exactly_through_each_seed(tiny_model):
    specs, frames = render_walk(tiny_model, ["a red square"], [3, 8, 5], 7, ANCESTRAL)
    plain = tiny_model.generate([ImageSpec("a red square", s) for s in (3, 8, 5)], ANCESTRAL)
    assert frames.shape == (7, 3, 32, 32)
    assert torch.equal(frames[0], plain[0]) and torch.equal(frames[3], plain[1]) and torch.equal(frames[6], plain[2])
    assert [s.seed for s in specs] == [3, 3, 3, 8, 8, 8, 5]
    assert len({tuple(f.flatten().tolist()) for f in frames}) == 7  # no frame repeated at the joins


def test_looping_walk_does_not_repeat_its_first_frame(tiny_model):
    specs, frames = render_walk(tiny_model, ["a red square"], [3, 8], 6, ANCESTRAL, loop=True)
    assert specs[-1].seed == 8 and specs[-1].variation_seed == 3  # heading back to the start
    assert not any(torch.equal(frames[0], f) for f in frames[1:])


def test_walk_frames_change_gradually(tiny_model):
    _, frames = render_walk(tiny_model, ["a red square"], [3, 8], 9, ANCESTRAL)
    assert max_jump_ratio(frames) < 2  # measured 1.1; with only the first seed's per-step noise: 3.2


def test_morph_with_a_seed_walk_ends_on_both_plain_images(tiny_model):
    s = Settings(steps=4)
    specs, frames = render_walk(tiny_model, ["red", "a blue circle on a white background"], [1, 2], 5, s,
                                ease="smoothstep", morph_mode="lerp")
    plain = tiny_model.generate([ImageSpec("red", 1), ImageSpec("a blue circle on a white background", 2)], s)
    assert torch.equal(frames[0], plain[0]) and torch.equal(frames[-1], plain[1])
    assert specs[2].morph_to == "a blue circle on a white background" and specs[2].variation_seed == 2
    assert specs[1].morph_t == pytest.approx(0.15625)  # smoothstep(0.25)


def test_even_spacing_keeps_the_endpoints_and_evens_the_steps(tiny_model):
    s = Settings(steps=4)
    prompts = ["red", "a blue circle on a white background"]
    _, uniform = render_walk(tiny_model, prompts, [1], 6, s)
    specs, even = render_walk(tiny_model, prompts, [1], 6, s, even=True)
    assert torch.equal(even[0], uniform[0]) and torch.equal(even[-1], uniform[-1])
    assert [sp.morph_t for sp in specs[1:-1]] != [0.2, 0.4, 0.6, 0.8]
    assert max_jump_ratio(even) <= max_jump_ratio(uniform) * 1.05


@pytest.mark.parametrize("even", [False, True])
def test_each_frame_is_handed_over_once_when_final(tiny_model, even):
    # what scripts/sample.py writes as a walk goes, so that Ctrl-C keeps the finished frames
    s = Settings(steps=3)
    prompts = ["red", "a blue circle on a white background"]
    handed: dict[int, tuple] = {}

    def on_frames(indices, specs, images):
        assert len(indices) == len(specs) == len(images)
        for k, spec, image in zip(indices, specs, images, strict=True):
            assert k not in handed
            handed[k] = (spec, image)

    specs, frames = render_walk(tiny_model, prompts, [1], 6, s, even=even, batch_size=2, on_frames=on_frames)
    assert sorted(handed) == list(range(6))
    assert all(handed[k][0] == specs[k] and torch.equal(handed[k][1], frames[k]) for k in range(6))


@pytest.mark.parametrize("kwargs, message", [
    ({"prompts": ["a"], "seeds": [1, 2], "frames": 1}, "at least 2"),
    ({"prompts": ["a"], "seeds": [1], "frames": 4}, "at least 2 seeds or 2 prompts"),
    ({"prompts": ["a", "b", "c"], "seeds": [1, 2], "frames": 4}, "as many seeds as prompts"),
])
def test_bad_walks_are_one_line_errors(tiny_model, kwargs, message):
    with pytest.raises(LdmError, match=message):
        render_walk(tiny_model, settings=ANCESTRAL, **kwargs)
