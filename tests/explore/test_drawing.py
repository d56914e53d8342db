"""The SVG map and its colours."""


import numpy as np
import torch

from ldm.explore.drawing import scatter_svg, subject_colour


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
