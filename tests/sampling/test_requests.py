"""ldm/sampling/requests.py without a model: the size rule, settings checks, image seeds, PNG text back."""

import pytest

from ldm.errors import LdmError
from ldm.sampling.parameters import ModelStamp, image_parameters, spec_from_parameters
from ldm.sampling.requests import (
    ImageSpec,
    ModelDefaults,
    Settings,
    image_specs,
    resolve_settings,
    size_step,
)


@pytest.mark.parametrize("factor, step", [(4, 8), (8, 8), (16, 16), (2, 8), (12, 24)])
def test_the_size_step_is_the_vae_factor_and_the_pipelines_eight(factor, step):
    assert size_step(factor) == step


def test_resolve_fills_defaults_and_holds_the_size_rule():
    s = resolve_settings(Settings(), 4, ModelDefaults(64, 3.0))
    assert (s.width, s.height, s.guidance_scale) == (64, 64, 3.0)
    assert resolve_settings(Settings(width=8, height=256), 4, ModelDefaults(64, 3.0)).width == 8
    for width in (4, 12, 60, 63, 0, True, 64.0):
        with pytest.raises(LdmError, match=f"width {width!r} is not a positive multiple of 8, this model's size"):
            resolve_settings(Settings(width=width), 4, ModelDefaults(64, 3.0))


def test_image_k_of_a_run_gets_seed_plus_k_across_prompts():
    specs = image_specs(["a", "b"], 2, seed=10, variation_seed=100, variation_strength=0.5)
    assert [(s.prompt, s.seed, s.variation_seed) for s in specs] == [("a", 10, 100), ("a", 11, 101), ("b", 12, 102),
                                                                      ("b", 13, 103)]
    with pytest.raises(LdmError, match="number of images must be at least 1"):
        image_specs(["a"], 0, seed=1)
    with pytest.raises(LdmError, match="no prompt"):
        image_specs([], 1, seed=1)


def test_parameters_text_parses_back_to_the_request():
    spec = ImageSpec("a cat, sitting", 7, variation_seed=9, variation_strength=0.25, morph_to="a dog", morph_t=0.5,
                     mix=(("a \"sad\", crying face", 0.5), ("smiling face", -0.5)))
    s = resolve_settings(Settings(steps=20, scheduler="dpmpp-2m", negative_prompt="blur", eta=0.1), 4,
                         ModelDefaults(64, 3.0))
    text = image_parameters(spec, s, ModelStamp("emoji64", "0123456789", "bf16"))
    back, settings, fields = spec_from_parameters(text)
    assert back == spec and resolve_settings(settings, 4, ModelDefaults(64, 3.0)) == s
    assert fields["Model hash"] == "0123456789" and fields["Precision"] == "bf16"
    with pytest.raises(LdmError, match="Steps"):
        spec_from_parameters("a prompt\nSeed: 1")
    with pytest.raises(LdmError, match="size 'big' is not WIDTHxHEIGHT"):
        spec_from_parameters("p\nSteps: 2, Seed: 1, Size: big")
