"""2-D maps: PCA, t-SNE, UMAP where it imports, and unknown projections."""

import sys
import types

import numpy as np
import pytest
import torch

from ldm.errors import LdmError
from ldm.explore.projections import PROJECTIONS, available_projections, project_2d


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
