"""The procedural shapes: deterministic, captioned truthfully, anti-aliased."""

from __future__ import annotations

import numpy as np
import pytest

from ldm.data.shapes import (
    BACKGROUNDS,
    COLORS,
    MAX_EXTENT,
    MIN_EXTENT,
    SHAPES,
    make_shape,
    shape_caption,
    shape_params,
)


def test_caption_format():
    assert shape_caption("red", "circle", "white") == "a red circle on a white background"


def test_constants_are_distinct_and_saturated():
    assert set(SHAPES) == {"circle", "square", "triangle"}
    assert set(COLORS) == {"red", "green", "blue", "yellow", "purple", "orange"}
    assert set(BACKGROUNDS) == {"white", "black", "gray"}
    assert len(set(COLORS.values())) == len(COLORS)
    for rgb in COLORS.values():
        assert max(rgb) - min(rgb) >= 120  # saturated: never grey, white or black
    assert not set(COLORS.values()) & set(BACKGROUNDS.values())


def test_deterministic_and_seeded():
    a, cap_a = make_shape(7, 32, seed=3)
    b, cap_b = make_shape(7, 32, seed=3)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and cap_a == cap_b
    c, cap_c = make_shape(7, 32, seed=4)
    assert cap_c == cap_a and not np.array_equal(np.asarray(a), np.asarray(c))
    assert not np.array_equal(np.asarray(a), np.asarray(make_shape(8, 32, seed=3)[0]))


def test_every_caption_appears_in_any_54_consecutive_images():
    captions = {make_shape(i, 8)[1] for i in range(100, 154)}
    assert captions == {shape_caption(c, s, b) for c in COLORS for s in SHAPES for b in BACKGROUNDS}


@pytest.mark.parametrize("size", [32, 64])
def test_pixels_match_the_caption(size):
    for index in range(54):
        img, caption = make_shape(index, size, seed=1)
        p = shape_params(index, size, seed=1)
        assert caption == shape_caption(p.color, p.shape, p.background)
        assert img.mode == "RGB" and img.size == (size, size)
        arr = np.asarray(img)
        # the centre of the shape's box is inside every shape
        assert tuple(arr[int(p.cy), int(p.cx)]) == COLORS[p.color], caption
        bg = np.all(arr == BACKGROUNDS[p.background], axis=-1).mean()
        fg = np.all(arr == COLORS[p.color], axis=-1).mean()
        assert bg > 0.3 and fg > 0.03, caption
        assert MIN_EXTENT * size <= p.extent <= MAX_EXTENT * size
        assert p.extent / 2 <= p.cx <= size - p.extent / 2 and p.extent / 2 <= p.cy <= size - p.extent / 2


def test_red_circle_centre_pixel_is_red():
    index = next(i for i in range(54) if make_shape(i, 64)[1] == "a red circle on a white background")
    img, _ = make_shape(index, 64)
    p = shape_params(index, 64)
    assert img.getpixel((int(p.cx), int(p.cy))) == COLORS["red"]


def test_edges_are_anti_aliased():
    img, _ = make_shape(0, 64)  # a circle
    p = shape_params(0, 64)
    arr = np.asarray(img).reshape(-1, 3)
    pure = np.all(arr == COLORS[p.color], axis=-1) | np.all(arr == BACKGROUNDS[p.background], axis=-1)
    assert (~pure).sum() > 10  # blended edge pixels exist


def test_negative_index_is_rejected():
    with pytest.raises(ValueError):
        make_shape(-1, 16)
