"""The PNG Info tab's handlers, called as plain functions on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import pytest
from PIL import Image

from app.handlers.generate import GenerateHandlers
from app.handlers.handoffs import gallery_image
from app.handlers.png_info import PngInfoHandlers
from ldm.errors import LdmError
from ldm.sampling.parameters import read_png_parameters


def test_png_info_reads_the_fields_and_sends_them_on(shared, tmp_path):
    _, _, paths = GenerateHandlers(shared).generate("a (red:1.2) square", negative_prompt="blue", seed=21, steps=3,
                                                    num_images=1)
    text, rows = PngInfoHandlers.png_info({"path": paths[0], "orig_name": "x.png"})
    assert text == read_png_parameters(paths[0])
    assert rows[:3] == [["Prompt", "a (red:1.2) square"], ["Negative prompt", "blue"], ["Steps", "3"]]
    assert PngInfoHandlers(shared).png_fields(text) == ("a (red:1.2) square", "blue", 21, 3, 3.0, "euler-a", 32,
                                                        32, shared.model.name, "full")
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(LdmError, match="^plain.png carries no generation parameters"):
        PngInfoHandlers.png_info({"path": str(tmp_path / "plain.png"), "orig_name": "plain.png"})
    assert gallery_image(None, [{"image": {"path": paths[0]}, "caption": "seed 21"}]) == paths[0]
    with pytest.raises(LdmError, match="generate an image first"):
        gallery_image(None, [])


@pytest.mark.parametrize("field, value, message", [
    ("Seed", "-99999999999999999999", "PNG parameters: seed must be a whole number between 0 and 4294967295"),
    ("Seed", "99999999999999999999", "PNG parameters: seed must be"),
    ("Steps", "100000", "PNG parameters: steps must be a whole number between 1 and 100"),
    ("CFG scale", "1e309", "PNG parameters: guidance scale must be a number between 0 and 30"),
    ("Size", "100000x32", "PNG parameters: width must be between 8 and 128"),
])
def test_a_png_value_no_control_can_hold_is_refused_in_one_line(shared, field, value, message):
    # a seed beyond 64 bits wedged Gradio's event stream (the fields spun until a reload)
    fields = {"Steps": 3, "Sampler": "Euler a", "CFG scale": 3, "Seed": 1, "Size": "32x32", field: value}
    text = "a red square\n" + ", ".join(f"{k}: {v}" for k, v in fields.items())
    with pytest.raises(LdmError, match=message) as caught:
        PngInfoHandlers(shared).png_fields(text)
    assert "\n" not in str(caught.value)
    with pytest.raises(LdmError, match="prompt is longer than 500"):
        PngInfoHandlers(shared).png_fields("x" * 501 + "\nSteps: 3, Seed: 1")
