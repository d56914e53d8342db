"""Latent-space helpers: 2-D projections, principal directions, reconstruction report, SVG map."""

import copy
import sys
import types

import numpy as np
import pytest
import torch

from ldm.errors import LdmError
from ldm.explore import (
    MAP_FILE,
    PROJECTIONS,
    DatasetView,
    PrincipalDirections,
    anomaly_percentile,
    available_projections,
    channel_images,
    project_2d,
    reconstruct,
    scatter_svg,
    subject_colour,
)


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


def test_principal_directions_find_the_axis_of_largest_spread():
    g = torch.Generator().manual_seed(0)
    latents = torch.randn(200, 1, 2, 2, generator=g) * torch.tensor([5.0, 0.1, 0.1, 0.1]).reshape(1, 1, 2, 2)
    pcs = PrincipalDirections.fit(latents, k=2)
    assert abs(float(pcs.directions[0, 0])) > 0.99 and 4 < float(pcs.stds[0]) < 6
    moved = pcs.traverse(torch.zeros(1, 2, 2), [1.0])
    assert torch.allclose(moved.flatten().abs(), (pcs.stds[0] * pcs.directions[0]).abs(), atol=1e-5)


def test_reconstruction_report_and_anomaly_score(tiny_model):
    image = torch.rand(3, 32, 32, generator=torch.Generator().manual_seed(0))
    r = reconstruct(tiny_model.pipe.vae, image)
    assert r.reconstruction.shape == image.shape and r.latent.shape == (4, 8, 8)
    assert r.compression == pytest.approx(32 * 32 * 3 / (4 * 8 * 8 * 2))
    assert np.isfinite(r.psnr_db)
    errors = torch.tensor([0.01, 0.02, 0.03, 0.04])
    assert anomaly_percentile(0.025, errors) == 50 and anomaly_percentile(1.0, errors) == 100
    assert [im.size for im in channel_images(r.latent)] == [(64, 64)] * 4


def test_dataset_view_map_marks_points_and_picks(tiny_model):
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    view = DatasetView(images, [f"caption <{k}>" for k in range(12)], tiny_model)
    svg, xy = view.map_svg("latents", "pca", view.subset(8), selected=[view.subset(8)[0]])
    assert svg.count('class="pt"') == 8 and len(xy) == 8
    assert "caption &lt;" in svg  # labels escaped
    assert 'r="7"' in svg  # the pick is drawn larger
    svg, _ = view.map_svg("captions", "pca", list(range(12)))
    assert svg.count("data:image/png;base64,") == 12
    assert view.embeddings.shape == (12, 384)


def test_scatter_svg_handles_identical_points():
    svg = scatter_svg(np.zeros((3, 2)), ["a", "b", "c"])
    assert svg.startswith("<svg") and svg.count("<circle") == 3


def test_points_are_coloured_by_their_image_subject():
    red_on_white = torch.ones(3, 16, 16)
    red_on_white[1:, 4:12, 4:12] = 0  # a red square: G and B off inside
    assert subject_colour(red_on_white) == "#ff0000"  # the white around it does not wash it out
    assert subject_colour(torch.full((3, 8, 8), 0.5)) == "#808080"  # no subject: the plain mean
    blue_on_black = torch.zeros(3, 16, 16)
    blue_on_black[2, 2:14, 2:14] = 1.0
    assert subject_colour(blue_on_black) == "#0000ff"
    svg = scatter_svg(np.array([[0, 0], [1, 1], [2, 0]]), ["a", "b", "c"], selected=[2],
                      colours=["#ff0000", "#0000ff", "#00ff00"])
    assert 'fill="#ff0000"' in svg and 'fill="#0000ff"' in svg
    assert 'fill="#00ff00"' not in svg and 'fill="#d62728"' in svg  # a pick is drawn in the pick colour


def test_dataset_view_encodes_once_with_progress_and_caches_on_disk(tiny_model, tmp_path):
    images = torch.rand(70, 3, 32, 32, generator=torch.Generator().manual_seed(1)) * 2 - 1
    captions = [f"caption {k}" for k in range(70)]
    view = DatasetView(images, captions, tiny_model, cache_dir=tmp_path)
    reports = []
    view.prepare(lambda done, total: reports.append((done, total)))
    assert reports == [(k, 5) for k in range(1, 6)]  # 2 latent batches of 64, 2 error batches, 1 caption batch
    assert view.latents.shape == (70, 4, 8, 8) and view.errors.shape == (70,) and len(view.embeddings) == 70
    assert len(list(tmp_path.glob("explorer-*.safetensors"))) == 1
    again = DatasetView(images, captions, tiny_model, cache_dir=tmp_path)
    again.prepare(lambda done, total: reports.append("encoded again"))
    assert "encoded again" not in reports and torch.equal(again.latents, view.latents)
    assert torch.equal(again.errors, view.errors) and torch.equal(again.embeddings, view.embeddings)
    changed = DatasetView(images.flip(0), captions, tiny_model, cache_dir=tmp_path)
    changed.prepare()  # other pixels: another key, never the stale file
    assert len(list(tmp_path.glob("explorer-*.safetensors"))) == 2


def test_a_waiting_thread_sees_the_preparing_threads_progress(tiny_model):
    import threading

    images = torch.rand(130, 3, 32, 32, generator=torch.Generator().manual_seed(2)) * 2 - 1
    view = DatasetView(images, [f"c{k}" for k in range(130)], tiny_model)
    started = threading.Event()

    def slow(done, total):
        started.set()
        threading.Event().wait(0.2)

    worker = threading.Thread(target=view.prepare, args=(slow,))
    worker.start()
    started.wait(30)
    seen = []
    view.wait(lambda done, total: seen.append((done, total)), poll_s=0.05)
    worker.join()
    assert view.ready and seen and all(total == 7 for _, total in seen)
    assert seen == sorted(seen) and seen[0][0] < 7  # the waiter reported the other thread's advance


@pytest.fixture
def map_file(tiny_model, tmp_path):
    """A map file of 12 random images, written by a view that is then thrown away (no image folder anywhere)."""
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(3)) * 2 - 1
    view = DatasetView(images, [f"caption {k}" for k in range(12)], tiny_model)
    view.prepare()
    view.save_map(tmp_path / "map.safetensors", thumbnail=16)
    return tmp_path / "map.safetensors", view


def test_a_view_from_a_map_file_draws_picks_and_decodes_without_the_images(tiny_model, map_file):
    path, original = map_file
    view = DatasetView.from_map(path, tiny_model)
    assert view.ready and len(view) == 12 and view.captions == original.captions
    assert view.images.shape == (12, 3, 16, 16)  # thumbnails only: the latents are the pictures at full size
    assert torch.allclose(view.latents, original.latents, atol=1e-2)  # stored as fp16
    assert torch.allclose(view.embeddings, original.embeddings, atol=1e-2)
    assert torch.equal(view.errors, original.errors)
    indices = view.subset(8)
    svg, xy = view.map_svg("latents", "pca", indices, selected=[indices[0]])
    assert svg.count('class="pt"') == 8 and svg.count("data:image/png;base64,") == 8 and 'r="7"' in svg
    assert view.map_svg("captions", "tsne", indices)[0].count('class="pt"') == 8
    assert view.decoded(indices[0]).shape == (3, 32, 32)
    assert torch.allclose(view.decoded(indices[0]), original.decoded(indices[0]), atol=0.05)
    assert view.image_at("pca", indices, 100.0, 200.0).shape == (3, 32, 32)
    assert view.slerp_images(indices[0], indices[1], 3).shape == (3, 3, 32, 32)


def test_the_map_in_a_model_folder_stands_in_for_absent_training_images(tiny_model, map_file, tmp_path):
    moved = copy.copy(tiny_model)  # the tiny model, as if loaded from a folder of its own
    moved.folder = tmp_path / "model"
    moved.folder.mkdir()
    (moved.folder / "ldm_config.yaml").write_text("data:\n  source: files\n  path: no/such/folder\n")
    assert DatasetView.for_model(moved) is None
    (moved.folder / MAP_FILE).parent.mkdir()
    map_file[0].rename(moved.folder / MAP_FILE)
    view = DatasetView.for_model(moved)
    assert len(view) == 12 and view.ready


def test_a_map_file_of_another_model_or_no_map_at_all_is_refused_in_one_line(tiny_model, tiny_student, map_file,
                                                                             tmp_path):
    with pytest.raises(LdmError, match="made with another VAE or text encoder") as caught:
        DatasetView.from_map(map_file[0], tiny_student)
    assert "\n" not in str(caught.value)
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(LdmError, match="is not an explorer map file"):
        DatasetView.from_map(tmp_path / "junk.safetensors", tiny_model)


def test_umap_is_offered_only_where_umap_learn_imports(monkeypatch):
    monkeypatch.setitem(sys.modules, "umap", None)  # an import of it fails, as without umap-learn
    assert available_projections() == ("pca", "tsne")
    monkeypatch.setitem(sys.modules, "umap", types.ModuleType("umap"))
    assert available_projections() == PROJECTIONS
