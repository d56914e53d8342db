"""X/Y/Z plots: up to three axes of values (`steps=4,8,14`), every combination one image, as AUTOMATIC1111's
script. `prompt=cat,dog` is its "Prompt S/R": the first value is searched for in the prompt (and the
negative prompt) and each value put in its place."""

from __future__ import annotations

import csv
import itertools
from dataclasses import dataclass, replace

from ldm.errors import LdmError, quoted
from ldm.sampling.requests import ImageSpec, Settings
from ldm.sampling.schema import FIELDS, SPEC, Field, part

MAX_AXES = 3
MAX_CELLS = 64  # a plot larger than this is a typo or a job for a script


@dataclass(frozen=True)
class AxisKind:
    """One thing an axis can vary: its label in the grid, its value type, and where it goes."""

    label: str
    kind: type
    field: str  # ImageSpec or Settings field (prompt: search and replace)


def axes_of(fields: tuple[Field, ...] = FIELDS) -> dict[str, AxisKind]:
    """The axes a plot may vary: the request fields the schema gives an axis name, in its order."""
    return {f.axis: AxisKind(f.axis_label or f.png, f.kind, f.name) for f in fields if f.axis}


AXES = axes_of()
ALIASES = {"cfg": "guidance", "sampler": "scheduler", "denoising": "strength"}
SPEC_FIELDS = {f.name for f in part(SPEC)}


@dataclass(frozen=True)
class Axis:
    """A named axis and its values."""

    name: str
    values: tuple

    @property
    def label(self) -> str:
        """How the grid names the axis."""
        return AXES[self.name].label

    def value_label(self, value) -> str:
        """How the grid names one of its values."""
        if self.name == "prompt":
            return str(value)
        return f"{self.label}: {value:g}" if isinstance(value, float) else f"{self.label}: {value}"


def parse_axis(text: str) -> Axis:
    """`name=v1,v2,...` (values may be "quoted, with commas") -> Axis, or a one-line LdmError."""
    name, sep, rest = text.partition("=")
    name = ALIASES.get(name.strip().lower(), name.strip().lower())
    if not sep or name not in AXES:
        raise LdmError(f"an X/Y/Z axis is AXIS=V1,V2,... with AXIS one of {', '.join(AXES)}; got {quoted(text)}")
    try:
        raw = [v.strip() for v in next(csv.reader([rest], skipinitialspace=True))] if rest.strip() else []
    except csv.Error as exc:
        raise LdmError(f"X/Y/Z axis {name}: cannot read the values {quoted(rest)} ({exc})") from None
    if not raw or any(v == "" for v in raw):
        raise LdmError(f"X/Y/Z axis {name}: give one or more comma-separated values, got {quoted(rest)}")
    kind = AXES[name].kind
    try:
        values = tuple(kind(v) for v in raw)
    except ValueError:
        what = "whole numbers" if kind is int else "numbers"
        raise LdmError(f"X/Y/Z axis {name}: values must be {what}, got {quoted(rest)}") from None
    return Axis(name, values)


def parse_axes(texts: list[str]) -> list[Axis]:
    """One to three distinct axes (X, then Y, then Z)."""
    axes = [parse_axis(t) for t in texts]
    if not 1 <= len(axes) <= MAX_AXES:
        raise LdmError(f"an X/Y/Z plot takes 1 to {MAX_AXES} axes, got {len(axes)}")
    names = [a.name for a in axes]
    if len(set(names)) != len(names):
        raise LdmError(f"an X/Y/Z plot names an axis twice: {', '.join(names)}")
    count = 1
    for axis in axes:
        count *= len(axis.values)
    if count > MAX_CELLS:
        raise LdmError(f"the X/Y/Z axes ask for {count} images; at most {MAX_CELLS} in one plot")
    return axes


@dataclass(frozen=True)
class Cell:
    """One image of the plot: its place (x, y, z), and what makes it."""

    place: tuple[int, int, int]
    spec: ImageSpec
    settings: Settings


def plot_cells(axes: list[Axis], spec: ImageSpec, settings: Settings) -> list[Cell]:
    """Every combination, Z slowest and X fastest (reading order), each the base request with its values."""
    padded = [*axes, *[Axis("seed", (None,))] * (MAX_AXES - len(axes))]  # absent axes: one value, no change
    prompt_axis = next((a for a in axes if a.name == "prompt"), None)
    if prompt_axis is not None and prompt_axis.values[0] not in spec.prompt:
        raise LdmError(f"X/Y/Z axis prompt: the first value {quoted(prompt_axis.values[0])} (what to replace) is not "
                       f"in the prompt {quoted(spec.prompt)}")
    cells = []
    for z, y, x in itertools.product(*(range(len(a.values)) for a in reversed(padded))):
        cell_spec, cell_settings = spec, settings
        for axis, k in zip(padded, (x, y, z)):
            value = axis.values[k]
            if value is None:
                continue
            field = AXES[axis.name].field
            if axis.name == "prompt":
                search = axis.values[0]
                cell_spec = replace(cell_spec, prompt=cell_spec.prompt.replace(search, value))
                cell_settings = replace(cell_settings,
                                        negative_prompt=cell_settings.negative_prompt.replace(search, value))
            elif field in SPEC_FIELDS:
                cell_spec = replace(cell_spec, **{field: value})
            else:
                cell_settings = replace(cell_settings, **{field: value})
        cells.append(Cell((x, y, z), cell_spec, cell_settings))
    return cells
