"""The Latent space tab's handlers, called as plain functions on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from app.handlers.latent import LatentHandlers
from app.handlers.shared import Shared
from ldm.data.images import to_tensor
from ldm.data.shapes import make_shape
from ldm.errors import LdmError
from ldm.explore import DatasetView


@pytest.fixture
def handlers(shared):
    return LatentHandlers(shared)


def test_latent_map_pick_interpolate_and_traverse(handlers):
    svg, drawn = handlers.draw_map("latents", "pca", 8, [])
    indices = drawn["indices"]
    assert svg.count('class="pt"') == 8 and len(indices) == 8 and 'r="7"' not in svg
    path, picks, text, svg = handlers.pick(drawn, [], 2)
    assert Image.open(path).size == (32, 32) and picks == [indices[2]] and text.startswith("picked:")
    assert svg.count('r="7"') == 1  # the map marks the pick at once, without a redraw
    _, picks, text, svg = handlers.pick(drawn, picks, 5)
    assert picks == [indices[2], indices[5]] and "→" in text and svg.count('r="7"') == 2
    gif = handlers.interpolate_picks(drawn, picks, 3)
    assert Image.open(gif).n_frames == 3
    still = Image.open(handlers.traverse(picks, 0, 0, 0, 0)).tobytes()
    assert Image.open(handlers.traverse(picks, 3, 0, 0, 0)).tobytes() != still  # a direction moves the image


DRAWN = {"space": "latents", "method": "pca", "indices": [0, 1, 2]}


@pytest.mark.parametrize("call, message", [
    (lambda h: h.draw_map("latents", "spiral", 8, []), "projection must be one of"),
    (lambda h: h.draw_map("latents", "pca", 2, []), "points must be a whole number between 3"),
    (lambda h: h.pick(DRAWN, [], 7), "click on a point of the map"),
    (lambda h: h.pick(DRAWN, [], None), "click on a point of the map"),
    (lambda h: h.pick(None, [], 0), "draw the map first"),
    (lambda h: h.interpolate_picks(DRAWN, [1], 3), "pick two points"),
    (lambda h: h.traverse([1], 4, 0, 0, 0), "between -3 and 3"),
    (lambda h: h.traverse([], 1, 0, 0, 0), "pick a point"),
])
def test_latent_space_refuses_out_of_order_clicks(handlers, call, message):
    with pytest.raises(LdmError, match=message):
        call(handlers)


def test_without_a_dataset_the_latent_tab_says_how_to_get_one(tiny_model, tmp_path):
    with pytest.raises(LdmError, match="start the app with --data DIR"):
        LatentHandlers(Shared(tiny_model, None, tmp_path)).draw_map("latents", "pca", 8, [])


def test_the_latent_tab_works_from_a_map_file_without_the_images(tiny_model, tmp_path):
    shapes = [make_shape(i, 32) for i in range(10)]
    DatasetView(torch.stack([to_tensor(image) for image, _ in shapes]), [caption for _, caption in shapes],
                tiny_model).save_map(tmp_path / "map.safetensors")
    view = DatasetView.from_map(tmp_path / "map.safetensors", tiny_model)
    h = LatentHandlers(Shared(tiny_model, view, tmp_path / "out"))
    svg, drawn = h.draw_map("latents", "pca", 8, [])
    assert svg.count('class="pt"') == 8
    path, picks, text, _ = h.pick(drawn, [], 2)
    assert Image.open(path).size == (32, 32) and picks == [drawn["indices"][2]]
    assert text == f"picked: “{shapes[picks[0]][1]}”"
    assert Image.open(h.map_point(drawn, 120.0, 300.0)).size == (32, 32)


def test_a_projection_that_is_not_installed_is_refused_in_one_line(handlers, monkeypatch):
    monkeypatch.setattr("app.handlers.latent.available_projections", lambda: ("pca", "tsne"))  # as without umap-learn
    with pytest.raises(LdmError, match="projection must be one of pca, tsne") as caught:
        handlers.draw_map("latents", "umap", 8, [])
    assert "\n" not in str(caught.value)
