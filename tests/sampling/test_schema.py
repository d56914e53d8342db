"""ldm/sampling/schema.py: every piece made from the schema agrees with it, and a new field is one line."""

import inspect

import pytest

from app.handlers.img2img import Img2ImgHandlers
from app.widgets import request_control
from ldm.cli import Parser, add_request_flags, flag_values
from ldm.errors import LdmError
from ldm.sampling.parameters import ModelStamp, image_parameters, request_text, request_values, spec_from_parameters
from ldm.sampling.requests import ImageSpec, Settings, checked, request_class
from ldm.sampling.schema import DEFAULT_STRENGTH, FIELD, FIELDS, REQUIRED, SETTINGS, SPEC, STAMP, Bound, Field, part
from ldm.sampling.xyz import axes_of
from scripts.sample import parser

# the request fields whose web UI control starts at the schema's value (the others follow the model: steps, size...)
UI_FIELDS = ("negative_prompt", "strength", "mask_blur", "masked_content", "inpaint_area", "inpaint_padding",
             "variation_strength", "lora_scale", "morph_mode")


def _default(f: Field):
    return {SETTINGS: Settings, SPEC: ImageSpec}[f.part].__dataclass_fields__[f.name].default


@pytest.mark.parametrize("f", [f for f in FIELDS if f.part != STAMP], ids=lambda f: f.name)
def test_the_request_classes_take_the_schemas_defaults_and_the_flags_agree(f):
    assert _default(f) is f.default or _default(f) == f.default
    if f.flag:
        given = parser().parse_args(["x"])
        assert getattr(given, f.name) == (None if f.default is REQUIRED else f.default)  # a seed: drawn at random


@pytest.mark.parametrize("name", UI_FIELDS)
def test_the_web_uis_controls_start_at_the_schemas_values(name):
    f = FIELD[name]
    control = request_control(name)
    assert control.label == f.label and control.value == f.ui_value
    assert f.ui_value == (DEFAULT_STRENGTH if name == "strength" else f.default)  # image to image's own default
    parameters = inspect.signature(Img2ImgHandlers.image_to_image).parameters.values()
    handler_defaults = {p.name: p.default for p in parameters}
    if name in handler_defaults:
        assert handler_defaults[name] == f.ui_value  # what an API caller gets when it leaves the value out


def test_every_written_field_comes_back_from_the_png_text():
    spec = ImageSpec("a red apple", 7, variation_seed=9, variation_strength=0.25, morph_to="a pear", morph_t=0.5,
                     morph_mode="lerp", mix=(("a pear", 0.5), ("an apple", -0.5)))
    s = Settings(steps=9, scheduler="dpmpp-2m", guidance_scale=4.5, width=64, height=32, eta=0.3, negative_prompt="n",
                 lora="/runs/x/pytorch_lora_weights.safetensors", lora_scale=0.75, strength=0.6, mask_blur=7,
                 masked_content="fill", inpaint_area="masked", inpaint_padding=12, decoder="tiny")
    text = image_parameters(spec, s, ModelStamp("m", "abc", "fp32"), "lh", "ih", "mh")
    back, settings, raw = spec_from_parameters(text)
    assert back == spec and settings == Settings(**{**vars(s), "lora": "pytorch_lora_weights.safetensors"})
    written = {f.png for f in FIELDS if f.png}
    assert set(raw) == written  # every key the schema names, and nothing else
    assert list(raw) == [f.png for f in FIELDS if f.png]  # in the schema's (AUTOMATIC1111's) order


def test_a_new_field_is_one_line_and_every_piece_follows():
    sigma = Field("sigma_floor", float, 0.0, bound=Bound("sigma floor", 0, 5, whole=False), png="Sigma floor",
                  png_when="nonzero", flag="--sigma-floor", help="lowest noise level", label="Sigma floor",
                  axis="sigma-floor")
    fields = (*FIELDS, sigma)
    settings_class = request_class("Settings", "with a sampler option", part(SETTINGS, fields))
    p = Parser()
    add_request_flags(p, fields)
    assert settings_class(**flag_values(p.parse_args([]), part(SETTINGS, fields))).sigma_floor == 0.0
    given = ["--sigma-floor", "0.5", "--steps", "3", "--scheduler", "ddim", "--guidance", "2", "--width", "8",
             "--height", "8"]
    s = settings_class(**flag_values(p.parse_args(given), part(SETTINGS, fields)))
    assert (s.sigma_floor, s.steps) == (0.5, 3)
    assert request_control(sigma).value == 0.0 and request_control(sigma).label == "Sigma floor"
    with pytest.raises(LdmError, match=r"^sigma floor must be >= 0, got -1.0$"):
        checked(settings_class(sigma_floor=-1.0), part(SETTINGS, fields))
    values = {**vars(s), **vars(ImageSpec("p", 1)), **dict.fromkeys(f.name for f in part(STAMP, fields))}
    text = request_text(values, fields)
    assert "Sigma floor: 0.5" in text and request_values(text, fields)[0]["sigma_floor"] == 0.5
    assert request_values(request_text({**values, "sigma_floor": 0.0}, fields), fields)[0]["sigma_floor"] == 0.0
    axis = axes_of(fields)["sigma-floor"]  # an X/Y/Z plot may vary it, named in the grid by its PNG key
    assert (axis.label, axis.kind, axis.field) == ("Sigma floor", float, "sigma_floor")
