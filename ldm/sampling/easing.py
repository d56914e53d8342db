"""Easing curves by name, as plain float functions (no torch: scripts offer the names before loading models)."""

from __future__ import annotations

import math

EASINGS = ("linear", "smoothstep", "cosine")


def ease(t: float, curve: str = "linear") -> float:
    """Map t in [0, 1] through an easing curve (keeps 0 -> 0 and 1 -> 1 exactly)."""
    if curve == "linear":
        return t
    if curve == "smoothstep":
        return t * t * (3 - 2 * t)
    if curve == "cosine":
        return 0.5 - 0.5 * math.cos(math.pi * t)
    raise ValueError(f"unknown easing {curve!r}: choose {', '.join(EASINGS)}")
