"""Inpainting with any text-to-image model and with a 9-channel inpainting UNet: what stays, what changes."""

import pytest
import torch
from PIL import Image, ImageDraw
from support import make_random_pipeline

from ldm.errors import LdmError
from ldm.sampling import denoise
from ldm.sampling.init_image import init_image_from_pil
from ldm.sampling.inpaint import blurred, crop_box, fill, load_mask, mask_from_pil, mask_from_strokes
from ldm.sampling.parameters import spec_from_parameters
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.sampler import load_sampling_model
from ldm.sampling.schema import INPAINT_AREAS, MASKED_CONTENT


def _picture(size=32):
    img = Image.new("RGB", (size, size), (40, 90, 200))
    ImageDraw.Draw(img).rectangle((4, 4, size - 5, size // 2), fill=(230, 40, 40))
    return img


def _mask(size=32, box=(10, 12, 22, 26)):
    img = Image.new("L", (size, size), 0)
    ImageDraw.Draw(img).rectangle(box, fill=255)
    return mask_from_pil(img, size, size)


@pytest.fixture(scope="module")
def init():
    return init_image_from_pil(_picture(), 32, 32)


@pytest.mark.parametrize("content", MASKED_CONTENT)
@pytest.mark.parametrize("area", INPAINT_AREAS)
def test_only_the_mask_changes(tiny_model, init, content, area):
    mask = _mask()
    settings = Settings(steps=4, strength=0.9, masked_content=content, inpaint_area=area, inpaint_padding=4)
    out = tiny_model.generate([ImageSpec("a red square", 3)], settings, init=init, mask=mask)[0]
    original = init.pixels / 2 + 0.5
    outside = blurred(mask, settings.mask_blur) == 0
    assert torch.equal(out * outside, original * outside)  # the init image's own pixels, not a VAE round trip
    inside = mask.weights >= 0.5
    assert ((out - original).abs() * inside).max() > 0.05
    assert torch.equal(tiny_model.generate([ImageSpec("a red square", 3)], settings, init=init, mask=mask)[0], out)


def test_the_known_latents_are_kept_up_to_the_vae_round_trip(tiny_run, monkeypatch):
    # before the result is pasted into the init image, the model's own output outside the mask is the init
    # image through the VAE: diffusers re-noises the known latents to every step's level and keeps them
    from ldm.data.shapes import make_shape

    picture, caption = make_shape(5, 32)  # the kind of image its VAE learnt
    init = init_image_from_pil(picture, 32, 32)
    model = load_sampling_model(tiny_run, "cpu", "fp32")
    monkeypatch.setattr(denoise, "paste_back", lambda images, job: images)
    mask = _mask()
    raw = model.generate([ImageSpec(caption, 1)], Settings(steps=8, strength=1.0), init=init, mask=mask)[0]
    with torch.no_grad():
        round_trip = model.pipe.vae.decode(model.pipe.vae.encode(init.pixels[None]).latent_dist.mean).sample[0]
    original, far = init.pixels / 2 + 0.5, blurred(mask, 6) < 0.02
    vae_error = ((round_trip.clamp(-1, 1) / 2 + 0.5 - original).abs() * far).sum() / far.sum() / 3
    raw_error = ((raw - original).abs() * far).sum() / far.sum() / 3
    free = model.generate([ImageSpec(caption, 1)], Settings(steps=8))[0]  # what the model draws unheld
    free_error = ((free - original).abs() * far).sum() / far.sum() / 3
    assert raw_error < vae_error + 0.03 and raw_error < free_error / 2, (raw_error, vae_error, free_error)


def test_an_all_white_mask_at_strength_one_is_text_to_image(tiny_model, init):
    white = mask_from_pil(Image.new("L", (32, 32), 255), 32, 32)
    spec = [ImageSpec("a blue circle", 8)]
    settings = Settings(steps=4, scheduler="euler", mask_blur=0)  # ancestral: the posterior's draw shifts its noise
    inpainted = tiny_model.generate(spec, Settings(**{**settings.__dict__, "strength": 1.0}), init=init, mask=white)
    # diffusers' inpainting loop differs from text to image's in rounding only (a level or two of 255)
    assert (inpainted - tiny_model.generate(spec, settings)).abs().max() < 3 / 255


def test_inpainting_does_not_depend_on_batch_size(tiny_model, init):
    mask, settings = _mask(), Settings(steps=4, strength=0.8, masked_content="latent-noise")
    specs = [ImageSpec("a red square", s) for s in (1, 2, 3)]
    together = tiny_model.generate(specs, settings, batch_size=3, init=init, mask=mask)
    assert torch.equal(together, torch.cat([tiny_model.generate([sp], settings, init=init, mask=mask) for sp in specs]))


def test_a_nine_channel_inpainting_unet_is_used_natively(tmp_path, init):
    from diffusers import UNet2DConditionModel

    folder = make_random_pipeline(tmp_path / "inpainting")
    unet = UNet2DConditionModel.from_pretrained(folder / "unet")
    UNet2DConditionModel.from_config(unet.config, in_channels=9).save_pretrained(folder / "unet")
    model = load_sampling_model(folder, "cpu", "bf16")
    assert model.inpainting_unet
    mask = _mask()
    out = model.generate([ImageSpec("a red square", 2)], Settings(steps=3, strength=1.0), init=init, mask=mask)[0]
    outside = blurred(mask, 4) == 0
    assert torch.equal(out * outside, (init.pixels / 2 + 0.5) * outside)
    with pytest.raises(LdmError, match="inpainting model"):
        model.generate([ImageSpec("a red square", 2)], Settings(steps=3))


def test_parameters_name_the_mask_and_re_create_the_image(tiny_model, init):
    mask, spec = _mask(), ImageSpec("a red square", 4)
    settings = Settings(steps=4, strength=0.7, mask_blur=2, masked_content="fill", inpaint_area="masked",
                        inpaint_padding=6)
    text = tiny_model.parameters_text(spec, settings, init, mask)
    assert ("Mask blur: 2, Masked content: fill, Inpaint area: Only masked, Masked area padding: 6, Mask hash: "
            + mask.digest) in text
    back_spec, back_settings, _ = spec_from_parameters(text)
    assert back_settings == tiny_model.request(settings, init, mask)
    assert torch.equal(tiny_model.generate([back_spec], back_settings, init=init, mask=mask),
                       tiny_model.generate([spec], settings, init=init, mask=mask))


def test_fill_takes_colours_from_around_the_mask():
    pixels = torch.zeros(3, 16, 16)
    pixels[0, :, :8], pixels[2, :, 8:] = 1, 1  # red left, blue right
    mask = torch.zeros(1, 16, 16)
    mask[:, 4:12, 6:10] = 1
    filled = fill(pixels, mask)
    assert torch.equal(filled * (1 - mask), pixels * (1 - mask))
    assert filled[0, 8, 6] > filled[2, 8, 6] and filled[2, 8, 9] > filled[0, 8, 9]  # nearer colour wins
    assert ((filled[0] + filled[2]) * mask[0] - mask[0]).abs().max() < 1e-5  # only red and blue mixed in


def test_the_only_masked_box_holds_the_mask_with_padding_at_the_picture_shape():
    mask = torch.zeros(1, 40, 80)
    mask[:, 10:20, 30:40] = 1
    left, top, right, bottom = crop_box(mask, 5, 2.0)
    assert (right - left) == 2 * (bottom - top) and left <= 25 and right >= 45 and top <= 5 and bottom >= 25
    assert 0 <= left and right <= 80 and 0 <= top and bottom <= 40
    corner = torch.zeros(1, 40, 80)
    corner[:, 36:, 76:] = 1
    assert crop_box(corner, 8, 2.0)[2:] == (80, 40)  # pushed inside the picture


def test_bad_masks_are_one_line_errors(tiny_model, init, tmp_path):
    _picture(48).save(tmp_path / "start.png")
    Image.new("L", (40, 40), 255).save(tmp_path / "small.png")
    cases = [
        (lambda: load_mask(tmp_path / "small.png", 32, 32, tmp_path / "start.png"),
         "mask .*small.png is 40x40 but the init image is 48x48"),
        (lambda: load_mask(tmp_path / "none.png", 32, 32), "mask .*none.png: file not found"),
        (lambda: tiny_model.generate([ImageSpec("x", 1)], Settings(steps=2), init=init,
                                     mask=mask_from_pil(Image.new("L", (32, 32), 0), 32, 32)), "the mask is empty"),
        (lambda: tiny_model.generate([ImageSpec("x", 1)], Settings(steps=2), mask=_mask()), "a mask needs an init"),
        (lambda: tiny_model.generate([ImageSpec("x", 1)], Settings(steps=2, masked_content="blur"), init=init,
                                     mask=_mask()), "unknown masked content 'blur'"),
        (lambda: tiny_model.generate([ImageSpec("x", 1)], Settings(steps=2), init=init, mask=_mask(16, (2, 2, 9, 9))),
         "the mask is 16x16 but the init image is 32x32"),
    ]
    for call, message in cases:
        with pytest.raises(LdmError, match=message) as error:
            call()
        assert "\n" not in str(error.value)


def test_an_editors_painted_layers_are_the_mask_where_any_of_them_is_opaque(tmp_path):
    layers = []
    for k, box in enumerate(((0, 0, 8, 8), (24, 24, 32, 32))):
        layer = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
        layer.paste((255, 255, 255, 255), box)
        layer.save(tmp_path / f"layer-{k}.png")
        layers.append((tmp_path / f"layer-{k}.png", f"layer {k}"))
    mask = mask_from_strokes((32, 32), layers, 32, 32)
    assert mask.weights.shape == (1, 32, 32) and mask.weights.sum() == 2 * 8 * 8  # both layers' strokes
    assert mask.weights[0, 0, 0] == 1 and mask.weights[0, -1, -1] == 1 and mask.weights[0, 16, 0] == 0
    assert mask_from_strokes((32, 32), layers, 16, 16).weights.shape == (1, 16, 16)  # fitted as the picture is
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(tmp_path / "empty.png")
    assert mask_from_strokes((32, 32), [(tmp_path / "empty.png", "empty")], 16, 16) is None  # nothing painted
    assert mask_from_strokes((32, 32), [], 16, 16) is None
    with pytest.raises(LdmError, match="^the mask layer is 32x32 but the image is 32x16$"):
        mask_from_strokes((32, 16), layers[:1], 16, 16)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(LdmError, match="^cannot use the mask layer my layer: not an image$"):
        mask_from_strokes((32, 32), [(tmp_path / "notes.png", "my layer")], 16, 16)
