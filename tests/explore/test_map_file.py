"""Map files: a view without the images, shipped in a model folder, refused for another model."""

import copy

import pytest
import torch

from ldm.errors import LdmError
from ldm.explore.map_file import MAP_FILE
from ldm.explore.view import DatasetView


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
