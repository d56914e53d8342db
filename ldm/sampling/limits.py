"""How far each value of a request may go: one table for the library, the CLI and the web UI (no torch).

Run locally (library calls, scripts/sample.py) only the lower bounds hold: users may spend their own
machine as they like. A server (the web UI) also applies the upper bounds, so that one request cannot
hold the machine for everyone else. Values arrive from argparse, JSON and Gradio, so a bool, NaN or a
fractional step count is refused here rather than silently converted.
"""

from __future__ import annotations

import math

from ldm.errors import LdmError
from ldm.sampling.schema import FIELD, FIELDS, Bound

# A request's values (steps, guidance, seeds, strengths, ...) take their ranges from the schema; the rest are here.
BOUNDS = {
    **{f.name: f.bound for f in FIELDS if f.bound is not None},
    "guidance": FIELD["guidance_scale"].bound,  # the X/Y/Z axis's and the web UI's name for it
    "images": Bound("number of images", 1, 16),
    "batch_size": Bound("batch size", 1, 16),
    "frames": Bound("frames", 2, 48),
    "keyframes": Bound("keyframes", 2, 8),
    "fps": Bound("fps", 0, 60, whole=False, low_open=True),
    "map_points": Bound("points", 3, 1500),
    "direction": Bound("each direction amount", -3, 3, whole=False),  # std units along a principal direction
    "position": Bound("position", 0, 1, whole=False, local_high=1),  # along a whole walk or morph (live slider)
    "prompt_chars": Bound("prompt length", 0, 500),
}
SIZE_FACTOR = 4  # the web UI's largest side: this many times the model's training size
UPLOAD_MB = 8
# A server's work budget per request, in image-steps at the model's training size (images x steps x area
# over the training area). 1600 is 16 images x 100 steps at 64 px, or 4 x 25 at 256 px: about half a
# minute on two CPU cores for the shipped model, so one request cannot hold the worker for minutes.
WORK_BUDGET = 1600


def check(name: str, value, server: bool = False) -> int | float:
    """`value` as an int (whole bounds) or float inside BOUNDS[name], else a one-line LdmError."""
    return check_bound(BOUNDS[name], value, server)


def check_bound(bound: Bound, value, server: bool = False) -> int | float:
    """`value` as an int (whole bounds) or float inside `bound`, else a one-line LdmError."""
    if bound.server_only and not server:
        return value
    high = bound.server_high if server else bound.local_high
    wrong = LdmError(f"{bound.what} must be {bound.describe(server)}, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise wrong
    if isinstance(value, float) and (not math.isfinite(value) or (bound.whole and not value.is_integer())):
        raise wrong
    if value < bound.low or (bound.low_open and value == bound.low) or value > high:
        raise wrong
    return int(value) if bound.whole else float(value)


def check_work(images: int, steps: int, width: int, height: int, default_size: int, budget: float = WORK_BUDGET,
               what: str = "images") -> float:
    """A server's refusal of a request over `budget` image-steps at the training size; else its work."""
    work = images * steps * width * height / default_size**2
    if work > budget:
        raise LdmError(f"too much work for one request: {images} {what} x {steps} steps at {width}x{height} is "
                       f"{work:.0f} image-steps at {default_size}x{default_size}, the server allows {budget:.0f}; "
                       "ask for fewer images, steps or pixels")
    return work
