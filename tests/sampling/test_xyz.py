"""X/Y/Z plots: axes parsed from text, every combination in reading order, a grid whose cells are the images."""

import numpy as np
import pytest
import torch
from PIL import Image

from ldm.errors import LdmError
from ldm.outputs import NumberedFolder
from ldm.render import render_xyz
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.xyz import parse_axes, parse_axis, plot_cells


def test_axes_parse_values_aliases_and_quotes():
    assert parse_axis("steps=4, 8,14").values == (4, 8, 14)
    assert parse_axis("CFG=1,3.5").name == "guidance" and parse_axis("cfg=1,3.5").values == (1.0, 3.5)
    assert parse_axis('prompt=red,"green, shiny"').values == ("red", "green, shiny")
    assert parse_axis("sampler=euler-a,ddim").name == "scheduler"


@pytest.mark.parametrize("texts, message", [
    (["steps"], "axis is AXIS=V1,V2"),
    (["colour=1,2"], "AXIS one of prompt, steps, scheduler, guidance, seed"),
    (["steps=4,x"], "steps: values must be whole numbers"),
    (["guidance=1,,3"], "give one or more comma-separated values"),
    (["steps=1", "seed=1", "eta=0", "guidance=1"], "1 to 3 axes, got 4"),
    (["seed=1,2", "seed=3"], "names an axis twice"),
    (["seed=" + ",".join(map(str, range(9))), "steps=" + ",".join(map(str, range(1, 9)))], "at most 64"),
])
def test_bad_axes_are_one_line_errors(texts, message):
    with pytest.raises(LdmError, match=message) as error:
        parse_axes(texts)
    assert "\n" not in str(error.value)


def test_cells_come_in_reading_order_with_prompt_search_and_replace():
    axes = parse_axes(["prompt=red,blue", "steps=2,3", "seed=7,8"])
    cells = plot_cells(axes, ImageSpec("a red square", 1), Settings(negative_prompt="red"))
    assert [c.place for c in cells[:3]] == [(0, 0, 0), (1, 0, 0), (0, 1, 0)]
    assert [(c.spec.prompt, c.settings.steps, c.spec.seed) for c in cells] == [
        (p, s, z) for z in (7, 8) for s in (2, 3) for p in ("a red square", "a blue square")]
    assert cells[1].settings.negative_prompt == "blue"
    with pytest.raises(LdmError, match="'green' .* is not in the prompt"):
        plot_cells(parse_axes(["prompt=green,blue"]), ImageSpec("a red square", 1), Settings())


def test_the_grid_cells_are_the_single_renders_and_the_written_pngs(tiny_model, tmp_path):
    axes = parse_axes(["seed=3,4", "guidance=1,4"])
    out = NumberedFolder(tmp_path)
    paths = render_xyz(tiny_model, axes, ImageSpec("a red square", 0), Settings(steps=3), out, batch_size=4)
    assert [p.name for p in paths] == ["00000-3.png", "00001-4.png", "00002-3.png", "00003-4.png",
                                       "xyz-grid-0000.png"]
    grid = np.asarray(Image.open(paths[-1]).convert("RGB"))
    from ldm.media import labelled_grid, to_uint8

    singles = [tiny_model.generate([ImageSpec("a red square", seed)], Settings(steps=3, guidance_scale=g))
               for g in (1.0, 4.0) for seed in (3, 4)]
    _, boxes = labelled_grid(torch.cat(singles), ["Seed: 3", "Seed: 4"], ["CFG scale: 1", "CFG scale: 4"], [""])
    for single, path, (left, top, right, bottom) in zip(singles, paths, boxes):
        pixels = to_uint8(single)[0]
        assert np.array_equal(np.asarray(Image.open(path).convert("RGB")), pixels)
        factor = (right - left) // pixels.shape[1]
        assert np.array_equal(grid[top:bottom:factor, left:right:factor], pixels)
    assert grid.shape[0] > 2 * (boxes[0][3] - boxes[0][1])  # labels above and beside the cells


def test_an_unknown_value_fails_before_any_image(tiny_model, tmp_path):
    with pytest.raises(LdmError, match="unknown scheduler"):
        render_xyz(tiny_model, parse_axes(["scheduler=euler,magic"]), ImageSpec("x", 0), Settings(steps=2),
                   NumberedFolder(tmp_path))
    assert list(tmp_path.iterdir()) == []
