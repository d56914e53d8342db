"""DatasetView: a training set seen through a SamplingModel, as the latent-space tab asks for it.

It composes the parts: its encodings (encodings.py: computed once, cached on disk), the maps drawn of them
(projections.py; the last one kept), the pictures on the page (drawing.py) and map files (map_file.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from ldm.errors import LdmError
from ldm.explore.drawing import MapMarks, map_position, scatter_svg, subject_colour, thumbnail_uri
from ldm.explore.encodings import Encodings
from ldm.explore.latents import PrincipalDirections, decode_latents, encode_latents
from ldm.explore.map_file import MAP_FILE, read_map, write_map
from ldm.explore.projections import MapProjection, fit_map
from ldm.folders import folder_training_images
from ldm.sampling.interpolate import slerp
from ldm.sampling.prompt_syntax import escape
from ldm.sampling.requests import Progress

SPACES = ("captions", "latents")  # what a map places: caption embeddings or image latents


class DatasetView:
    """A training set seen through a SamplingModel: images, captions, and (computed once, see prepare) their
    VAE latents, caption embeddings, principal directions and reconstruction errors."""

    def __init__(self, images: torch.Tensor, captions: list[str], model, cache_dir: Path | None = None,
                 encoded: dict[str, torch.Tensor] | None = None):
        self.images = images  # (N, 3, H, W) in [-1, 1]; a map file's view: its small thumbnails
        self.captions = captions
        self.model = model
        self.vae = model.vae
        self.encodings = Encodings(images, captions, model, cache_dir, encoded)  # None cache_dir: memory only
        self._directions: PrincipalDirections | None = None
        self._thumbs: dict[int, str] = {}
        self._colours: dict[int, str] = {}
        self._projections: dict[tuple, MapProjection] = {}  # the last map drawn

    @classmethod
    def from_dataset(cls, dataset, model, limit: int | None = None, cache_dir: Path | None = None) -> DatasetView:
        """Load up to `limit` images of an ldm dataset (in order) into memory."""
        n = len(dataset) if limit is None else min(limit, len(dataset))
        if n == 0:
            raise LdmError("the explorer's dataset has no images")
        images = torch.stack([dataset.load(i) for i in range(n)])
        return cls(images, [dataset.captions[i] for i in range(n)], model, cache_dir)

    @classmethod
    def for_model(cls, model, data: str | Path | None = None, limit: int | None = None,
                  cache_dir: Path | None = None) -> DatasetView | None:
        """The image folder `data` (default: the one the model was trained on, when its config names one)."""
        from ldm.config import DataConfig
        from ldm.data.dataset import build_dataset

        if data is None and model.folder is not None:
            data = folder_training_images(Path(model.folder))
            shipped = Path(model.folder) / MAP_FILE
            if data is None and shipped.is_file():  # the training images are not here: the map shipped with it
                return cls.from_map(shipped, model)
        if data is None:
            return None
        cfg = DataConfig(source="files", path=str(data), resolution=model.default_size)
        return cls.from_dataset(build_dataset(cfg, "train"), model, limit, cache_dir)

    @classmethod
    def from_map(cls, path: str | Path, model) -> DatasetView:
        """The view a map file (save_map's) holds: encodings, captions and thumbnails, without the images."""
        images, captions, encoded = read_map(path, model)
        return cls(images, captions, model, encoded=encoded)

    def save_map(self, path: str | Path, thumbnail: int = 32) -> None:
        """Write what the map needs as one safetensors file that from_map reads without the images (map_file.py)."""
        self.wait()
        encoded = {name: self.encodings[name] for name in ("latents", "embeddings", "errors")}
        write_map(path, self.images, self.captions, encoded, self.model, thumbnail)

    def __len__(self) -> int:
        return len(self.captions)

    # ---- encodings, computed once (encodings.py) ---------------------------------------------------
    def prepare(self, progress: Progress | None = None) -> None:
        """Encode every image's latent, every caption and the reconstruction errors once, reporting
        progress(done, total); with a cache_dir, load them from (or save them to) a file keyed by the VAE,
        the text encoder and the data, so that later starts take seconds."""
        self.encodings.prepare(progress)

    def wait(self, progress: Progress | None = None, poll_s: float = 0.25) -> None:
        """prepare() here, or, while another thread prepares, report its progress until it is done."""
        self.encodings.wait(progress, poll_s)

    @property
    def ready(self) -> bool:
        """True once the encodings are in memory."""
        return self.encodings.ready

    @property
    def latents(self) -> torch.Tensor:
        """VAE posterior means of every image (unscaled)."""
        return self.encodings["latents"]

    @property
    def embeddings(self) -> torch.Tensor:
        """Pooled text-encoder embeddings of every caption."""
        return self.encodings["embeddings"]

    @property
    def errors(self) -> torch.Tensor:
        """Reconstruction errors of up to ERROR_IMAGES images: the yardstick for anomaly scores."""
        return self.encodings["errors"]

    @property
    def directions(self) -> PrincipalDirections:
        """Top principal directions of the image latents."""
        if self._directions is None:
            self._directions = PrincipalDirections.fit(self.latents)
        return self._directions

    # ---- the map ----------------------------------------------------------------------------------
    def thumbnail(self, i: int) -> str:
        """Image i as a small data URI (cached)."""
        if i not in self._thumbs:
            self._thumbs[i] = thumbnail_uri(self.images[i] / 2 + 0.5)
        return self._thumbs[i]

    def colour(self, i: int) -> str:
        """Image i's subject colour for its point on the map (cached)."""
        if i not in self._colours:
            self._colours[i] = subject_colour(self.images[i] / 2 + 0.5)
        return self._colours[i]

    def subset(self, count: int, seed: int = 0) -> list[int]:
        """A fixed random subset of indices to draw (all of them when count >= N)."""
        if count >= len(self):
            return list(range(len(self)))
        return sorted(torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))[:count].tolist())

    def map_svg(self, space: str, method: str, indices: list[int], selected: Sequence[int] = ()) -> tuple[str, list]:
        """The SVG map of `indices` in 'captions' or 'latents' space, and the projected coordinates."""
        if space not in SPACES:
            raise LdmError(f"unknown space {space!r}: choose captions or latents")
        xy = self.projection(space, method, indices).xy
        chosen = [indices.index(i) for i in selected if i in indices]
        svg = scatter_svg(xy, [self.captions[i] for i in indices], [self.thumbnail(i) for i in indices], chosen,
                          colours=[self.colour(i) for i in indices])
        return svg, xy.tolist()

    def marks(self, images: torch.Tensor, labels: Sequence[str], legend: str, method: str, indices: list[int],
              shape: str = "diamond") -> MapMarks:
        """Images that are not the dataset's ((M, 3, H, W) in [0, 1], e.g. a user's own) placed on the latent map of
        `indices`: encoded by this view's VAE at the model's size, then projected (MapProjection.place)."""
        size = self.model.default_size
        if images.shape[-2:] != (size, size):
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", antialias=True)
        projection = self.projection("latents", method, indices)
        new = encode_latents(self.vae, images * 2 - 1).flatten(1)
        xy = projection.place(self.latents.flatten(1)[indices], new)
        return MapMarks(xy, list(labels), [thumbnail_uri(im) for im in images], [subject_colour(im) for im in images],
                        legend, shape)

    def marked_map_svg(self, method: str, indices: list[int], marks: Sequence[MapMarks]) -> str:
        """The latent map of `indices` with `marks` (from marks()) drawn above its points."""
        return scatter_svg(self.projection("latents", method, indices).xy, [self.captions[i] for i in indices],
                           [self.thumbnail(i) for i in indices], colours=[self.colour(i) for i in indices],
                           marks=marks)

    def projection(self, space: str, method: str, indices: list[int]) -> MapProjection:
        """The map of `indices` in 'captions' or 'latents' space (the last one is kept: a pick or a hover
        asks for the same map again, and t-SNE/UMAP take seconds)."""
        key = (space, method, tuple(indices))
        if key not in self._projections:
            points = (self.embeddings if space == "captions" else self.latents.flatten(1))[indices]
            self._projections = {key: fit_map(points, method)}
        return self._projections[key]

    def has_projection(self, space: str, method: str, indices: list[int]) -> bool:
        """Whether that map is the one kept (its position lookups cost no fit)."""
        return (space, method, tuple(indices)) in self._projections

    # ---- what lies under a map position, and pictures from latents ---------------------------------
    def latent_at(self, method: str, indices: list[int], svg_x: float, svg_y: float) -> torch.Tensor:
        """The latent under a position of the latent map: inverse PCA, else the nearest points' latents blended."""
        projection = self.projection("latents", method, indices)
        point = map_position(projection.xy, svg_x, svg_y)
        flat = projection.inverse(point)
        if flat is not None:
            return torch.from_numpy(flat).float().reshape(self.latents.shape[1:])
        return sum(w * self.latents[indices[k]] for k, w in projection.nearest(point))

    def image_at(self, method: str, indices: list[int], svg_x: float, svg_y: float) -> torch.Tensor:
        """The latent map's point under an SVG position, decoded: (3, H, W) in [0, 1]."""
        return decode_latents(self.vae, self.latent_at(method, indices, svg_x, svg_y)[None])[0]

    def captions_at(self, method: str, indices: list[int], svg_x: float, svg_y: float,
                    ) -> tuple[str, tuple[tuple[str, float], ...]]:
        """The caption map's position as a blend of the nearest captions: (first caption, mix terms).

        The map is drawn from pooled features, which cannot be turned back into the per-token embedding
        the UNet reads; the nearest captions' own embeddings, blended by inverse distance, can.
        """
        projection = self.projection("captions", method, indices)
        near = projection.nearest(map_position(projection.xy, svg_x, svg_y))
        first = escape(self.captions[indices[near[0][0]]])  # captions are prompts taken literally
        rest = [(escape(self.captions[indices[k]]), w) for k, w in near[1:]]
        return first, tuple(rest) + (((first, -sum(w for _, w in rest)),) if rest else ())

    def decoded(self, i: int) -> torch.Tensor:
        """Image i as the VAE gives it back from its latent: (3, H, W) in [0, 1]."""
        return decode_latents(self.vae, self.latents[i:i + 1])[0]

    def slerp_images(self, a: int, b: int, frames: int) -> torch.Tensor:
        """`frames` images along the spherical path between the latents of images a and b."""
        za, zb = self.latents[a:a + 1], self.latents[b:b + 1]
        return torch.cat([decode_latents(self.vae, slerp(za, zb, k / (frames - 1))) for k in range(frames)])

    def traversed(self, i: int, amounts: Sequence[float]) -> torch.Tensor:
        """Image i moved amounts[k] standard deviations along principal direction k: (3, H, W) in [0, 1]."""
        return decode_latents(self.vae, self.directions.traverse(self.latents[i], amounts)[None])[0]


def build_map(model, path: str | Path, data: str | Path | None = None, points: int = 1000, seed: int = 0,
              progress: Progress | None = None) -> DatasetView:
    """Encode a fixed random `points` of the model's training images (or of the image folder `data`) and write
    them as a map file (DatasetView.save_map) for the explorer to open without the images."""
    if points < 3:
        raise LdmError(f"a map needs at least 3 points, got {points}")
    if data is None and model.folder is not None:
        data = folder_training_images(Path(model.folder))
    if data is None:
        raise LdmError("the model's training images are not here: name their image folder")
    full = DatasetView.for_model(model, data)
    indices = full.subset(points, seed)
    view = DatasetView(full.images[indices], [full.captions[i] for i in indices], model)
    view.prepare(progress)
    view.save_map(path)
    return view
