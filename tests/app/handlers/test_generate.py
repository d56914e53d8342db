"""The Generate tab's handlers on the tiny pipeline (text to image, refusals, seeds, Stop, X/Y/Z plots): no
server, no Gradio."""

from __future__ import annotations

import math

import pytest

from app.handlers.checks import MAX_SEED
from app.handlers.generate import GenerateHandlers
from app.jobs import Stopped, stoppable
from ldm.errors import LdmError
from ldm.sampling.parameters import read_png_parameters


@pytest.fixture
def handlers(shared):
    return GenerateHandlers(shared)


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
    assert not list(handlers.shared.out_dir.iterdir())  # nothing written for a refused request


def test_a_prompt_that_is_not_text_is_refused(handlers):
    with pytest.raises(LdmError, match="prompt must be text"):
        handlers.generate(5, steps=1)


def test_a_negative_seed_draws_a_random_one(handlers):
    gallery, _, _ = handlers.generate("x", seed=-1, steps=1)
    assert 0 <= int(gallery[0][1].split()[-1]) < MAX_SEED


def test_a_stop_ends_the_request_between_steps_and_the_next_one_runs(handlers):
    flag = handlers.shared.stops.start("session")
    steps_done = []

    def progress(done, total):
        steps_done.append(done)
        if done == 2:
            handlers.shared.stops.stop("session")  # as the Stop button does, from another thread, mid-request

    with pytest.raises(Stopped):
        handlers.generate("x", steps=20, num_images=2, progress=stoppable(progress, flag))
    assert steps_done == [2]  # the request ended at the next step, not after 20
    flag = handlers.shared.stops.start("session")  # the next request of the session starts cleared
    gallery, _, _ = handlers.generate("x", steps=1, progress=stoppable(None, flag))
    assert len(gallery) == 1


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
