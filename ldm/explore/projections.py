"""2-D maps of high-dimensional points: PCA (invertible), t-SNE or UMAP, and what lies under a map position."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ldm.errors import LdmError

PROJECTIONS = ("pca", "tsne", "umap")


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

    def place(self, points: torch.Tensor, new: torch.Tensor, k: int = 4) -> np.ndarray:
        """Map positions (M, 2) of new high-dimensional points (M, D) on this map of `points` (N, D): PCA projects
        them; t-SNE and UMAP maps have no such function, so each goes among its k nearest points, weighted by
        inverse distance (onto a point it equals)."""
        x = new.double().numpy()
        if self.pca is not None:
            return self.pca.transform(x)
        dist = torch.cdist(new.double(), points.double()).numpy()
        order = np.argsort(dist, axis=1)[:, :k]
        near = np.take_along_axis(dist, order, axis=1)
        weights = 1 / np.maximum(near, 1e-12)
        weights[near[:, 0] <= 1e-9] = np.eye(order.shape[1])[0]
        return np.einsum("mk,mkd->md", weights / weights.sum(1, keepdims=True), self.xy[order])

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
