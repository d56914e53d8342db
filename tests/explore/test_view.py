"""DatasetView's map: points, picks and their marks."""


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
