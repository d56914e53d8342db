"""The Image to image tab's handlers on the tiny pipeline (inpainting where strokes are painted): no server,
no Gradio."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from app.handlers.img2img import Img2ImgHandlers
from ldm.errors import LdmError
from ldm.sampling.parameters import read_png_parameters


@pytest.fixture
def handlers(shared):
    return Img2ImgHandlers(shared)


def _editor(tmp_path, strokes: bool, layer_size=(40, 40)):
    picture = Image.new("RGB", (40, 40), (40, 90, 200))
    picture.save(tmp_path / "background.png")
    layers = []
    if strokes:
        layer = Image.new("RGBA", layer_size, (0, 0, 0, 0))
        layer.paste((255, 255, 255, 255), (10, 10, 26, 26))
        layer.save(tmp_path / "layer.png")
        layers = [{"path": str(tmp_path / "layer.png")}]
    return {"background": {"path": str(tmp_path / "background.png"), "orig_name": "mine.png"}, "layers": layers}


def test_image_to_image_and_inpainting_from_the_editor(handlers, tmp_path):
    gallery, text, paths = handlers.image_to_image(_editor(tmp_path, False), "a red square", seed=3, steps=2,
                                                   strength=0.5, num_images=2)
    assert [c for _, c in gallery] == ["seed 3", "seed 4"] and "Denoising strength: 0.5" in text
    assert "Mask hash" not in read_png_parameters(paths[0])
    _, text, paths = handlers.image_to_image(_editor(tmp_path, True), "a red square", seed=3, steps=2,
                                             strength=0.9, mask_blur=0, masked_content="fill")
    assert "Masked content: fill" in text and "Mask hash" in read_png_parameters(paths[0])
    out = np.asarray(Image.open(paths[0]).convert("RGB"))
    assert (out[:6, :6] == (40, 90, 200)).all()  # far from the strokes: the picture's own pixels


@pytest.mark.parametrize("editor, kwargs, message", [
    (None, {}, "upload an image to start from"),
    ({"background": None, "layers": []}, {}, "upload an image to start from"),
    ("strokes-40x20", {}, "the mask layer is 40x20 but the image is 40x40"),
    ("plain", {"strength": 2}, "denoising strength must be a number between 0 and 1"),
    ("plain", {"masked_content": "paint"}, "unknown masked content 'paint'"),
    ("plain", {"mask_blur": 99}, "mask blur must be a whole number between 0 and 64"),
])
def test_image_to_image_refuses_bad_input_in_one_line(handlers, tmp_path, editor, kwargs, message):
    if editor == "plain":
        editor = _editor(tmp_path, False)
    elif editor == "strokes-40x20":
        editor = _editor(tmp_path, True, (40, 20))
    with pytest.raises(LdmError, match=message):
        handlers.image_to_image(editor, "a red square", seed=1, steps=2, **kwargs)
