"""Prompt morphs that blend predictions: the UNet rows they add, exact ends, batch independence, smoother morphs."""

import pytest
import torch

from ldm.sampling.interpolate import max_step_share
from ldm.sampling.prediction_morph import PredictionMorph
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.walks import render_walk

FAST = Settings(steps=4)
A, B, C = "a red square", "a large blue circle on a white background", "a green triangle"


class Echo(torch.nn.Module):
    """A stand-in UNet: each row's answer is its sample times its text's mean, plus its guidance row's mean."""

    def forward(self, sample, timestep, encoder_hidden_states=None, timestep_cond=None, return_dict=True):
        out = sample * encoder_hidden_states.mean(dim=(1, 2))[:, None, None, None] + timestep
        if timestep_cond is not None:
            out = out + timestep_cond.mean(dim=1)[:, None, None, None]
        return (out,)


def _texts(*values):
    return torch.stack([torch.full((3, 4), float(v)) for v in values])


@pytest.mark.parametrize("guided", [True, False])
def test_morph_rows_blend_the_two_texts_answers_and_leave_the_other_rows_alone(guided):
    images = 3
    sample = torch.arange(1, images + 1, dtype=torch.float32)[:, None, None, None].expand(images, 1, 2, 2)
    texts, cond = _texts(2, 3, 4), None
    if guided:  # diffusers' layout: the unconditional rows first
        sample, texts = torch.cat([sample, sample]), torch.cat([_texts(0, 0, 0), texts])
    else:  # a student: one guidance embedding row per image
        cond = torch.arange(images, dtype=torch.float32)[:, None].expand(images, 5)
    morph = PredictionMorph([1], _texts(10), torch.tensor([0.25]))
    echo = Echo()
    plain = echo(sample, 0.5, encoder_hidden_states=texts, timestep_cond=cond)[0]
    with morph.attach(echo, images):
        blended = echo(sample, 0.5, encoder_hidden_states=texts, timestep_cond=cond)[0]
    row = images + 1 if guided else 1
    toward = sample[row] * 10 + 0.5 + (0 if cond is None else cond[1].mean())
    expected = plain.clone()
    expected[row] = 0.75 * plain[row] + 0.25 * toward
    assert blended.shape == plain.shape
    assert torch.allclose(blended, expected)
    assert torch.equal(echo(sample, 0.5, encoder_hidden_states=texts, timestep_cond=cond)[0], plain)  # detached


def test_the_ends_of_a_prediction_morph_are_the_plain_prompts_images(tiny_model):
    plain = tiny_model.generate([ImageSpec(A, 5), ImageSpec(B, 5)], FAST)
    ends = tiny_model.generate([ImageSpec(A, 5, morph_to=B, morph_t=0.0, morph_mode="predictions"),
                                ImageSpec(A, 5, morph_to=B, morph_t=1.0, morph_mode="predictions")], FAST)
    assert torch.equal(ends, plain)
    same = tiny_model.generate([ImageSpec(A, 5, morph_to=A, morph_t=0.4, morph_mode="predictions")], FAST)
    assert torch.equal(same[0], plain[0])  # a morph to the prompt itself: equal predictions blend to themselves
    mid = tiny_model.generate([ImageSpec(A, 5, morph_to=B, morph_t=0.5, morph_mode="predictions")], FAST)[0]
    embedded = tiny_model.generate([ImageSpec(A, 5, morph_to=B, morph_t=0.5, morph_mode="lerp")], FAST)[0]
    assert not torch.equal(mid, plain[0]) and not torch.equal(mid, plain[1]) and not torch.equal(mid, embedded)


@pytest.mark.parametrize("model", ["tiny_model", "tiny_student"])
def test_a_morph_frame_is_the_same_in_any_batch(model, request):
    model = request.getfixturevalue(model)
    frame = ImageSpec(A, 5, morph_to=B, morph_t=0.3, morph_mode="predictions")
    other = ImageSpec(C, 6, morph_to=A, morph_t=0.8, morph_mode="predictions")
    settings = Settings() if model.is_student else FAST
    together = model.generate([ImageSpec(C, 4), frame, ImageSpec(B, 7), other], settings)
    alone = torch.cat([model.generate([spec], settings) for spec in (ImageSpec(C, 4), frame, ImageSpec(B, 7), other)])
    assert torch.equal(together, alone)


def test_prompt_editing_changes_the_morph_to_prompts_text_between_steps_too(tiny_model):
    edited = ImageSpec(f"[{C}:{A}:0.5]", 5, morph_to=f"[{C}:{B}:0.5]", morph_t=0.5, morph_mode="predictions")
    kept = ImageSpec(f"[{C}:{A}:0.5]", 5, morph_to=C, morph_t=0.5, morph_mode="predictions")  # B never comes
    first_half = ImageSpec(C, 5, morph_to=C, morph_t=0.5, morph_mode="predictions")
    images = tiny_model.generate([edited, kept, first_half], FAST)
    assert not torch.equal(images[0], images[1]) and not torch.equal(images[0], images[2])


def test_a_prediction_morph_walk_passes_through_its_keyframes(tiny_student):
    specs, frames = render_walk(tiny_student, [A, B, C], [3], 7, Settings(), morph_mode="predictions")
    plain = tiny_student.generate([ImageSpec(p, 3) for p in (A, B, C)], Settings())
    assert torch.equal(frames[0], plain[0]) and torch.equal(frames[3], plain[1]) and torch.equal(frames[6], plain[2])
    assert all(s.morph_mode == "predictions" for s in specs if s.morph_to)
    assert 0 < max_step_share(frames) <= 1


@pytest.mark.parametrize("model, mode", [("tiny_model", "slerp"), ("tiny_student", "predictions")])
def test_auto_is_predictions_for_a_student_and_slerp_for_a_full_model_and_the_png_says_which(model, mode, request):
    model = request.getfixturevalue(model)
    settings = Settings() if model.is_student else FAST
    auto = ImageSpec(A, 5, morph_to=B, morph_t=0.5)
    assert auto.morph_mode == "auto"
    images = model.generate([auto, ImageSpec(A, 5, morph_to=B, morph_t=0.5, morph_mode=mode)], settings)
    assert torch.equal(images[0], images[1])
    assert f"Morph mode: {mode}" in model.parameters_text(auto, settings)


def test_max_step_share_is_one_over_the_steps_when_even_and_about_one_for_a_snap_or_a_flicker():
    def frames(*values):
        return torch.tensor(values, dtype=torch.float32)[:, None, None, None].expand(len(values), 3, 2, 2)

    assert max_step_share(frames(0, 0.25, 0.5, 0.75, 1)) == pytest.approx(0.25)
    assert max_step_share(frames(0, 0, 1, 1, 1)) == pytest.approx(1.0)
    assert max_step_share(frames(0, 1, 0, 1, 1)) == pytest.approx(1.0)  # a flicker: each step is the whole change
    assert max_step_share(frames(0, 0, 0)) == 0.0
