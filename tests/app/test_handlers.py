"""The web UI's handlers called as plain functions on the tiny pipeline: no server, no Gradio."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from app.handlers import (
    MAX_SEED,
    Handlers,
    gallery_image,
    morph_handoff,
    ordinal,
    picture_handoff,
    run_seed,
    walk_handoff,
)
from app.jobs import Stopped, stoppable
from ldm.data.images import to_tensor
from ldm.data.shapes import make_shape
from ldm.errors import LdmError
from ldm.explore import DatasetView
from ldm.sampling.parameters import read_png_parameters


@pytest.fixture
def handlers(tiny_model, tmp_path):
    shapes = [make_shape(i, 32) for i in range(10)]
    view = DatasetView(torch.stack([to_tensor(image) for image, _ in shapes]), [caption for _, caption in shapes],
                       tiny_model)
    return Handlers(tiny_model, view, tmp_path)


def test_generate_returns_captioned_pngs_that_carry_their_parameters(handlers):
    calls = []
    gallery, text, paths = handlers.generate("a red square", seed=11, steps=2, num_images=2,
                                             progress=lambda done, total: calls.append((done, total)))
    assert [caption for _, caption in gallery] == ["seed 11", "seed 12"]
    assert read_png_parameters(paths[1]).startswith("a red square\nSteps: 2") and "Seed: 12" in text
    assert text.count("Steps: 2") == 1  # the shared settings once, then the other seeds
    assert text.endswith("differ only in Seed: 12") and read_png_parameters(paths[0]) in text
    assert calls[-1] == (4, 4)  # two images x two steps
    assert len({p.rsplit("/", 2)[-2] for p in paths}) == 1  # one request, one folder of its own


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps must be a whole number between 1 and 100"),
    ({"steps": 101}, "between 1 and 100"),
    ({"steps": 2.5}, "got 2.5"),
    ({"steps": True}, "got True"),
    ({"steps": math.nan}, "got nan"),
    ({"num_images": 17}, "number of images must be a whole number between 1 and 16"),
    ({"guidance": 31}, "guidance scale must be a number between 0 and 30"),
    ({"seed": MAX_SEED + 1}, "seed must be"),
    ({"width": 1000}, "width must be between 8 and 128"),
    ({"width": 12}, "multiple of 8"),  # a multiple of the VAE's factor 4 that diffusers' pipeline refuses
    ({"height": 24.5}, "multiple of 8"),
    ({"scheduler": "warp"}, "unknown scheduler"),
    ({"negative_prompt": "x" * 501}, "negative prompt is longer than 500"),
    ({"lora": "missing"}, "unknown LoRA"),
    ({"lora": ["x"]}, "LoRA must be one of the listed names"),
    ({"scheduler": 3}, "scheduler must be one of the listed names"),
])
def test_generate_refuses_bad_values_in_one_line(handlers, kwargs, message):
    with pytest.raises(LdmError, match=message) as caught:
        handlers.generate("x", **{"steps": 1, **kwargs})
    assert "\n" not in str(caught.value)
    assert not list(handlers.out_dir.iterdir())  # nothing written for a refused request


def test_a_prompt_that_is_not_text_is_refused(handlers):
    with pytest.raises(LdmError, match="prompt must be text"):
        handlers.generate(5, steps=1)


def test_a_negative_seed_draws_a_random_one(handlers):
    gallery, _, _ = handlers.generate("x", seed=-1, steps=1)
    assert 0 <= int(gallery[0][1].split()[-1]) < MAX_SEED


def test_seed_walk_and_morph_write_gif_mp4_and_frames(handlers):
    gif, mp4, frames = handlers.interpolate_seeds("a red square", "1, 2", frames=3, steps=1)
    assert Image.open(gif).n_frames == 3 and len(frames) == 3 and mp4.endswith(".mp4")
    gif, _, frames = handlers.morph("red\na blue circle", seed=3, frames=4, mode="lerp", steps=1)
    assert Image.open(gif).n_frames == 4 and "Morph mode: lerp" in read_png_parameters(frames[2])


@pytest.mark.parametrize("call, message", [
    (lambda h: h.interpolate_seeds("x", "1, banana", steps=1), "whole numbers"),
    (lambda h: h.interpolate_seeds("x", "1", steps=1), "give between 2 and 8 seeds"),
    (lambda h: h.interpolate_seeds("x", "1, -4", steps=1), "seed must be"),
    (lambda h: h.interpolate_seeds("x", "1, 2", frames=1, steps=1), "frames must be a whole number between 2"),
    (lambda h: h.morph("only one", steps=1), "give between 2 and 8 prompts"),
    (lambda h: h.morph("a\nb", mode="cubic", steps=1), "interpolation must be one of slerp, lerp"),
])
def test_animations_refuse_bad_keyframes(handlers, call, message):
    with pytest.raises(LdmError, match=message):
        call(handlers)


def test_reconstruct_reports_psnr_compression_and_anomaly(handlers, tmp_path):
    make_shape(3, 32)[0].save(tmp_path / "in.png")
    recon, report, channels = handlers.reconstruct(str(tmp_path / "in.png"))
    assert Image.open(recon).size == (32, 32)
    assert "PSNR" in report and "compression** 6.0x" in report and "percentile" in report
    assert len(channels) == 4


def test_reconstruct_refuses_missing_and_broken_uploads(handlers, tmp_path):
    with pytest.raises(LdmError, match="upload an image first"):
        handlers.reconstruct(None)
    (tmp_path / "notes.png").write_text("not an image")
    with pytest.raises(LdmError, match="^cannot use notes.png: not an image$"):
        handlers.reconstruct(str(tmp_path / "notes.png"))
    # as Gradio sends an upload: the message names the user's file, not the server's copy
    with pytest.raises(LdmError, match="^cannot use my notes.png: not an image$"):
        handlers.reconstruct({"path": str(tmp_path / "notes.png"), "orig_name": "my notes.png"})


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
        Handlers(tiny_model, None, tmp_path).draw_map("latents", "pca", 8, [])


def test_walk_handoff_carries_the_runs_seeds_or_the_clicked_one():
    run = [("a.png", "seed 11"), ("b.png", "seed 12"), ("c.png", "seed 13")]
    assert walk_handoff(0, None, run) == "11, 12, 13"  # nothing clicked: the whole run
    assert walk_handoff(0, 12, run) == "12, 13"  # a clicked image and the next seed
    assert walk_handoff(5, None, [{"image": "a.png", "caption": "seed 7"}]) == "7, 8"  # one image (dict form)
    assert walk_handoff(5, None, []) == "5, 6"  # no run yet: the seed box
    assert walk_handoff(-1, None, None) == "0, 1"


def test_morph_handoff_leaves_two_prompts_and_the_runs_seed():
    assert morph_handoff("grinning face", "grinning face\ncat face") == "grinning face\ncat face"
    assert morph_handoff("red apple", "") == "red apple\nred apple"  # always two lines: the morph runs as is
    assert morph_handoff("cat face", "dog\ncat face") == "cat face\ncat face"
    assert run_seed(3, None, [("a.png", "seed 40"), ("b.png", "seed 41")]) == 40
    assert run_seed(3, 41, [("a.png", "seed 40")]) == 41


@pytest.mark.parametrize("call", [
    lambda h: h.generate("x", steps=100, num_images=16, width=128, height=128),  # 25,600 image-steps at 32 px
    lambda h: h.interpolate_seeds("x", "1, 2", frames=48, steps=40),  # 1,920
])
def test_requests_over_the_work_budget_are_refused_before_any_work(handlers, call):
    with pytest.raises(LdmError, match="too much work for one request: .* the server allows 1600; ask for fewer"):
        call(handlers)
    assert not list(handlers.out_dir.iterdir())


def test_the_budget_is_the_servers_choice(tiny_model, tmp_path):
    small = Handlers(tiny_model, None, tmp_path, work_budget=3)
    small.generate("x", steps=3, num_images=1)  # exactly the budget
    with pytest.raises(LdmError, match="4 image-steps at 32x32, the server allows 3"):
        small.generate("x", steps=2, num_images=2)


def test_a_stop_ends_the_request_between_steps_and_the_next_one_runs(handlers):
    flag = handlers.stops.start("session")
    steps_done = []

    def progress(done, total):
        steps_done.append(done)
        if done == 2:
            handlers.stops.stop("session")  # as the Stop button does, from another thread, mid-request

    with pytest.raises(Stopped):
        handlers.generate("x", steps=20, num_images=2, progress=stoppable(progress, flag))
    assert steps_done == [2]  # the request ended at the next step, not after 20
    flag = handlers.stops.start("session")  # the next request of the session starts cleared
    gallery, _, _ = handlers.generate("x", steps=1, progress=stoppable(None, flag))
    assert len(gallery) == 1


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


def test_png_info_reads_the_fields_and_sends_them_on(handlers, tmp_path):
    _, _, paths = handlers.generate("a (red:1.2) square", negative_prompt="blue", seed=21, steps=3, num_images=1)
    text, rows = Handlers.png_info({"path": paths[0], "orig_name": "x.png"})
    assert text == read_png_parameters(paths[0])
    assert rows[:3] == [["Prompt", "a (red:1.2) square"], ["Negative prompt", "blue"], ["Steps", "3"]]
    assert handlers.png_fields(text) == ("a (red:1.2) square", "blue", 21, 3, 3.0, "euler-a", 32, 32,
                                         handlers.model.name)
    Image.new("RGB", (8, 8)).save(tmp_path / "plain.png")
    with pytest.raises(LdmError, match="^plain.png carries no generation parameters"):
        Handlers.png_info({"path": str(tmp_path / "plain.png"), "orig_name": "plain.png"})
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
def test_a_png_value_no_control_can_hold_is_refused_in_one_line(handlers, field, value, message):
    # a seed beyond 64 bits wedged Gradio's event stream (the fields spun until a reload)
    fields = {"Steps": 3, "Sampler": "Euler a", "CFG scale": 3, "Seed": 1, "Size": "32x32", field: value}
    text = "a red square\n" + ", ".join(f"{k}: {v}" for k, v in fields.items())
    with pytest.raises(LdmError, match=message) as caught:
        handlers.png_fields(text)
    assert "\n" not in str(caught.value)
    with pytest.raises(LdmError, match="prompt is longer than 500"):
        handlers.png_fields("x" * 501 + "\nSteps: 3, Seed: 1")


def test_xyz_plot_writes_the_grid_and_every_cell(handlers):
    grid, cells = handlers.xyz_plot("a red square", seed=5, steps=2, x_axis="prompt=red,blue", y_axis="steps=1,2")
    assert grid.rsplit("/", 1)[-1] == "xyz-grid-0000.png" and len(cells) == 4
    assert read_png_parameters(cells[1]).startswith("a blue square\nSteps: 1")
    for kwargs, message in (({}, "give at least one axis"), ({"x_axis": "steps=1,500"}, "steps must be"),
                            ({"x_axis": "prompt=green,blue"}, "is not in the prompt"),
                            ({"x_axis": "seed=" + ",".join(map(str, range(8))), "y_axis": "steps=90,100,100"},
                             "too much work"),
                            # a long axis is named, not repeated in the toast, and the UI has no --xyz flag
                            ({"x_axis": "steps=" + "1" * 100_000 + ",x"}, r"^X/Y/Z axis steps: values must be whole "
                             r"numbers, got '1{59}… \(100,002 characters\)$")):
        with pytest.raises(LdmError, match=message):
            handlers.xyz_plot("a red square", seed=5, steps=2, **kwargs)


def test_any_shown_picture_goes_to_image_to_image_with_its_prompts_first_line():
    assert picture_handoff({"path": "/f/frame-0002.png"}, "grinning face\ncat face") == ("/f/frame-0002.png",
                                                                                        "grinning face")
    assert picture_handoff("/f/pick.png") == ("/f/pick.png", None)
    with pytest.raises(LdmError, match="no image to send yet"):
        picture_handoff(None, "x")


def test_percentiles_read_as_english():
    assert [ordinal(n) for n in (0, 1, 2, 3, 4, 11, 12, 13, 21, 22, 61, 100, 101, 111)] == [
        "0th", "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "61st", "100th", "101st", "111th"]


def test_the_latent_tab_works_from_a_map_file_without_the_images(tiny_model, tmp_path):
    shapes = [make_shape(i, 32) for i in range(10)]
    DatasetView(torch.stack([to_tensor(image) for image, _ in shapes]), [caption for _, caption in shapes],
                tiny_model).save_map(tmp_path / "map.safetensors")
    h = Handlers(tiny_model, DatasetView.from_map(tmp_path / "map.safetensors", tiny_model), tmp_path / "out")
    svg, drawn = h.draw_map("latents", "pca", 8, [])
    assert svg.count('class="pt"') == 8
    path, picks, text, _ = h.pick(drawn, [], 2)
    assert Image.open(path).size == (32, 32) and picks == [drawn["indices"][2]]
    assert text == f"picked: “{shapes[picks[0]][1]}”"
    assert Image.open(h.map_point(drawn, 120.0, 300.0)).size == (32, 32)


def test_a_projection_that_is_not_installed_is_refused_in_one_line(handlers, monkeypatch):
    monkeypatch.setattr("app.handlers.available_projections", lambda: ("pca", "tsne"))  # as without umap-learn
    with pytest.raises(LdmError, match="projection must be one of pca, tsne") as caught:
        handlers.draw_map("latents", "umap", 8, [])
    assert "\n" not in str(caught.value)
