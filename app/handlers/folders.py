"""A folder of its own for each request's files, old ones pruned, and a request's images written into one."""

from __future__ import annotations

import contextlib
import shutil
import time
import uuid
from pathlib import Path

from ldm.media import save_png

KEEP_S = 900  # Gradio serves copies of a request's files, so ours are needed only until it has answered


def prune(folder: Path, max_age_s: float) -> None:
    """Remove the request folders in `folder` last changed more than max_age_s ago."""
    if not folder.is_dir():
        return
    now = time.time()
    for old in folder.iterdir():
        with contextlib.suppress(OSError):  # another request may be removing it too
            if old.is_dir() and now - old.stat().st_mtime > max_age_s:
                shutil.rmtree(old)


class RequestFolders:
    """New folders under one root, one per request; those older than KEEP_S go, so use stays bounded."""

    def __init__(self, root: Path):
        self.root = root

    def new(self, kind: str) -> Path:
        """A new, empty folder for one request of this kind."""
        prune(self.root, KEEP_S)
        folder = self.root / f"{kind}-{uuid.uuid4().hex[:10]}"
        folder.mkdir(parents=True)
        return folder

    def publish(self, kind: str, specs: list, images, texts: list[str]) -> tuple:
        """One request's images as PNGs with their parameters in a new folder: (gallery of (png, 'seed N'),
        the parameters summary, the PNG files)."""
        folder = self.new(kind)
        paths = [str(save_png(img, folder / f"{k:02d}-{sp.seed}.png", text))
                 for k, (img, sp, text) in enumerate(zip(images, specs, texts, strict=True))]
        gallery = [(p, f"seed {sp.seed}") for p, sp in zip(paths, specs, strict=True)]
        return gallery, parameters_summary(texts[0], [sp.seed for sp in specs]), paths


def parameters_summary(first: str, seeds: list[int]) -> str:
    """The first image's parameters, and the other images' seeds (all they differ in) once, not a line each."""
    if len(seeds) < 2:
        return first
    return f"{first}\n\nThe other images differ only in Seed: {', '.join(str(s) for s in seeds[1:])}"
