"""Latent-space exploration: 2-D maps, principal directions, VAE reconstruction and anomaly scores."""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from ldm.errors import LdmError
from ldm.media import to_uint8
from ldm.metrics import psnr

PROJECTIONS = ("pca", "tsne", "umap")


def project_2d(points: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(N, D) -> (N, 2) coordinates: PCA (deterministic, fast), t-SNE or UMAP (neighbourhoods)."""
    x = points.double().numpy()
    if len(x) < 3:
        raise LdmError("a map needs at least 3 points")
    if method == "pca":
        from sklearn.decomposition import PCA

        # scikit-learn fixes each axis's sign (svd_flip), so maps do not flip between runs
        return PCA(n_components=2, svd_solver="full").fit_transform(x)
    if method == "tsne":
        from sklearn.manifold import TSNE

        return TSNE(n_components=2, random_state=seed, init="pca", perplexity=min(30, len(x) - 1)).fit_transform(x)
    if method == "umap":
        try:
            import umap
        except ImportError:
            raise LdmError("UMAP needs the umap-learn package: pip install umap-learn") from None
        return umap.UMAP(n_components=2, random_state=seed).fit_transform(x)
    raise LdmError(f"unknown projection {method!r}: choose one of {', '.join(PROJECTIONS)}")


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


def reconstruction_errors(vae, images: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """Per-image mean squared reconstruction error of (N, 3, H, W) images in [-1, 1], in [0, 1] units."""
    errors = []
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        recon = decode_latents(vae, encode_latents(vae, x))
        errors.append(((recon - (x / 2 + 0.5)) ** 2).flatten(1).mean(1))
    return torch.cat(errors)


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
    """A (3, H, W) image in [0, 1] as a small PNG data URI."""
    buf = io.BytesIO()
    Image.fromarray(to_uint8(image[None])[0]).resize((size, size), Image.NEAREST).save(buf, format="PNG")
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


def scatter_svg(xy: np.ndarray, labels: Sequence[str], thumbnails: Sequence[str] | None = None,
                selected: Sequence[int] = (), size: int = 560, pad: int = 28,
                colours: Sequence[str] | None = None) -> str:
    """An SVG scatter plot: a <title> label and an optional thumbnail that shows on hover for each point.

    Points are filled with `colours` (one #rrggbb each; grey without) and picks drawn larger in red/blue.
    Every point carries data-i (its index) so a click handler can report which one was picked.
    """
    lo, hi = xy.min(0), xy.max(0)
    span = np.where(hi > lo, hi - lo, 1.0)
    pos = pad + (xy - lo) / span * (size - 2 * pad)
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


class DatasetView:
    """A training set seen through a model: images, captions, and (computed once, on first use) their
    VAE latents, caption embeddings, principal directions and reconstruction errors."""

    def __init__(self, images: torch.Tensor, captions: list[str], vae, embed):
        self.images = images  # (N, 3, H, W) in [-1, 1]
        self.captions = captions
        self.vae = vae
        self.embed = embed  # list[str] -> (N, D) pooled caption embeddings
        self._latents: torch.Tensor | None = None
        self._embeddings: torch.Tensor | None = None
        self._directions: PrincipalDirections | None = None
        self._errors: torch.Tensor | None = None
        self._thumbs: dict[int, str] = {}
        self._colours: dict[int, str] = {}

    @classmethod
    def from_dataset(cls, dataset, vae, embed, limit: int | None = None) -> DatasetView:
        """Load up to `limit` images of an ldm dataset (in order) into memory."""
        n = len(dataset) if limit is None else min(limit, len(dataset))
        if n == 0:
            raise LdmError("the explorer's dataset has no images")
        images = torch.stack([dataset.load(i) for i in range(n)])
        return cls(images, [dataset.captions[i] for i in range(n)], vae, embed)

    def __len__(self) -> int:
        return len(self.captions)

    @property
    def latents(self) -> torch.Tensor:
        """VAE posterior means of every image (unscaled)."""
        if self._latents is None:
            self._latents = encode_latents(self.vae, self.images)
        return self._latents

    @property
    def embeddings(self) -> torch.Tensor:
        """Pooled text-encoder embeddings of every caption."""
        if self._embeddings is None:
            self._embeddings = torch.cat([self.embed(self.captions[s:s + 256]) for s in range(0, len(self), 256)])
        return self._embeddings

    @property
    def directions(self) -> PrincipalDirections:
        """Top principal directions of the image latents."""
        if self._directions is None:
            self._directions = PrincipalDirections.fit(self.latents)
        return self._directions

    @property
    def errors(self) -> torch.Tensor:
        """Reconstruction errors of up to 1,024 images: the yardstick for anomaly scores."""
        if self._errors is None:
            self._errors = reconstruction_errors(self.vae, self.images[:1024])
        return self._errors

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
        if space not in ("captions", "latents"):
            raise LdmError(f"unknown space {space!r}: choose captions or latents")
        points = (self.embeddings if space == "captions" else self.latents.flatten(1))[indices]
        xy = project_2d(points, method)
        chosen = [indices.index(i) for i in selected if i in indices]
        svg = scatter_svg(xy, [self.captions[i] for i in indices], [self.thumbnail(i) for i in indices], chosen,
                          colours=[self.colour(i) for i in indices])
        return svg, xy.tolist()
