"""Easing curves: exact endpoints, monotonic, known midpoints, one clear error for an unknown name."""

import math

import pytest

from ldm.sampling.easing import EASINGS, ease


@pytest.mark.parametrize("curve", ["linear", "smoothstep", "cosine"])
def test_easing_keeps_endpoints_and_is_monotonic(curve):
    values = [ease(t / 10, curve) for t in range(11)]
    assert values[0] == 0 and values[-1] == 1
    assert all(b >= a for a, b in zip(values, values[1:], strict=False))


def test_curves_take_their_textbook_values():
    # smoothstep 3t^2 - 2t^3 and the raised cosine: symmetric about the middle, slow at both ends
    assert ease(0.25, "linear") == 0.25
    assert ease(0.25, "smoothstep") == pytest.approx(0.15625)
    assert ease(0.25, "cosine") == pytest.approx((1 - math.cos(math.pi / 4)) / 2)
    for curve in EASINGS:
        assert ease(0.5, curve) == pytest.approx(0.5)
        assert ease(0.2, curve) + ease(0.8, curve) == pytest.approx(1.0)
    assert ease(0.05, "smoothstep") < 0.05 and ease(0.05, "cosine") < 0.05


def test_every_listed_name_is_a_curve_and_others_are_refused():
    for curve in EASINGS:
        ease(0.3, curve)
    with pytest.raises(ValueError, match="unknown easing 'bounce': choose linear, smoothstep, cosine"):
        ease(0.3, "bounce")
