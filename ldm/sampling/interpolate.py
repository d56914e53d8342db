"""Interpolation as small pure functions: slerp/lerp, keyframe paths (eased, see easing.py) and frame re-spacing."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ldm.sampling.easing import ease


def lerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Linear interpolation; t = 0 and t = 1 return a and b exactly."""
    if t == 0:
        return a
    if t == 1:
        return b
    return a + (b - a) * t


def slerp(a: torch.Tensor, b: torch.Tensor, t: float, dot_threshold: float = 0.9995) -> torch.Tensor:
    """Spherical interpolation per leading item (rows of a batch), exact at t = 0 and t = 1.

    Gaussian noise lives near a sphere of radius sqrt(dim); a straight line between two samples
    passes through low-norm points the model never saw, which slerp avoids. Nearly parallel
    vectors fall back to lerp, where the angle is too small to divide by.
    """
    if t == 0:
        return a
    if t == 1:
        return b
    a32, b32 = a.float().flatten(1), b.float().flatten(1)
    na, nb = a32.norm(dim=1, keepdim=True), b32.norm(dim=1, keepdim=True)
    dot = ((a32 / na.clamp_min(1e-12)) * (b32 / nb.clamp_min(1e-12))).sum(dim=1, keepdim=True).clamp(-1, 1)
    theta = torch.acos(dot)
    sin_theta = torch.sin(theta)
    wa = torch.where(dot.abs() > dot_threshold, 1 - t, torch.sin((1 - t) * theta) / sin_theta)
    wb = torch.where(dot.abs() > dot_threshold, torch.full_like(dot, t), torch.sin(t * theta) / sin_theta)
    return (wa * a32 + wb * b32).reshape(a.shape).to(a.dtype)


def blend(a: torch.Tensor, b: torch.Tensor, t: float, mode: str) -> torch.Tensor:
    """lerp or slerp by name."""
    if mode == "lerp":
        return lerp(a, b, t)
    if mode == "slerp":
        return slerp(a, b, t)
    raise ValueError(f"unknown interpolation {mode!r}: choose lerp or slerp")


@dataclass(frozen=True)
class PathPoint:
    """A point on a keyframe path: between keyframe `index` and the next, at fraction `t` in [0, 1)."""

    index: int
    t: float

    def keys(self, count: int) -> tuple[int, int]:
        """Indices of the two keyframes this point lies between (the next wraps round for loops)."""
        return self.index % count, (self.index + 1) % count


def path_positions(frames: int, keyframes: int, loop: bool = False) -> list[float]:
    """Evenly spaced positions u in [0, segments] for `frames` frames over `keyframes` keys.

    Open paths end exactly on the last keyframe; loops stop one step short of returning to the first, so
    a looping animation never shows the same frame twice. Each join falls on an integer u, so no frame
    is duplicated there either.
    """
    if frames < 2:
        raise ValueError("an animation needs at least 2 frames")
    if keyframes < (1 if loop else 2):
        raise ValueError("an interpolation needs at least 2 keyframes")
    segments = keyframes if loop else keyframes - 1
    step = segments / frames if loop else segments / (frames - 1)
    return [min(j * step, float(segments)) for j in range(frames)]


def point_at(u: float, keyframes: int, curve: str = "linear", loop: bool = False) -> PathPoint:
    """The keyframe pair and eased fraction at position u (from path_positions)."""
    segments = keyframes if loop else keyframes - 1
    if loop and u >= segments:  # a loop's end is its start again
        return PathPoint(0, 0.0)
    index = min(int(math.floor(u)), segments - 1) if u < segments else segments
    if index == segments:  # the very end of an open path: exactly the last keyframe
        return PathPoint(keyframes - 1, 0.0)
    return PathPoint(index, ease(u - index, curve))


def respace(positions: Sequence[float], distances: Sequence[float], frames: int) -> list[float]:
    """New positions, `frames` of them, spaced evenly in image change along a rendered path.

    `distances[i]` is the change between the images at positions[i] and positions[i + 1]. The path's
    cumulative change is treated as piecewise linear in position, so where consecutive frames jumped,
    the new positions crowd in. Both ends are kept exactly.
    """
    if len(distances) != len(positions) - 1:
        raise ValueError("need one distance per consecutive pair of positions")
    cumulative = [0.0]
    for d in distances:
        cumulative.append(cumulative[-1] + max(float(d), 0.0))
    total = cumulative[-1]
    if total <= 0:
        return list(positions[:1]) + [positions[0] + (positions[-1] - positions[0]) * j / (frames - 1)
                                      for j in range(1, frames)]
    out = []
    seg = 0
    for j in range(frames):
        target = total * j / (frames - 1)
        while seg < len(distances) - 1 and cumulative[seg + 1] < target:
            seg += 1
        span = cumulative[seg + 1] - cumulative[seg]
        frac = 0.0 if span <= 0 else (target - cumulative[seg]) / span
        out.append(positions[seg] + (positions[seg + 1] - positions[seg]) * min(max(frac, 0.0), 1.0))
    out[0], out[-1] = positions[0], positions[-1]
    return out


def frame_distances(frames: torch.Tensor) -> list[float]:
    """Mean absolute pixel change between consecutive frames of (N, 3, H, W) images."""
    return [float((frames[i + 1] - frames[i]).abs().mean()) for i in range(len(frames) - 1)]


def max_jump_ratio(frames: torch.Tensor) -> float:
    """Largest frame-to-frame change over the median change: 1 is perfectly even, big means a jump."""
    d = torch.tensor(frame_distances(frames))
    median = float(d.median())
    return float(d.max()) / median if median > 0 else float("inf") if float(d.max()) > 0 else 1.0


def max_step_share(frames: torch.Tensor) -> float:
    """The largest frame-to-frame change as a share of the change from the first frame to the last: about
    1/(N-1) along a smooth morph, about 1 where it snaps from one end to the other or flickers between them."""
    steps = frame_distances(frames)
    whole = float((frames[-1] - frames[0]).abs().mean())
    if whole > 0:
        return max(steps) / whole
    return 0.0 if max(steps) == 0 else math.inf
