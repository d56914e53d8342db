"""Image to image (SDEdit): the strength's two ends, every scheduler, seeds, PNG parameters, bad inputs."""

import numpy as np
import pytest
import torch
from PIL import Image

from ldm.errors import LdmError
from ldm.sampling.init_image import init_image_from_pil, load_init_image
from ldm.sampling.parameters import png_info, read_png_parameters, spec_from_parameters
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model
from ldm.sampling.schedulers import SCHEDULERS


def _picture(size=32, seed=0):
    # a bright shape on a coloured ground: something a VAE trained on the tiny shapes can carry
    g = torch.Generator().manual_seed(seed)
    img = torch.ones(3, size, size) * (torch.rand(3, 1, 1, generator=g) * 2 - 1)
    img[:, size // 4: 3 * size // 4, size // 4: 3 * size // 4] = torch.rand(3, 1, 1, generator=g) * 2 - 1
    arr = ((img + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
    return Image.fromarray(arr, "RGB")


@pytest.fixture(scope="module")
def init():
    return init_image_from_pil(_picture(), 32, 32)


@pytest.mark.parametrize("scheduler", ["euler-a", "dpmpp-2m"])
def test_strength_one_is_text_to_image_from_the_same_seed(tiny_model, init, scheduler):
    specs = [ImageSpec("a red square", 3), ImageSpec("a blue circle", 4)]
    plain = tiny_model.generate(specs, Settings(steps=4, scheduler=scheduler))
    assert torch.equal(tiny_model.generate(specs, Settings(steps=4, scheduler=scheduler, strength=1.0), init=init),
                       plain)


def test_strength_zero_gives_the_init_image_back_up_to_the_vae_round_trip(tiny_run, init):
    model = load_sampling_model(tiny_run, "cpu", "fp32")
    back = model.generate([ImageSpec("a red square", 1)], Settings(steps=4, strength=0.0), init=init)[0]
    with torch.no_grad():
        round_trip = model.pipe.vae.decode(model.pipe.vae.encode(init.pixels[None]).latent_dist.mean).sample[0]
    target = init.pixels / 2 + 0.5
    vae_error = (round_trip.clamp(-1, 1) / 2 + 0.5 - target).abs().mean()
    assert (back - target).abs().mean() < vae_error + 0.02  # the posterior's sample instead of its mean
    # one step less than a whole step of strength also runs no step
    assert torch.equal(model.generate([ImageSpec("a blue circle", 1)], Settings(steps=4, strength=0.2), init=init)[0],
                       back)


@pytest.mark.parametrize("scheduler", [s for s in SCHEDULERS if s != "lcm"])
def test_every_scheduler_edits_reproducibly_and_the_image_matters(tiny_model, init, scheduler):
    settings = Settings(steps=4, scheduler=scheduler, strength=0.5)
    spec = [ImageSpec("a red square", 9)]
    first = tiny_model.generate(spec, settings, init=init)
    assert torch.equal(tiny_model.generate(spec, settings, init=init), first)
    other = init_image_from_pil(_picture(seed=1), 32, 32)
    assert (tiny_model.generate(spec, settings, init=other) - first).abs().max() > 1e-3


def test_an_edited_image_does_not_depend_on_batch_size_or_position(tiny_model, init):
    specs = [ImageSpec("a red square", s) for s in (5, 6, 7)]
    settings = Settings(steps=4, scheduler="euler-a", strength=0.6)
    together = tiny_model.generate(specs, settings, batch_size=3, init=init)
    alone = torch.cat([tiny_model.generate([sp], settings, init=init) for sp in specs])
    assert torch.equal(together, alone)
    assert not torch.equal(together[0], together[1])  # each seed draws its own noise and posterior sample


def test_the_few_step_student_edits_images(tiny_student):
    init = init_image_from_pil(_picture(), 32, 32)
    spec = [ImageSpec("a red square", 2)]
    assert torch.equal(tiny_student.generate(spec, Settings(steps=2, strength=1.0), init=init),
                       tiny_student.generate(spec, Settings(steps=2)))
    half = tiny_student.generate(spec, Settings(steps=2, strength=0.5), init=init)
    assert half.shape == (1, 3, 32, 32) and (half - tiny_student.generate(spec, Settings(steps=2))).abs().max() > 1e-3


def test_prompt_editing_counts_the_steps_that_run(tiny_model, init):
    settings = Settings(steps=8, strength=0.5)  # 4 steps run: [a:b:2] switches half-way through them
    spec = lambda p: [ImageSpec(p, 3)]  # noqa: E731
    edited = tiny_model.generate(spec("a [red square:blue circle:2]"), settings, init=init)
    assert torch.equal(tiny_model.generate(spec("a [red square:blue circle:0.5]"), settings, init=init), edited)
    assert not torch.equal(tiny_model.generate(spec("a [red square:blue circle:4]"), settings, init=init), edited)


def test_parameters_carry_the_strength_and_re_create_the_image(tiny_model, init, tmp_path):
    spec, settings = ImageSpec("a red square", 12), Settings(steps=4, strength=0.55)
    image = tiny_model.generate([spec], settings, init=init)[0]
    text = tiny_model.parameters_text(spec, settings, init)
    assert "Denoising strength: 0.55, Init image hash: " + init.digest in text
    Image.new("RGB", (4, 4)).save(tmp_path / "p.png", pnginfo=png_info(text))
    back_spec, back_settings, fields = spec_from_parameters(read_png_parameters(tmp_path / "p.png"))
    assert back_settings.strength == 0.55 and fields["Init image hash"] == init.digest
    assert torch.equal(tiny_model.generate([back_spec], back_settings, init=init)[0], image)
    # an init image without a strength takes AUTOMATIC1111's default
    assert "Denoising strength: 0.75" in tiny_model.parameters_text(spec, Settings(steps=4), init)


def test_init_images_are_fitted_like_training_data(tmp_path):
    wide = np.zeros((20, 60, 4), np.uint8)
    wide[:, :20] = (255, 0, 0, 255)
    wide[:, 20:40] = (0, 0, 255, 0)  # transparent: white
    wide[:, 40:] = (0, 255, 0, 255)
    Image.fromarray(wide, "RGBA").save(tmp_path / "wide.png")
    init = load_init_image(tmp_path / "wide.png", 16, 16)  # covers 16x16 and keeps the centre: the white third
    assert init.size == (16, 16)
    assert torch.allclose(init.pixels[:, :, 2:-2], torch.ones(3, 16, 12), atol=0.02)  # edges: bicubic's reach
    assert load_init_image(tmp_path / "wide.png", 48, 16).pixels[:, 8, 2].tolist() == pytest.approx([1, -1, -1],
                                                                                                     abs=0.02)
    assert load_init_image(tmp_path / "wide.png", 16, 16).digest == init.digest


def test_bad_init_images_and_strengths_are_one_line_errors(tiny_model, init, tmp_path):
    (tmp_path / "notes.txt").write_text("not a picture")
    cases = [
        (lambda: load_init_image(tmp_path / "missing.png", 32, 32), "init image .*missing.png: file not found"),
        (lambda: load_init_image(tmp_path / "notes.txt", 32, 32), "init image .*notes.txt: not an image"),
        (lambda: tiny_model.generate([ImageSpec("x", 1)], Settings(steps=2, strength=0.5)), "needs an init image"),
        (lambda: tiny_model.generate([ImageSpec("x", 1)], Settings(steps=2, strength=1.5), init=init),
         r"denoising strength must be in \[0, 1\]"),
        (lambda: tiny_model.generate([ImageSpec("x", 1)], Settings(steps=2, width=64), init=init),
         "the init image is 32x32 but the request is 64x32"),
    ]
    for call, message in cases:
        with pytest.raises(LdmError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_a_clip_stable_diffusion_folder_edits_and_inpaints(tmp_path, init):
    from support import make_random_pipeline, make_tiny_clip

    from ldm.sampling.inpaint import blurred, mask_from_pil

    tokenizer, encoder = make_tiny_clip(tmp_path / "clip")
    model = load_sampling_model(make_random_pipeline(tmp_path / "sd", text_encoder=encoder, tokenizer=tokenizer),
                                "cpu", "bf16")
    spec = [ImageSpec("ab cd", 4)]
    assert torch.equal(model.generate(spec, Settings(steps=3, strength=1.0), init=init),
                       model.generate(spec, Settings(steps=3)))
    painted = Image.new("L", (32, 32), 0)
    painted.paste(255, (8, 8, 20, 20))
    mask = mask_from_pil(painted, 32, 32)
    out = model.generate(spec, Settings(steps=3, strength=0.8), init=init, mask=mask)[0]
    outside = blurred(mask, 4) == 0
    assert torch.equal(out * outside, (init.pixels / 2 + 0.5) * outside)
