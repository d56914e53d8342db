"""A procedural dataset that needs no files: coloured circles, squares and triangles on plain backgrounds.

Image `index` is a pure function of (index, size, seed). The (shape, colour, background) combination
cycles with the index, so any 54 consecutive images hold each caption exactly once; position and
size come from a random stream seeded by (seed, index).
"""

from __future__ import annotations

import hashlib
import math
import random
from dataclasses import dataclass

from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "yellow": (245, 215, 30),
    "purple": (140, 40, 190),
    "orange": (245, 130, 20),
}
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}
MIN_EXTENT, MAX_EXTENT = 0.3, 0.7  # shape width as a share of the image width
SUPERSAMPLE = 4  # drawn this many times larger, then box-reduced: anti-aliased edges
GENERATOR_VERSION = "1"  # bump when drawing changes, so that fingerprints (and latent caches) change


@dataclass(frozen=True)
class ShapeParams:
    """What image `index` shows; centre and extent in output pixels."""

    shape: str
    color: str
    background: str
    cx: float
    cy: float
    extent: float  # width of the shape


def shape_caption(color: str, shape: str, background: str) -> str:
    """'a red circle on a white background'."""
    return f"a {color} {shape} on a {background} background"


def shape_params(index: int, size: int, seed: int = 0) -> ShapeParams:
    """The shape, colours and placement of image `index`."""
    if index < 0:
        raise ValueError(f"shape index must be >= 0, got {index}")
    colors, backgrounds = list(COLORS), list(BACKGROUNDS)
    shape = SHAPES[index % len(SHAPES)]
    color = colors[(index // len(SHAPES)) % len(colors)]
    background = backgrounds[(index // (len(SHAPES) * len(colors))) % len(backgrounds)]
    # a private stream per image (never the global RNG), seeded stably across processes and Python versions
    digest = hashlib.sha256(f"shapes:{seed}:{index}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    extent = rng.uniform(MIN_EXTENT, MAX_EXTENT) * size
    half = extent / 2
    cx = rng.uniform(half, size - half)
    cy = rng.uniform(half, size - half)
    return ShapeParams(shape, color, background, cx, cy, extent)


def draw_shape(params: ShapeParams, size: int) -> Image.Image:
    """Render `params` as a size x size RGB image."""
    s = SUPERSAMPLE
    big = Image.new("RGB", (size * s, size * s), BACKGROUNDS[params.background])
    draw = ImageDraw.Draw(big)
    cx, cy, half = params.cx * s, params.cy * s, params.extent * s / 2
    fill = COLORS[params.color]
    if params.shape == "circle":
        draw.ellipse((cx - half, cy - half, cx + half, cy + half), fill=fill)
    elif params.shape == "square":
        draw.rectangle((cx - half, cy - half, cx + half, cy + half), fill=fill)
    else:
        # equilateral, pointing up, centred in its bounding box
        h = half * math.sqrt(3)
        draw.polygon([(cx, cy - h / 2), (cx + half, cy + h / 2), (cx - half, cy + h / 2)], fill=fill)
    return big.reduce(s)


def make_shape(index: int, size: int, seed: int = 0) -> tuple[Image.Image, str]:
    """(image, caption) of procedural image `index`."""
    params = shape_params(index, size, seed)
    return draw_shape(params, size), shape_caption(params.color, params.shape, params.background)
