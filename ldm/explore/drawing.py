"""What the latent-space tab shows: the SVG scatter map, thumbnails as data URIs, subject colours, latent channels."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from ldm.media import to_uint8


def channel_images(latent: torch.Tensor, size: int = 64) -> list[Image.Image]:
    """Each latent channel min-max scaled to grey and upscaled (nearest) for display."""
    out = []
    for ch in latent:
        lo, hi = float(ch.min()), float(ch.max())
        norm = (ch - lo) / (hi - lo) if hi > lo else torch.zeros_like(ch)
        img = Image.fromarray((norm.numpy() * 255).round().astype(np.uint8), mode="L")
        out.append(img.resize((size, size), Image.NEAREST))
    return out


def thumbnail_uri(image: torch.Tensor, size: int = 48) -> str:
    """A (3, H, W) image in [0, 1] as a PNG data URI, shrunk to `size` when larger."""
    buf = io.BytesIO()
    picture = Image.fromarray(to_uint8(image[None])[0])
    if picture.width > size:  # a smaller one (a map file's thumbnail) goes as it is: the browser scales it smoothly
        picture = picture.resize((size, size), Image.NEAREST)
    picture.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def subject_colour(image: torch.Tensor, threshold: float = 0.15) -> str:
    """The mean colour of a (3, H, W) image in [0, 1] where it differs from its background, as #rrggbb.

    The background is the median colour of the border, so an emoji on white is drawn in its own colour
    rather than a washed-out average with the white around it.
    """
    border = torch.cat([image[:, 0], image[:, -1], image[:, :, 0], image[:, :, -1]], dim=1)
    background = border.median(dim=1).values
    pixels = image.flatten(1)
    subject = (pixels - background[:, None]).abs().max(dim=0).values > threshold
    mean = pixels[:, subject].mean(1) if subject.any() else pixels.mean(1)
    r, g, b = (int(round(float(c) * 255)) for c in mean.clamp(0, 1))
    return f"#{r:02x}{g:02x}{b:02x}"


MAP_SIZE, MAP_PAD = 560, 28  # the map's SVG viewBox side and margin, in SVG units


def _placement(xy: np.ndarray, size: int, pad: int) -> tuple[np.ndarray, np.ndarray, float]:
    lo, hi = xy.min(0), xy.max(0)
    return lo, np.where(hi > lo, hi - lo, 1.0), size - 2 * pad


def map_position(xy: np.ndarray, svg_x: float, svg_y: float, size: int = MAP_SIZE, pad: int = MAP_PAD) -> np.ndarray:
    """The map coordinates under an SVG position of the plot scatter_svg drew of xy (its placement inverted)."""
    lo, span, inner = _placement(xy, size, pad)
    return lo + (np.array([svg_x, size - svg_y], float) - pad) / inner * span


def scatter_svg(xy: np.ndarray, labels: Sequence[str], thumbnails: Sequence[str] | None = None,
                selected: Sequence[int] = (), size: int = MAP_SIZE, pad: int = MAP_PAD,
                colours: Sequence[str] | None = None) -> str:
    """An SVG scatter plot: a <title> label and an optional thumbnail that shows on hover for each point.

    Points are filled with `colours` (one #rrggbb each; grey without) and picks drawn larger in red/blue.
    Every point carries data-i (its index) so a click handler can report which one was picked.
    """
    lo, span, inner = _placement(xy, size, pad)
    pos = pad + (xy - lo) / span * inner
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" class="ldm-map" '
             f'width="100%" style="max-width:{size}px;background:#fff">']
    chosen = {int(i): k for k, i in enumerate(selected)}
    for i, ((x, y), label) in enumerate(zip(pos, labels, strict=True)):
        y = size - y  # SVG y grows downwards
        if i in chosen:
            colour, radius, stroke = ("#d62728", "#1f77b4")[chosen[i] % 2], 7, "#000"
        else:
            colour, radius, stroke = (colours[i] if colours is not None else "#555"), 3.5, "#0006"
        thumb = ""
        if thumbnails is not None:
            tx, ty = min(x + 6, size - 52), max(y - 54, 2)
            thumb = f'<image class="thumb" href="{thumbnails[i]}" x="{tx:.1f}" y="{ty:.1f}" width="48" height="48"/>'
        parts.append(f'<g class="pt" data-i="{i}"><title>{html.escape(label)}</title>'
                     f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" fill-opacity="0.85" '
                     f'stroke="{stroke}" stroke-width="0.6"/>'
                     f'{thumb}</g>')
    parts.append("</svg>")
    return "".join(parts)
