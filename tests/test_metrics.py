"""Image-quality measures on known values: PSNR, the down/up-sampling baseline, features, twins, spread."""

import torch

from ldm.metrics import (
    TWIN_DISTANCE,
    downsample_psnr,
    image_features,
    mean_pairwise_distance,
    nearest,
    psnr,
    twin_groups,
)


def test_psnr_known_values():
    a = torch.zeros(2, 3, 8, 8)
    assert torch.allclose(psnr(a, a), torch.tensor([100.0, 100.0]))  # identical: the 1e-10 floor
    b = a.clone()
    b[1] += 0.2  # 0.1 in [0, 1] units everywhere: MSE 0.01 -> 20 dB
    assert torch.allclose(psnr(a, b), torch.tensor([100.0, 20.0]), atol=1e-4)
    assert torch.allclose(psnr(a, a + 5), psnr(a, a + 1))  # values outside [-1, 1] are clamped first


def test_downsampling_baseline_is_lossless_on_flat_images():
    assert downsample_psnr(torch.zeros(2, 3, 16, 16), 4) > 90


def test_features_are_16x16_rgb():
    assert image_features(torch.rand(2, 3, 64, 64)).shape == (2, 768)


def test_nearest_orders_references_by_distance():
    references = torch.tensor([[0.0, 0.0], [3.0, 0.0], [1.0, 0.0], [0.0, -2.5]])
    queries = torch.tensor([[0.9, 0.0], [0.0, -3.0]])
    assert nearest(queries, references, 3).tolist() == [[2, 0, 1], [3, 0, 2]]


def test_twin_distance_keeps_distinct_images_apart():
    features = torch.zeros(3, 768)
    features[1, 0] = TWIN_DISTANCE / 2
    features[2, 0] = 0.18  # the nearest distinct pair in the emoji dataset (two skin tones)
    assert twin_groups(features, block=2).tolist() == [0, 0, 2]


def test_mean_pairwise_distance_is_zero_for_copies():
    x = torch.rand(1, 768).expand(4, -1)
    assert mean_pairwise_distance(x) == 0
    assert mean_pairwise_distance(torch.rand(4, 768)) > 1
