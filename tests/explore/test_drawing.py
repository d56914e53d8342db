"""The SVG map and its colours."""


import numpy as np
import pytest
import torch

from ldm.explore.drawing import MapMarks, scatter_svg, subject_colour


def test_scatter_svg_handles_identical_points():
    svg = scatter_svg(np.zeros((3, 2)), ["a", "b", "c"])
    assert svg.startswith("<svg") and svg.count("<circle") == 3


def test_points_are_coloured_by_their_image_subject():
    red_on_white = torch.ones(3, 16, 16)
    red_on_white[1:, 4:12, 4:12] = 0  # a red square: G and B off inside
    assert subject_colour(red_on_white) == "#ff0000"  # the white around it does not wash it out
    assert subject_colour(torch.full((3, 8, 8), 0.5)) == "#808080"  # no subject: the plain mean
    blue_on_black = torch.zeros(3, 16, 16)
    blue_on_black[2, 2:14, 2:14] = 1.0
    assert subject_colour(blue_on_black) == "#0000ff"
    svg = scatter_svg(np.array([[0, 0], [1, 1], [2, 0]]), ["a", "b", "c"], selected=[2],
                      colours=["#ff0000", "#0000ff", "#00ff00"])
    assert 'fill="#ff0000"' in svg and 'fill="#0000ff"' in svg
    assert 'fill="#00ff00"' not in svg and 'fill="#d62728"' in svg  # a pick is drawn in the pick colour


def test_marks_are_drawn_above_the_points_in_their_shapes_named_in_a_legend_and_inside_the_frame():
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    mine = MapMarks(np.array([[3.0, 3.0]]), ["<mine>.png"], ["data:,"], ["#ff0000"], "your images")
    rings = MapMarks(np.array([[0.5, 0.5], [1.0, 0.0]]), ["zorbly"] * 2, ["data:,"] * 2, ["#00ff00"] * 2,
                     "zorbly at step 50", "ring")
    svg = scatter_svg(xy, ["a", "b", "c"], marks=[mine, rings])
    assert svg.count("data-i=") == 3  # marks are no picks
    assert svg.count('class="pt mark diamond"') == 1 and svg.count('class="pt mark ring"') == 2
    assert "&lt;mine&gt;.png" in svg and "your images" in svg and "zorbly at step 50" in svg
    assert svg.index("data-i=\"2\"") < svg.index("pt mark")  # drawn after the points: above them
    # the frame widened to hold the mark at (3, 3): it sits in the far corner, one margin in
    assert 'rotate(45 532.0 28.0)' in svg
    with pytest.raises(ValueError, match="unknown mark shape"):
        scatter_svg(xy, ["a", "b", "c"], marks=[MapMarks(xy, ["a"] * 3, ["data:,"] * 3, ["#000"] * 3, "x", "star")])
