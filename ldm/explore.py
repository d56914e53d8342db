"""Latent-space exploration: 2-D maps, principal directions, VAE reconstruction and anomaly scores."""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors import SafetensorError
from safetensors.torch import load_file

from ldm.cache import weights_digest
from ldm.data.images import to_tensor
from ldm.errors import LdmError
from ldm.folders import folder_training_images
from ldm.io import one_line
from ldm.media import to_uint8
from ldm.metrics import psnr
from ldm.sampling.interpolate import slerp
from ldm.sampling.prompt_syntax import escape
from ldm.sampling.requests import Progress
from ldm.shards import metadata, write_tensors

PROJECTIONS = ("pca", "tsne", "umap")
SPACES = ("captions", "latents")  # what a map places: caption embeddings or image latents
MAP_FILE = Path("explorer") / "map.safetensors"  # in a pipeline folder: the explorer's map of its training set
MAP_FORMAT = "ldm-explorer-map-1"


def available_projections() -> tuple[str, ...]:
    """The projections this installation can draw: UMAP only where umap-learn imports."""
    try:
        import umap  # noqa: F401
    except Exception:  # not installed, or broken (numba's imports fail in more ways than ImportError)
        return tuple(p for p in PROJECTIONS if p != "umap")
    return PROJECTIONS


@dataclass
class MapProjection:
    """A 2-D map of points, and for a linear map (PCA) the way back from a map position to the points' space."""

    xy: np.ndarray  # (N, 2)
    pca: object | None = None  # scikit-learn's fitted PCA (inverse_transform); None for t-SNE/UMAP

    def inverse(self, point: np.ndarray) -> np.ndarray | None:
        """The high-dimensional point a map position stands for (PCA only: t-SNE and UMAP have no inverse)."""
        return None if self.pca is None else self.pca.inverse_transform(np.asarray(point, float)[None])[0]

    def nearest(self, point: np.ndarray, k: int = 4) -> list[tuple[int, float]]:
        """The k map points nearest a position with inverse-distance weights summing to 1 (a hit: that point)."""
        dist = np.linalg.norm(self.xy - np.asarray(point, float), axis=1)
        order = np.argsort(dist)[:k]
        if dist[order[0]] <= 1e-6 * np.ptp(self.xy, axis=0).max():  # on a point, up to the SVG round trip
            return [(int(order[0]), 1.0)]
        weights = 1 / dist[order]
        return [(int(i), float(w)) for i, w in zip(order, weights / weights.sum(), strict=True)]


def fit_map(points: torch.Tensor, method: str = "pca", seed: int = 0) -> MapProjection:
    """(N, D) -> a 2-D map: PCA (deterministic, fast, invertible), t-SNE or UMAP (neighbourhoods)."""
    x = points.double().numpy()
    if len(x) < 3:
        raise LdmError("a map needs at least 3 points")
    if method == "pca":
        from sklearn.decomposition import PCA

        # scikit-learn fixes each axis's sign (svd_flip), so maps do not flip between runs
        pca = PCA(n_components=2, svd_solver="full").fit(x)
        return MapProjection(pca.transform(x), pca)
    if method == "tsne":
        from sklearn.manifold import TSNE

        xy = TSNE(n_components=2, random_state=seed, init="pca", perplexity=min(30, len(x) - 1)).fit_transform(x)
        return MapProjection(xy)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise LdmError("UMAP needs the umap-learn package: pip install umap-learn") from None
        return MapProjection(umap.UMAP(n_components=2, random_state=seed).fit_transform(x))
    raise LdmError(f"unknown projection {method!r}: choose one of {', '.join(PROJECTIONS)}")


def project_2d(points: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) coordinates (see fit_map)."""
    return fit_map(points, method, seed).xy


@dataclass
class PrincipalDirections:
    """The top principal directions of a set of latents, with the spread along each."""

    mean: torch.Tensor  # (C, h, w)
    directions: torch.Tensor  # (k, C*h*w), unit rows
    stds: torch.Tensor  # (k,)

    @classmethod
    def fit(cls, latents: torch.Tensor, k: int = 4) -> PrincipalDirections:
        """PCA of (N, C, h, w) latents (scikit-learn's, in float64)."""
        from sklearn.decomposition import PCA

        flat = latents.flatten(1).double().numpy()
        pca = PCA(n_components=min(k, *flat.shape), svd_solver="full").fit(flat)
        return cls(torch.from_numpy(pca.mean_).reshape(latents.shape[1:]).float(),
                   torch.from_numpy(pca.components_).float(), torch.from_numpy(pca.explained_variance_ ** 0.5).float())

    def traverse(self, latent: torch.Tensor, amounts: Sequence[float]) -> torch.Tensor:
        """Move (C, h, w) `latent` by amounts[i] standard deviations along direction i."""
        shift = sum(a * s * d for a, s, d in zip(amounts, self.stds, self.directions, strict=False))
        return latent + torch.as_tensor(shift).reshape(latent.shape) if len(amounts) else latent


@torch.no_grad()
def prompt_features(model, prompts: Sequence[str]) -> torch.Tensor:
    """One vector per prompt: a SamplingModel's text-encoder states averaged over the real (unpadded) tokens."""
    tokenizer, encoder = model.pipe.tokenizer, model.pipe.text_encoder
    tokens = tokenizer(list(prompts), padding="max_length", truncation=True, max_length=tokenizer.model_max_length,
                       return_tensors="pt")
    states = encoder(tokens.input_ids.to(model.device), attention_mask=tokens.attention_mask.to(model.device))[0]
    mask = tokens.attention_mask[..., None].float()
    return (states.float().cpu() * mask).sum(1) / mask.sum(1).clamp_min(1)


@torch.no_grad()
def encode_latents(vae, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] -> posterior means (N, C, h, w), unscaled."""
    out = []
    for start in range(0, len(images), batch):
        out.append(vae.encode(images[start:start + batch].to(vae.device, vae.dtype)).latent_dist.mean.float().cpu())
    return torch.cat(out)


@torch.no_grad()
def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Unscaled latents (N, C, h, w) -> images in [0, 1]."""
    return (vae.decode(latents.to(vae.device, vae.dtype)).sample.float().cpu() / 2 + 0.5).clamp(0, 1)


@dataclass
class Reconstruction:
    """An image through the VAE and what that says about it."""

    image: torch.Tensor  # (3, H, W) in [0, 1]
    reconstruction: torch.Tensor
    latent: torch.Tensor  # (C, h, w)
    psnr_db: float
    error: float  # mean squared error in [0, 1] units
    compression: float  # pixel bytes (uint8 RGB) over latent bytes (fp16)


def reconstruct(vae, image: torch.Tensor) -> Reconstruction:
    """Encode and decode one (3, H, W) image in [0, 1]; report PSNR and the compression ratio."""
    latent = encode_latents(vae, image[None] * 2 - 1)[0]
    recon = decode_latents(vae, latent[None])[0]
    error = float(((recon - image) ** 2).mean())
    pixel_bytes = image.numel()  # one byte per channel value
    latent_bytes = latent.numel() * 2  # stored as fp16
    return Reconstruction(image, recon, latent, float(psnr(recon[None] * 2 - 1, image[None] * 2 - 1)), error,
                          pixel_bytes / latent_bytes)


def anomaly_percentile(error: float, reference_errors: torch.Tensor) -> float:
    """Percent of the training set reconstructed better than this image (100: stranger than all of it)."""
    return float((reference_errors < error).float().mean() * 100)


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


def _digests(model) -> dict[str, str]:
    """What a view's encodings depend on besides its images: the VAE's and the text encoder's weights."""
    with model.exclusive():  # not while a request switches a LoRA into the text encoder
        return {"vae": weights_digest(model.vae), "text_encoder": weights_digest(model.pipe.text_encoder)}


def explorer_cache_dir() -> Path:
    """Where the explorer keeps its encodings: $XDG_CACHE_HOME/ldm/explorer (~/.cache/ldm/explorer)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ldm" / "explorer"


class DatasetView:
    """A training set seen through a SamplingModel: images, captions, and (computed once, see prepare) their
    VAE latents, caption embeddings, principal directions and reconstruction errors."""

    ERROR_IMAGES = 1024  # reconstruction errors of this many images are the yardstick for anomaly scores
    BATCH = 64

    def __init__(self, images: torch.Tensor, captions: list[str], model, cache_dir: Path | None = None,
                 encoded: dict[str, torch.Tensor] | None = None):
        self.images = images  # (N, 3, H, W) in [-1, 1]; a map file's view: its small thumbnails
        self.captions = captions
        self.model = model
        self.vae = model.vae
        self.cache_dir = cache_dir  # None: encode in memory only
        self.done, self.total = 0, 1  # progress of prepare(), read by waiting threads
        self._encoded = encoded  # given: a map file's, nothing left to prepare
        self._prepare_lock = threading.Lock()
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
        path = Path(path)
        try:
            tensors, meta = load_file(str(path)), metadata(path)  # load_file checks the header first
            captions = json.loads(meta["captions"])
            strip = Image.open(io.BytesIO(tensors["thumbnails_png"].numpy().tobytes())).convert("RGB")
            encoded = {name: tensors[name].float() for name in ("latents", "embeddings", "errors")}
        except (OSError, ValueError, KeyError, SafetensorError) as exc:
            raise LdmError(f"{path} is not an explorer map file ({one_line(exc)})") from None
        if meta.get("format") != MAP_FORMAT or not len(captions) == len(encoded["latents"]) == \
                len(encoded["embeddings"]) or strip.height != len(captions) * strip.width:
            raise LdmError(f"{path} is not an explorer map file of format {MAP_FORMAT}")
        if {key: meta.get(key) for key in ("vae", "text_encoder")} != _digests(model):
            # its latents would decode to other pictures, its caption embeddings sit in another space
            raise LdmError(f"{path} was made with another VAE or text encoder: rebuild it with "
                           "scripts/build_explorer_map.py")
        side = strip.width  # the thumbnails lie one under the other
        images = to_tensor(strip).reshape(3, len(captions), side, side).transpose(0, 1).contiguous()
        return cls(images, captions, model, encoded=encoded)

    def save_map(self, path: str | Path, thumbnail: int = 32) -> None:
        """Write what the map needs (fp16 latents and caption embeddings, reconstruction errors, captions and
        `thumbnail`-pixel thumbnails) as one safetensors file that from_map reads without the images."""
        self.wait()
        thumbs = Image.new("RGB", (thumbnail, thumbnail * len(self)))
        for k, picture in enumerate(to_uint8(self.images / 2 + 0.5)):
            thumbs.paste(Image.fromarray(picture).resize((thumbnail, thumbnail), Image.BOX), (0, k * thumbnail))
        buf = io.BytesIO()
        # 256 colours: a quarter of a lossless PNG's bytes, and an emoji's few flat colours survive
        thumbs.quantize(256).save(buf, format="PNG", optimize=True)
        tensors = {"latents": self.latents.half(), "embeddings": self.embeddings.half(), "errors": self.errors,
                   "thumbnails_png": torch.frombuffer(bytearray(buf.getvalue()), dtype=torch.uint8)}
        write_tensors(path, tensors, {"format": MAP_FORMAT, "captions": json.dumps(self.captions),
                                      **_digests(self.model)})

    def __len__(self) -> int:
        return len(self.captions)

    # ---- encodings, computed once -----------------------------------------------------------------
    def _cache_key(self) -> str:
        h = hashlib.sha256()
        digests = _digests(self.model)
        for part in ("explorer-1", digests["vae"], digests["text_encoder"], "\n".join(self.captions)):
            h.update(part.encode())
            h.update(b"\0")
        h.update(self.images.contiguous().view(torch.uint8).numpy().tobytes())
        return h.hexdigest()[:20]

    @torch.no_grad()
    def _encode(self, progress: Progress | None) -> dict[str, torch.Tensor]:
        batch, n_err = self.BATCH, min(len(self), self.ERROR_IMAGES)
        starts = list(range(0, len(self), batch))
        error_starts = list(range(0, n_err, batch))
        text_starts = list(range(0, len(self), 256))
        self.total = len(starts) + len(error_starts) + len(text_starts)

        def step():
            self.done += 1
            if progress is not None:
                progress(self.done, self.total)

        latents, errors, embeddings = [], [], []
        for s in starts:
            latents.append(encode_latents(self.vae, self.images[s:s + batch]))
            step()
        latents = torch.cat(latents)
        for s in error_starts:
            x = self.images[s:s + batch]
            recon = decode_latents(self.vae, latents[s:s + batch])
            errors.append(((recon - (x / 2 + 0.5)) ** 2).flatten(1).mean(1))
            step()
        for s in text_starts:
            with self.model.exclusive():  # the plain text encoder, not one a request has adapted with a LoRA
                self.model.loras.use(None)
                embeddings.append(prompt_features(self.model, self.captions[s:s + 256]))
            step()
        return {"latents": latents, "errors": torch.cat(errors), "embeddings": torch.cat(embeddings)}

    def prepare(self, progress: Progress | None = None) -> None:
        """Encode every image's latent, every caption and the reconstruction errors once, reporting
        progress(done, total); with a cache_dir, load them from (or save them to) a file keyed by the VAE,
        the text encoder and the data, so that later starts take seconds."""
        with self._prepare_lock:
            if self._encoded is not None:
                return
            self.done = 0
            path = None
            if self.cache_dir is not None:
                path = Path(self.cache_dir) / f"explorer-{self._cache_key()}.safetensors"
                if path.is_file():
                    self._encoded = load_file(str(path))
                    self.done = self.total
                    return
            encoded = self._encode(progress)  # a Stop raised from progress leaves nothing half-done
            if path is not None:
                write_tensors(path, encoded, {"count": str(len(self))})
            self._encoded = encoded

    def wait(self, progress: Progress | None = None, poll_s: float = 0.25) -> None:
        """prepare() here, or, while another thread prepares, report its progress until it is done."""
        while self._encoded is None:
            if self._prepare_lock.acquire(timeout=poll_s):
                self._prepare_lock.release()
                self.prepare(progress)
            elif progress is not None:
                progress(self.done, self.total)

    @property
    def ready(self) -> bool:
        """True once the encodings are in memory."""
        return self._encoded is not None

    @property
    def latents(self) -> torch.Tensor:
        """VAE posterior means of every image (unscaled)."""
        self.wait()
        return self._encoded["latents"]

    @property
    def embeddings(self) -> torch.Tensor:
        """Pooled text-encoder embeddings of every caption."""
        self.wait()
        return self._encoded["embeddings"]

    @property
    def directions(self) -> PrincipalDirections:
        """Top principal directions of the image latents."""
        if self._directions is None:
            self._directions = PrincipalDirections.fit(self.latents)
        return self._directions

    @property
    def errors(self) -> torch.Tensor:
        """Reconstruction errors of up to ERROR_IMAGES images: the yardstick for anomaly scores."""
        self.wait()
        return self._encoded["errors"]

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
