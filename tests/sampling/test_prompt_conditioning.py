"""Prompt syntax through sampling: emphasis on the encoder's output, editing and alternation per step."""

import pytest
import torch
from support import make_random_pipeline, make_tiny_clip

from ldm.errors import LdmError
from ldm.sampling.embeddings import prompt_step
from ldm.sampling.emphasis import apply_weights, token_weights
from ldm.sampling.parameters import png_info, read_png_parameters, spec_from_parameters
from ldm.sampling.prompt_syntax import parse_prompt
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model

FAST = Settings(steps=4)


def render(model, prompt, settings=FAST, seed=5, negative=""):
    return model.generate([ImageSpec(prompt, seed)], Settings(**{**settings.__dict__, "negative_prompt": negative}))


def test_emphasis_changes_pixels_and_weight_one_does_not(tiny_model):
    plain = render(tiny_model, "a red square")
    assert torch.equal(render(tiny_model, "a (red:1.0) square"), plain)
    for emphasised in ("a (red:1.5) square", "a [red] square", "a ((red)) square"):
        assert (render(tiny_model, emphasised) - plain).abs().max() > 1e-3, emphasised


def test_prompt_editing_at_the_ends_equals_the_plain_prompts_and_between_differs(tiny_model):
    cat, dog = render(tiny_model, "a red square"), render(tiny_model, "a blue circle")
    assert torch.equal(render(tiny_model, "a [red square:blue circle:0]"), dog)
    assert torch.equal(render(tiny_model, "a [red square:blue circle:1.0]"), cat)
    half = render(tiny_model, "a [red square:blue circle:0.5]")
    assert (half - cat).abs().max() > 1e-3 and (half - dog).abs().max() > 1e-3
    assert torch.equal(render(tiny_model, "a [red square:blue circle:2]"), half)  # step 2 of 4 is half-way
    # in the negative prompt too, and with a second-order sampler (more loop iterations than steps)
    heun = Settings(steps=4, scheduler="heun")
    assert torch.equal(render(tiny_model, "a red square", heun, negative="[blue:green:0]"),
                       render(tiny_model, "a red square", heun, negative="green"))


def test_alternation_switches_every_step(tiny_model):
    alternating = render(tiny_model, "a [red|blue] square")
    assert torch.equal(render(tiny_model, "a [red|blue] square"), alternating)
    for plain in ("a red square", "a blue square"):
        assert (alternating - render(tiny_model, plain)).abs().max() > 1e-3
    assert torch.equal(render(tiny_model, "a [red|red] square"), render(tiny_model, "a red square"))


def test_the_few_step_student_follows_prompt_editing(tiny_student):
    settings = Settings(steps=2)
    red, blue = render(tiny_student, "a red square", settings), render(tiny_student, "a blue circle", settings)
    assert torch.equal(render(tiny_student, "[a red square:a blue circle:0]", settings), blue)
    switched = render(tiny_student, "[a red square:a blue circle:1]", settings)  # step 1 red, step 2 blue
    assert (switched - red).abs().max() > 1e-3 and (switched - blue).abs().max() > 1e-3


def test_bad_syntax_is_a_one_line_error_before_any_work(tiny_model):
    with pytest.raises(LdmError, match=r"prompt syntax: '\(' is never closed at character 3"):
        render(tiny_model, "a (red square")
    with pytest.raises(LdmError, match="prompt syntax"):
        render(tiny_model, "a red square", negative="[blue")


def test_loop_iterations_map_onto_sampling_steps():
    assert [prompt_step(i, 4, 4) for i in range(4)] == [1, 2, 3, 4]
    assert [prompt_step(i, 7, 4) for i in range(7)] == [1, 1, 2, 2, 3, 3, 4]


def test_emphasis_weights_land_on_their_tokens_with_a_clip_tokenizer(tmp_path):
    tokenizer, encoder = make_tiny_clip(tmp_path / "clip")
    weights = token_weights(tokenizer, parse_prompt("ab (cd:1.5) e").runs_at(1, 1))
    ids = tokenizer("ab cd e", padding="max_length", max_length=tokenizer.model_max_length)["input_ids"]
    assert len(weights) == len(ids) == tokenizer.model_max_length
    tokens = tokenizer.convert_ids_to_tokens(ids)
    heavy = [t for t, w in zip(tokens, weights.tolist()) if w == 1.5]
    assert heavy == ["c", "d</w>"]  # the tiny vocabulary spells words letter by letter
    embeds = encoder(torch.tensor([ids])).last_hidden_state
    weighted = apply_weights(embeds, weights)
    assert torch.allclose(weighted.pow(2).mean(), embeds.pow(2).mean(), rtol=1e-4)  # loudness kept
    assert apply_weights(embeds, torch.ones(len(ids))) is embeds


def test_a_clip_stable_diffusion_folder_takes_emphasis_and_editing(tmp_path):
    tokenizer, encoder = make_tiny_clip(tmp_path / "clip")
    model = load_sampling_model(make_random_pipeline(tmp_path / "sd", text_encoder=encoder, tokenizer=tokenizer),
                                "cpu", "bf16")
    plain = render(model, "ab cd")
    assert torch.equal(render(model, "ab (cd:1.0)"), plain)
    assert (render(model, "ab (cd:1.4)") - plain).abs().max() > 1e-3
    assert torch.equal(render(model, "[ef:ab cd:0]"), plain)


def test_a_png_with_syntax_round_trips_to_identical_pixels(tiny_model, tmp_path):
    from PIL import Image

    prompt = "a [red:blue:0.5] (square:1.2), [x|y]"
    spec = ImageSpec(prompt, 11)
    image = tiny_model.generate([spec], FAST)[0]
    Image.new("RGB", (8, 8)).save(tmp_path / "out.png", pnginfo=png_info(tiny_model.parameters_text(spec, FAST)))
    again_spec, again_settings, _ = spec_from_parameters(read_png_parameters(tmp_path / "out.png"))
    assert again_spec.prompt == prompt
    assert torch.equal(tiny_model.generate([again_spec], again_settings)[0], image)
