"""DatasetView's map: points, picks and their marks."""


import numpy as np
import torch

from ldm.explore.view import DatasetView


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


def test_images_placed_on_the_latent_map_land_where_the_same_images_of_the_dataset_are(tiny_model):
    images = torch.rand(12, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    view = DatasetView(images, [f"caption {k}" for k in range(12)], tiny_model)
    indices = view.subset(12)
    marks = view.marks((images[:3] + 1) / 2, ["a.png", "b.png", "c.png"], "your images", "pca", indices)
    np.testing.assert_allclose(marks.xy, view.projection("latents", "pca", indices).xy[:3], atol=1e-4)
    assert marks.labels == ["a.png", "b.png", "c.png"] and len(marks.thumbnails) == len(marks.colours) == 3
    svg = view.marked_map_svg("pca", indices, [marks])
    assert svg.count('class="pt mark diamond"') == 3 and svg.count("data-i=") == 12 and "your images" in svg
    # an image of another size is brought to the model's first (a user's photo is rarely 32 pixels)
    large = torch.nn.functional.interpolate((images[:2] + 1) / 2, size=(96, 96), mode="nearest")
    assert view.marks(large, ["x", "y"], "yours", "pca", indices).xy.shape == (2, 2)
