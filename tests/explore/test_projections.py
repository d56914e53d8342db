"""2-D maps: PCA, t-SNE, UMAP where it imports, and unknown projections."""

import sys
import types

import numpy as np
import pytest
import torch

from ldm.errors import LdmError
from ldm.explore.projections import PROJECTIONS, available_projections, fit_map, project_2d


def test_pca_map_separates_two_clusters_and_is_stable():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20, 50, generator=g)
    b = torch.randn(20, 50, generator=g) + 6
    xy = project_2d(torch.cat([a, b]))
    assert xy.shape == (40, 2)
    assert (xy[:20, 0].max() < xy[20:, 0].min()) or (xy[20:, 0].max() < xy[:20, 0].min())
    assert np.allclose(xy, project_2d(torch.cat([a, b])))


def test_tsne_map_and_unknown_projection():
    pts = torch.randn(30, 8, generator=torch.Generator().manual_seed(1))
    assert project_2d(pts, "tsne").shape == (30, 2)
    with pytest.raises(LdmError, match="unknown projection"):
        project_2d(pts, "mds")


def test_umap_is_offered_only_where_umap_learn_imports(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # an import of it fails, as without umap-learn
    assert available_projections() == ("pca", "tsne")
    monkeypatch.setitem(sys.modules, "umap", types.ModuleType("umap"))
    assert available_projections() == PROJECTIONS


@pytest.mark.parametrize("method", ["pca", "tsne"])
def test_a_maps_own_points_placed_again_land_where_the_map_has_them(method):
    points = torch.randn(30, 8, generator=torch.Generator().manual_seed(2))
    projection = fit_map(points, method)
    np.testing.assert_allclose(projection.place(points, points[:5]), projection.xy[:5], atol=1e-6)


def test_a_new_point_goes_among_its_nearest_on_a_map_without_a_function():
    points = torch.randn(30, 8, generator=torch.Generator().manual_seed(3))
    tsne = fit_map(points, "tsne")
    j = int((points[1:] - points[0]).norm(dim=1).argmin()) + 1  # point 0's nearest: halfway, they are the nearest
    halfway = ((points[0] + points[j]) / 2)[None]
    np.testing.assert_allclose(tsne.place(points, halfway, k=2)[0], tsne.xy[[0, j]].mean(0), atol=1e-6)
    pca = fit_map(points, "pca")  # PCA is linear: halfway between the points is halfway between their places
    np.testing.assert_allclose(pca.place(points, halfway)[0], pca.xy[[0, j]].mean(0), atol=1e-6)
