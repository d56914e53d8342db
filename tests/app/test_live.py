"""The live controls' handlers on the tiny pipeline with a tiny student: one image per call, from the student
at its own defaults, reproducible, bounded; the map under the pointer; no server, no Gradio."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from app.handlers import checks
from app.handlers.animate import AnimateHandlers
from app.handlers.generate import GenerateHandlers
from app.handlers.latent import LatentHandlers
from app.handlers.png_info import PngInfoHandlers
from app.handlers.shared import Shared
from ldm.data.images import to_tensor
from ldm.data.shapes import make_shape
from ldm.errors import LdmError
from ldm.explore import MAP_PAD, MAP_SIZE, DatasetView
from ldm.sampling.parameters import read_png_parameters, spec_from_parameters
from ldm.sampling.requests import ImageSpec


@pytest.fixture
def shared(tiny_model, tiny_student, tmp_path):
    shapes = [make_shape(i, 32) for i in range(12)]
    view = DatasetView(torch.stack([to_tensor(image) for image, _ in shapes]), [caption for _, caption in shapes],
                       tiny_model)
    return Shared(tiny_model, view, tmp_path, live=tiny_student)


def _pixels(path: str) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_live_generate_uses_the_student_at_its_defaults_and_is_reproducible(shared, tiny_student):
    path = GenerateHandlers(shared).live_generate("a red square", seed=5)
    text = read_png_parameters(path)
    assert "Steps: 2" in text and "Sampler: LCM" in text and "Seed: 5" in text
    assert np.array_equal(_pixels(path), _pixels(GenerateHandlers(shared).live_generate("a red square", seed=5)))
    assert not np.array_equal(_pixels(path), _pixels(GenerateHandlers(shared).live_generate("a red square", seed=6)))
    spec, settings, _ = spec_from_parameters(text)  # --from-png re-creates the live frame
    again = tiny_student.generate([spec], settings)[0]
    assert np.abs((again.permute(1, 2, 0).numpy() * 255).round() - _pixels(path)).max() <= 1


def test_variation_and_concept_strength_move_the_image_and_are_written_down(shared):
    base = _pixels(GenerateHandlers(shared).live_generate("a red square", seed=5))
    varied = GenerateHandlers(shared).live_generate("a red square", seed=5, variation_seed=9, variation_strength=0.5)
    assert "Variation seed: 9" in read_png_parameters(varied) and not np.array_equal(base, _pixels(varied))
    moved = GenerateHandlers(shared).live_generate("a red square", seed=5, concept_from="a red square",
                                                   concept_to="a blue circle", concept_strength=1.0)
    text = read_png_parameters(moved)
    assert "Prompt mix" in text and not np.array_equal(base, _pixels(moved))
    spec, _, _ = spec_from_parameters(text)
    assert spec.mix == (("a blue circle", 1.0), ("a red square", -1.0))
    # the full concept step from a prompt to another lands on the other prompt's conditioning
    same = GenerateHandlers(shared).live_generate("a blue circle", seed=5)
    assert np.abs(_pixels(moved) - _pixels(same)).max() <= 2


@pytest.mark.parametrize("kwargs, message", [
    ({"variation_strength": 1.5}, "variation strength must be a number between 0 and 1"),
    ({"concept_strength": 4}, "prompt mix weight must be a number between -3 and 3"),
    ({"concept_strength": 0.5, "concept_to": ""}, "needs both of its prompts"),
    ({"seed": -3}, "seed must be"),
    ({"guidance": float("nan")}, "guidance scale"),
])
def test_live_generate_refuses_bad_values_in_one_line(shared, kwargs, message):
    with pytest.raises(LdmError, match=message):
        GenerateHandlers(shared).live_generate("a red square", **kwargs)


def test_walk_and_morph_frames_land_on_their_keyframes(shared, tiny_student):
    first = AnimateHandlers(shared).walk_frame("a red square", "3, 8", 0.0)
    last = AnimateHandlers(shared).walk_frame("a red square", "3, 8", 1.0)
    middle = AnimateHandlers(shared).walk_frame("a red square", "3, 8", 0.5)
    assert "Seed: 3" in read_png_parameters(first) and "Seed: 8" in read_png_parameters(last)
    assert "Variation seed: 8" in read_png_parameters(middle)
    plain = GenerateHandlers(shared).live_generate("a red square", seed=8)
    assert np.array_equal(_pixels(last), _pixels(plain))
    morph = AnimateHandlers(shared).morph_frame("a red square\na blue circle", 4, 0.25)
    assert "Morph to: a blue circle" in read_png_parameters(morph)
    with pytest.raises(LdmError, match="position must be a number between 0 and 1"):
        AnimateHandlers(shared).walk_frame("a red square", "3, 8", 1.5)
    with pytest.raises(LdmError, match="give between 2 and 8 prompts"):
        AnimateHandlers(shared).morph_frame("one prompt", 4, 0.5)


def test_the_live_morph_frame_blends_as_the_interpolation_choice_says(shared):
    handlers = AnimateHandlers(shared)
    auto = handlers.morph_frame("a red square\na blue circle", 4, 0.5)
    slerp = handlers.morph_frame("a red square\na blue circle", 4, 0.5, "slerp")
    assert "Morph mode: predictions" in read_png_parameters(auto)  # the student's own choice
    assert "Morph mode: slerp" in read_png_parameters(slerp)
    assert not np.array_equal(_pixels(auto), _pixels(slerp))
    spec, settings, _ = spec_from_parameters(read_png_parameters(slerp))
    assert spec.morph_mode == "slerp" and spec.morph_t == 0.5
    with pytest.raises(LdmError, match="interpolation"):
        handlers.morph_frame("a red square\na blue circle", 4, 0.5, "cubic")


def test_the_live_walk_frame_follows_the_loop_back_to_the_first_seed(shared):
    handlers = AnimateHandlers(shared)
    back = handlers.walk_frame("a red square", "3, 8", 1.0, loop=True)
    assert "Seed: 3" in read_png_parameters(back) and "Variation" not in read_png_parameters(back)
    # a looped walk of two seeds is at the second seed halfway, and heads back to the first after it
    assert "Seed: 8" in read_png_parameters(handlers.walk_frame("a red square", "3, 8", 0.5, loop=True))
    returning = read_png_parameters(handlers.walk_frame("a red square", "3, 8", 0.75, loop=True))
    assert "Seed: 8" in returning and "Variation seed: 3" in returning


def _svg_position(xy: np.ndarray, k: int) -> tuple[float, float]:
    lo, hi = xy.min(0), xy.max(0)
    pos = MAP_PAD + (xy[k] - lo) / np.where(hi > lo, hi - lo, 1) * (MAP_SIZE - 2 * MAP_PAD)
    return float(pos[0]), float(MAP_SIZE - pos[1])


def test_the_latent_map_decodes_the_point_under_the_pointer(shared):
    svg, drawn = LatentHandlers(shared).draw_map("latents", "pca", 12, [])
    view = shared.view
    xy = view.projection("latents", "pca", drawn["indices"]).xy
    a, b = (_pixels(LatentHandlers(shared).map_point(drawn, *_svg_position(xy, k))) for k in (0, 5))
    assert not np.array_equal(a, b)  # the image follows the pointer
    # the inverse PCA of a point's own position is that latent's projection onto the map's plane
    latent = view.latent_at("pca", drawn["indices"], *_svg_position(xy, 0))
    pca = view.projection("latents", "pca", drawn["indices"]).pca
    flat = view.latents[drawn["indices"][0]].flatten().double().numpy()
    expected = pca.inverse_transform(pca.transform(flat[None]))[0]
    assert np.allclose(latent.flatten().numpy(), expected, atol=1e-4)


def test_tsne_and_caption_maps_blend_the_nearest_points(shared):
    _, drawn = LatentHandlers(shared).draw_map("latents", "tsne", 12, [])
    view = shared.view
    xy = view.projection("latents", "tsne", drawn["indices"]).xy
    exact = view.latent_at("tsne", drawn["indices"], *_svg_position(xy, 3))
    assert torch.allclose(exact, view.latents[drawn["indices"][3]])  # on a point: that point's latent
    _, drawn = LatentHandlers(shared).draw_map("captions", "pca", 12, [])
    xy = view.projection("captions", "pca", drawn["indices"]).xy
    x, y = _svg_position(xy, 2)
    first, mix = view.captions_at("pca", drawn["indices"], x + 7, y)
    assert first in view.captions and abs(sum(w for _, w in mix)) < 1e-6  # weights of a blend sum to one
    path = LatentHandlers(shared).map_point(drawn, x + 7, y)
    assert "Prompt mix" in read_png_parameters(path) and "Sampler: LCM" in read_png_parameters(path)


def test_map_point_refuses_bad_input_in_one_line(shared):
    with pytest.raises(LdmError, match="draw the map first"):
        LatentHandlers(shared).map_point(None, 10, 10)
    _, drawn = LatentHandlers(shared).draw_map("latents", "pca", 12, [])
    with pytest.raises(LdmError, match="map position must be a number"):
        LatentHandlers(shared).map_point(drawn, float("nan"), 3)


@pytest.mark.parametrize("drawn, message", [
    ({"space": "latents", "method": "pca", "indices": [0, 1, 99]}, "map points must be indices of the dataset's 12"),
    ({"space": "latents", "method": "pca", "indices": [0, 1, -1]}, "map points must be indices"),
    ({"space": "latents", "method": "pca", "indices": [0, 1, "2"]}, "map points must be indices"),
    ({"space": "latents", "method": "pca", "indices": [0, 1, True]}, "map points must be indices"),
    ({"space": "latents", "method": "pca", "indices": [1, 1, 2]}, "a map's points must differ"),
    ({"space": "latents", "method": "pca", "indices": [0, 1]}, "a map holds 3 to 1500 points"),
    ({"space": "latents", "method": "pca", "indices": list(range(3599))}, "a map holds 3 to 1500 points"),
    ({"space": "latents", "method": "pca", "indices": "0,1,2"}, "a map holds 3 to 1500 points"),
    ({"space": "pixels", "method": "pca", "indices": [0, 1, 2]}, "map space must be one of captions, latents"),
    ({"space": ["latents"], "method": "pca", "indices": [0, 1, 2]}, "map space must be one of the listed names"),
    ({"space": "latents", "method": "magic", "indices": [0, 1, 2]}, "projection must be one of pca, tsne, umap"),
    ({"space": "latents", "method": None, "indices": [0, 1, 2]}, "projection must be one of the listed names"),
    # a t-SNE map nobody drew would be fitted inside a live call (3,599 points took 38.6 s)
    ({"space": "latents", "method": "tsne", "indices": [0, 1, 2, 3]}, "press Draw map again"),
    (["latents"], "draw the map first"),
])
def test_a_made_up_map_is_refused_in_one_line(shared, drawn, message):
    with pytest.raises(LdmError, match=message) as caught:
        LatentHandlers(shared).map_point(drawn, 10, 10)
    assert "\n" not in str(caught.value)
    if drawn != ["latents"] and "Draw map" not in message:  # the same checks guard the other map shared
        with pytest.raises(LdmError, match=message):
            LatentHandlers(shared).pick(drawn, [], 0)


def test_picks_sent_back_are_checked(shared):
    _, drawn = LatentHandlers(shared).draw_map("latents", "pca", 12, [])
    for picks in ([0, 50], [0, "1"], "01"):
        with pytest.raises(LdmError, match="picks must be indices of the dataset's 12 images"):
            LatentHandlers(shared).traverse(picks, 1.0)
        with pytest.raises(LdmError, match="picks must be indices"):
            LatentHandlers(shared).interpolate_picks(drawn, picks, 4)


def test_without_a_student_the_live_controls_use_the_model(tiny_model, tmp_path):
    shared = Shared(tiny_model, None, tmp_path)
    text = read_png_parameters(GenerateHandlers(shared).live_generate("a red square", seed=1))
    assert "Sampler: Euler a" in text and "Steps: 14" in text
    assert shared.models.live is tiny_model and isinstance(ImageSpec("x", 1).mix, tuple)


def test_the_live_model_defaults_to_the_shipped_student_beside_the_shipped_model(tiny_pipeline):
    from app.server import live_folder
    from ldm.sampling.requests import DEFAULT_MODEL, DEFAULT_STUDENT

    assert live_folder(str(DEFAULT_MODEL), None) == str(DEFAULT_STUDENT)
    assert live_folder(str(tiny_pipeline), None) is None  # another model: it renders its own live images
    assert live_folder(str(DEFAULT_MODEL), "none") is None and live_folder(str(DEFAULT_MODEL), "x/y") == "x/y"


def test_generate_renders_with_the_student_when_it_is_picked(shared, tiny_model, tiny_student):
    # Generate's Model picker: the full model by default, the few-step student by name, each at its own defaults
    assert list(shared.models.by_name) == [tiny_model.name, tiny_student.name]
    _, _, (full,) = GenerateHandlers(shared).generate("a red square", seed=3, num_images=1)
    _, _, (fast,) = GenerateHandlers(shared).generate("a red square", seed=3, num_images=1, model=tiny_student.name)
    assert "Sampler: LCM" in read_png_parameters(fast) and "Steps: 2" in read_png_parameters(fast)
    assert "Sampler: LCM" not in read_png_parameters(full)
    alone = tiny_student.generate([ImageSpec("a red square", 3)], tiny_student.resolve(checks.settings(
        tiny_student, None, None, None)))[0]
    assert np.abs((alone.permute(1, 2, 0).numpy() * 255).round() - _pixels(fast)).max() <= 1
    with pytest.raises(LdmError, match="unknown model 'other': this server has"):
        GenerateHandlers(shared).generate("a red square", model="other")
    with pytest.raises(LdmError, match="must be one of the listed names"):
        GenerateHandlers(shared).generate("a red square", model=3)


def test_a_students_png_sends_the_student_back_to_generate_and_xyz_plots_with_the_picked_model(shared):
    student = next(name for name, m in shared.models.by_name.items() if m.is_student)
    _, text, _ = GenerateHandlers(shared).generate("a red square", seed=3, num_images=1, model=student)
    fields = PngInfoHandlers(shared).png_fields(text)
    assert fields[-2:] == (student, "full") and fields[2:6] == (3, 2, shared.models.live.defaults.guidance, "lcm")
    _, text, _ = GenerateHandlers(shared).generate("a red square", seed=3, steps=2, num_images=1)
    assert PngInfoHandlers(shared).png_fields(text)[-2] == shared.model.name
    _, cells = GenerateHandlers(shared).xyz_plot("a red square", seed=5, steps=2, guidance=1, scheduler="lcm",
                                                 x_axis="seed=1,2", model=student)
    assert "Sampler: LCM" in read_png_parameters(cells[0])
    assert f"Model hash: {shared.models.live.model_hash}" in read_png_parameters(cells[0])


def test_a_taught_lora_draws_in_the_live_student_too(shared, tiny_student, tmp_path):
    # a LoRA of the main model fits its student (the same UNet, plus a guidance embedding): taught concepts show
    # in the live image as in Generate
    from ldm.config import FinetuneConfig
    from ldm.train.finetune import add_lora, save_lora

    unet = type(tiny_student.pipe.unet).from_config(tiny_student.pipe.unet.config)
    for param in add_lora(unet, FinetuneConfig(lora_rank=4, lora_alpha=4)):
        torch.nn.init.normal_(param, std=0.5)  # an adapter that moves the image
    shared.models.loras["taught"] = str(save_lora(unet, tmp_path / "taught"))
    h = GenerateHandlers(shared)
    plain = _pixels(h.live_generate("a red square", seed=5))
    taught = h.live_generate("a red square", seed=5, lora="taught")
    assert np.abs(_pixels(taught) - plain).max() > 10 and "LoRA: " in read_png_parameters(taught)
    assert np.array_equal(_pixels(h.live_generate("a red square", seed=5, lora="taught", lora_scale=0.0)), plain)
    with pytest.raises(LdmError, match="unknown LoRA 'other'"):
        h.live_generate("a red square", seed=5, lora="other")
