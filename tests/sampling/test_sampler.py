"""Sampling through diffusers' pipeline: reproducibility, seeds, morphs, schedulers, settings, geometry."""

import json
import shutil

import pytest
import torch

from ldm.errors import LdmError
from ldm.folders import folder_geometry, folder_guidance
from ldm.sampling.parameters import spec_from_parameters
from ldm.sampling.requests import ImageSpec, Settings, folder_defaults, resolve_settings
from ldm.sampling.schedulers import SCHEDULERS

FAST = Settings(steps=4)


def test_same_inputs_give_bit_identical_images(tiny_model):
    specs = [ImageSpec("a red square", 3), ImageSpec("a blue circle", 4)]
    first, second = tiny_model.generate(specs, FAST), tiny_model.generate(specs, FAST)
    assert first.shape == (2, 3, 32, 32)
    assert torch.equal(first, second)
    assert not torch.equal(first[0], first[1])


@pytest.mark.parametrize("scheduler", ["dpmpp-2m", "euler-a"])
def test_an_image_does_not_depend_on_batch_size_or_position(tiny_model, scheduler):
    s = Settings(steps=4, scheduler=scheduler)
    specs = [ImageSpec("a red square", 10), ImageSpec("a green star", 11), ImageSpec("a blue circle", 12)]
    together = tiny_model.generate(specs, s, batch_size=3)
    alone = tiny_model.generate(specs[1:2], s)
    reordered = tiny_model.generate([specs[2], specs[1]], s, batch_size=2)
    assert torch.equal(together[1], alone[0])
    assert torch.equal(together[1], reordered[1]) and torch.equal(together[2], reordered[0])


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_every_scheduler_samples_deterministically(tiny_model, name):
    s = Settings(steps=3, scheduler=name)
    a = tiny_model.generate([ImageSpec("a red square", 1)], s)
    assert torch.isfinite(a).all() and torch.equal(a, tiny_model.generate([ImageSpec("a red square", 1)], s))


@pytest.mark.parametrize("scheduler", ["ddim", "euler-a"])
def test_variation_seed_endpoints_and_ancestral_noise(tiny_model, scheduler):
    s = Settings(steps=6, scheduler=scheduler)
    plain_a, plain_b = tiny_model.generate([ImageSpec("a red square", 1), ImageSpec("a red square", 2)], s)
    zero = tiny_model.generate([ImageSpec("a red square", 1, variation_seed=2, variation_strength=0.0)], s)[0]
    one = tiny_model.generate([ImageSpec("a red square", 1, variation_seed=2, variation_strength=1.0)], s)[0]
    near_b = tiny_model.generate([ImageSpec("a red square", 1, variation_seed=2, variation_strength=0.97)], s)[0]
    assert torch.equal(zero, plain_a) and torch.equal(one, plain_b)
    # the per-step noise of an ancestral sampler is blended too, so strength 0.97 lands next to seed 2's image
    assert (near_b - plain_b).abs().mean() < 0.2 * (plain_a - plain_b).abs().mean()


def test_morph_endpoints_equal_the_plain_prompts_of_different_lengths(tiny_model):
    short, long = "red", "a large blue circle on a white background, centred"
    plain = tiny_model.generate([ImageSpec(short, 5), ImageSpec(long, 5)], FAST)
    ends = tiny_model.generate([ImageSpec(short, 5, morph_to=long, morph_t=0.0),
                                ImageSpec(short, 5, morph_to=long, morph_t=1.0, morph_mode="lerp")], FAST)
    assert torch.equal(ends, plain)
    mid = tiny_model.generate([ImageSpec(short, 5, morph_to=long, morph_t=0.5)], FAST)[0]
    assert not torch.equal(mid, plain[0]) and not torch.equal(mid, plain[1])


def test_parameters_text_round_trips_to_the_same_request(tiny_model):
    spec = ImageSpec("flag: Japan, red sun", 77, variation_seed=78, variation_strength=0.25,
                     morph_to="cat face", morph_t=0.4, morph_mode="lerp")
    settings = Settings(steps=7, guidance_scale=4.5, scheduler="dpmpp-2m-karras", eta=0.0, negative_prompt="dark")
    back_spec, back_settings, fields = spec_from_parameters(tiny_model.parameters_text(spec, settings))
    assert back_spec == spec
    assert back_settings == tiny_model.resolve(settings)
    assert fields["Model hash"] == tiny_model.model_hash and len(fields["Model hash"]) == 10


@pytest.mark.parametrize("settings, message", [
    (Settings(steps=0), "steps"),
    (Settings(guidance_scale=-1), "guidance"),
    (Settings(width=30), "multiple of 8, this model's size step"),
    (Settings(width=12), "multiple of 8"),  # a multiple of the VAE's factor 4 that diffusers' pipeline refuses
    (Settings(width=32.0), "multiple of 8"),
    (Settings(height=0), "height"),
    (Settings(scheduler="karras-magic"), "unknown scheduler"),
])
def test_bad_settings_are_one_line_errors(tiny_model, settings, message):
    with pytest.raises(LdmError, match=message):
        tiny_model.generate([ImageSpec("x", 0)], settings)


def test_non_square_sizes_follow_the_factor(tiny_model):
    assert tiny_model.generate([ImageSpec("x", 0)], Settings(steps=2, width=48, height=24)).shape == (1, 3, 24, 48)


def test_folder_geometry_and_guidance_match_the_loaded_model(tiny_model, tiny_pipeline, tmp_path):
    # scripts check sizes and settings from the folder's files before loading; they must agree with the model
    assert folder_geometry(tiny_pipeline) == (tiny_model.factor, tiny_model.default_size) == (4, 32)
    assert folder_guidance(tiny_pipeline) == tiny_model.default_guidance
    factor, defaults = folder_defaults(tiny_pipeline)
    assert defaults == tiny_model.defaults and factor == tiny_model.factor
    assert resolve_settings(Settings(), factor, defaults) == tiny_model.resolve(Settings())
    wide = tmp_path / "wide"
    shutil.copytree(tiny_pipeline, wide)
    config = json.loads((wide / "vae" / "config.json").read_text())
    config["block_out_channels"] = [*config["block_out_channels"], 64]  # one more level: factor 8
    (wide / "vae" / "config.json").write_text(json.dumps(config))
    assert folder_geometry(wide) == (8, 64)
    (wide / "unet" / "config.json").write_text("{}")
    with pytest.raises(LdmError, match="sample_size"):
        folder_geometry(wide)
