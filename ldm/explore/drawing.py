"""What the latent-space tab shows: the SVG scatter map, thumbnails as data URIs, subject colours, latent channels."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

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


MARK_SHAPES = ("diamond", "ring")  # how scatter_svg draws a group of marks


@dataclass
class MapMarks:
    """Images placed on a map beside its points (a user's own images, a run's newest previews): drawn larger, in a
    shape of their own, above the points, and named in the map's legend."""

    xy: np.ndarray  # (M, 2) in the map's coordinates
    labels: Sequence[str]
    thumbnails: Sequence[str]
    colours: Sequence[str]
    legend: str  # e.g. "your images"
    shape: str = "diamond"  # one of MARK_SHAPES


def _thumb(href: str, x: float, y: float, size: int) -> str:
    tx, ty = min(x + 6, size - 52), max(y - 54, 2)
    return f'<image class="thumb" href="{href}" x="{tx:.1f}" y="{ty:.1f}" width="48" height="48"/>'


def _mark(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "diamond":
        return (f'<rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12" transform="rotate(45 {x:.1f} {y:.1f})" '
                f'fill="{colour}" stroke="#000" stroke-width="2"/>')
    return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="7" fill="none" stroke="{colour}" stroke-width="3"/>'


def _legend(marks: Sequence[MapMarks]) -> str:
    if not marks:
        return ""
    # on a white panel, so that the points under it do not cross the text (7 units a character is ample at 13)
    width = 36 + 7 * max(len(group.legend) for group in marks)
    parts, y = [f'<rect x="2" y="2" width="{width}" height="{22 * len(marks)}" fill="#fff" fill-opacity="0.85"/>'], 14
    for group in marks:
        parts.append(_mark(group.shape, 14, y, "#888") + f'<text x="28" y="{y + 4}" font-size="13" '
                     f'font-family="sans-serif">{html.escape(group.legend)}</text>')
        y += 22
    return "".join(parts)


def scatter_svg(xy: np.ndarray, labels: Sequence[str], thumbnails: Sequence[str] | None = None,
                selected: Sequence[int] = (), size: int = MAP_SIZE, pad: int = MAP_PAD,
                colours: Sequence[str] | None = None, marks: Sequence[MapMarks] = ()) -> str:
    """An SVG scatter plot: a <title> label and an optional thumbnail that shows on hover for each point.

    Points are filled with `colours` (one #rrggbb each; grey without) and picks drawn larger in red/blue.
    Every point carries data-i (its index) so a click handler can report which one was picked. `marks` are
    drawn above them (no data-i: they are no pick), the frame widened to hold them, and named in a legend.
    """
    for group in marks:
        if group.shape not in MARK_SHAPES:
            raise ValueError(f"unknown mark shape {group.shape!r}")
    lo, span, inner = _placement(np.concatenate([xy, *(group.xy for group in marks)]), size, pad)
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
        thumb = "" if thumbnails is None else _thumb(thumbnails[i], x, y, size)
        parts.append(f'<g class="pt" data-i="{i}"><title>{html.escape(label)}</title>'
                     f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{radius}" fill="{colour}" fill-opacity="0.85" '
                     f'stroke="{stroke}" stroke-width="0.6"/>'
                     f'{thumb}</g>')
    for group in marks:
        for (x, y), label, thumb, colour in zip(pad + (group.xy - lo) / span * inner, group.labels, group.thumbnails,
                                                group.colours, strict=True):
            y = size - y
            parts.append(f'<g class="pt mark {group.shape}"><title>{html.escape(label)}</title>'
                         f'{_mark(group.shape, x, y, colour)}{_thumb(thumb, x, y, size)}</g>')
    parts.append(_legend(marks) + "</svg>")
    return "".join(parts)
