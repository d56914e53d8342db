"""A sampling run written to files as it goes: images into a numbered folder, a walk's frames into a folder
of its own, each batch kept the moment it is done, so Ctrl-C loses only the batch in progress."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path

import torch

from ldm.media import labelled_grid, make_grid, save_image_atomic, save_png, write_movies
from ldm.outputs import NumberedFolder, finish_before_ctrl_c
from ldm.sampling.init_image import InitImage
from ldm.sampling.inpaint import Mask
from ldm.sampling.requests import ImageSpec, Progress, Settings, denoising_steps
from ldm.sampling.sampler import SamplingModel
from ldm.sampling.walks import render_walk
from ldm.sampling.xyz import Axis, Cell, plot_cells

XYZ_PREFIX = "xyz-grid-"


class Interrupted(Exception):
    """Ctrl-C during a run: the files finished and kept, out of how many."""

    def __init__(self, kept: list[Path], total: int, what: str):
        super().__init__(f"kept {len(kept)} of {total} {what}")
        self.kept, self.total, self.what = kept, total, what


def render_images(model: SamplingModel, specs: Sequence[ImageSpec], settings: Settings, out: NumberedFolder,
                  batch_size: int = 8, progress: Progress | None = None, init: InitImage | None = None,
                  mask: Mask | None = None) -> list[Path]:
    """Each batch written as soon as it is done, under the folder's next free numbers; then the run's grid
    (init: image to image from it; mask: inpainting)."""
    specs = list(specs)

    def keep(start, images):
        with finish_before_ctrl_c():
            for spec, image in zip(specs[start:start + len(images)], images, strict=True):
                out.image(image, spec.seed, model.parameters_text(spec, settings, init, mask))

    try:
        images = model.generate(specs, settings, batch_size, progress, on_batch=keep, init=init, mask=mask)
    except KeyboardInterrupt:
        raise Interrupted(list(out.written), len(specs), "images") from None
    if len(images) > 1:
        out.grid(images)
    return out.written


def render_xyz(model: SamplingModel, axes: list[Axis], spec: ImageSpec, settings: Settings, out: NumberedFolder,
               batch_size: int = 8, progress: Progress | None = None, init: InitImage | None = None,
               mask: Mask | None = None) -> list[Path]:
    """An X/Y/Z plot: every cell written as its own PNG in reading order as it is done (neighbours with the
    same settings denoised together), then the labelled grid `xyz-grid-NNNN.png`."""
    cells = plot_cells(axes, spec, settings)
    # every cell's settings checked before any work, and the steps each runs
    steps = {cell.settings: denoising_steps(model.request(cell.settings, init, mask)) for cell in cells}
    runs: list[list[Cell]] = []
    for cell in cells:
        if runs and runs[-1][0].settings == cell.settings:
            runs[-1].append(cell)
        else:
            runs.append([cell])
    total = sum(steps[c.settings] for c in cells)
    images, done = [], 0
    try:
        for run in runs:
            def keep(start, batch, run=run):
                with finish_before_ctrl_c():
                    for cell, image in zip(run[start:start + len(batch)], batch, strict=True):
                        out.image(image, cell.spec.seed, model.parameters_text(cell.spec, cell.settings, init, mask))

            def report(finished, _, offset=done):
                if progress is not None:
                    progress(offset + finished, total)

            images.append(model.generate([c.spec for c in run], run[0].settings, batch_size, report, keep, init, mask))
            done += len(run) * steps[run[0].settings]
    except KeyboardInterrupt:
        raise Interrupted(list(out.written), len(cells), "images") from None
    labels = [[axis.value_label(v) for v in axis.values] for axis in axes] + [[""]] * (3 - len(axes))
    grid, _ = labelled_grid(torch.cat(images), *labels)
    out.sheet(grid, XYZ_PREFIX)
    return out.written


def render_animation(model: SamplingModel, prompts: Sequence[str], seeds: Sequence[int], frames: int,
                     settings: Settings, folder: Path, fps: float = 12, progress: Progress | None = None,
                     **walk) -> list[Path]:
    """A walk's or morph's frames written into `folder` as they are final, then its grid and GIF/MP4.

    `walk` takes render_walk's options (loop, ease, morph_mode, even, batch_size).
    """
    kept: dict[int, Path] = {}

    def keep(indices, specs, images):
        with finish_before_ctrl_c():
            for k, spec, image in zip(indices, specs, images, strict=True):
                kept[k] = save_png(image, folder / f"frame-{k:04d}.png", model.parameters_text(spec, settings))

    try:
        _, images = render_walk(model, prompts, seeds, frames, settings, progress=progress, on_frames=keep, **walk)
    except KeyboardInterrupt:
        if not kept:
            with contextlib.suppress(OSError):  # leave no empty folder behind
                folder.rmdir()
        raise Interrupted([kept[k] for k in sorted(kept)], frames, "frames (no animation)") from None
    grid = save_image_atomic(make_grid(images), folder / "grid.png")
    return [kept[k] for k in sorted(kept)] + [grid] + write_movies(folder, images, fps)
