"""A dataset through the model: principal directions, reconstruction and anomaly scores."""


import numpy as np
import pytest
import torch

from ldm.explore.drawing import channel_images
from ldm.explore.latents import PrincipalDirections, anomaly_percentile, ordinal, reconstruct


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


def test_percentiles_read_as_english():
    assert [ordinal(n) for n in (0, 1, 2, 3, 4, 11, 12, 13, 21, 22, 61, 100, 101, 111)] == [
        "0th", "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "61st", "100th", "101st", "111th"]
