"""The Train tab's map: a teach job's images, and the newest preview of its name, placed on the latent map of the
dataset the model was trained on, so the user sees where their concept sits and watches the previews move to it."""

from __future__ import annotations

import html
import os
from pathlib import Path

from PIL import Image

from app.handlers.shared import Shared
from app.handlers.teach_jobs import Job
from ldm.data.teach_images import load_concept_images
from ldm.errors import LdmError
from ldm.media import grid_tiles
from ldm.sampling.concepts import preview_prompts

MAP_POINTS = 600  # the dataset's points drawn around the marks (the Latent space tab's default map)


def note(text: str) -> str:
    """A line in the map's place."""
    return f"<p>{html.escape(text)}</p>"


def preview_of_name(preview: Path, job: Job, size: int):
    """The tiles of a job's preview grid that show the name alone ((M, 3, size, size) in [0, 1])."""
    with Image.open(preview) as picture:
        tiles = grid_tiles(picture, size)
    prompts = preview_prompts(job.name, job.class_prompt)[:len(tiles)]
    return tiles[[k for k, prompt in enumerate(prompts) if prompt == job.name]]


class TeachMap:
    """A job's map as SVG, drawn again only when its newest preview changed."""

    def __init__(self, shared: Shared):
        self.shared = shared
        self._drawn: tuple[tuple, str] | None = None  # (what it shows, the SVG): a poll asks every 2 s

    def svg(self, job: Job, preview: Path | None) -> str:
        """The dataset's latent map with the job's images and the preview's images of its name marked."""
        view = self.shared.view
        if view is None:
            return note("No map: this server has no dataset (start it with --data DIR, or serve a model that ships "
                        "its explorer map) to show your images among the training set.")
        if not view.ready:  # the server encodes it from its start; a poll never waits for it
            self.shared.batcher.run(view.prepare, wait=False)  # (no more than a read once it is done)
            return note("The map appears once the dataset is encoded (first start only).")
        key = (job.out, job.folder, preview, preview.stat().st_mtime_ns if preview is not None else None)
        if self._drawn is None or self._drawn[0] != key:
            self._drawn = key, self.shared.batcher.run(self._draw, job, preview)
        return self._drawn[1]

    def _draw(self, job: Job, preview: Path | None) -> str:
        view = self.shared.view
        size, indices = view.model.default_size, view.subset(MAP_POINTS)
        paths = sorted(p for p in (job.folder / "images").iterdir() if p.is_file())
        try:
            pixels, _ = load_concept_images(paths, size)
        except LdmError as exc:  # the worker refuses it too; the line names the user's file, not the server's copy
            return note(f"No map: {str(exc).replace(str(job.folder / 'images') + os.sep, '')}")
        marks = [view.marks((pixels + 1) / 2, [p.name for p in paths], "your images", "pca", indices)]
        if preview is not None:
            tiles = preview_of_name(preview, job, size)
            step = preview.stem.split("-")[-1].lstrip("0") or "0"
            marks.append(view.marks(tiles, [f"{job.name}, step {step}"] * len(tiles),
                                    f"{job.name} at step {step} (the newest preview)", "pca", indices, "ring"))
        return view.marked_map_svg("pca", indices, marks)
