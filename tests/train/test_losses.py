"""Training objectives against hand-computed values: the denoising loss (epsilon, v, min-SNR) and the VAE loss."""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from support import TINY

from ldm.config import load_config
from ldm.models import build_noise_scheduler, build_vae
from ldm.train.losses import diffusion_loss, vae_loss


class _ShiftedInput(torch.nn.Module):
    """A UNet stand-in whose prediction is its noisy input plus the prompt's mean: the loss then sees x_t, t and
    the embeddings, and can be worked out by hand."""

    def forward(self, noisy, t, encoder_hidden_states):
        return SimpleNamespace(sample=noisy + encoder_hidden_states.mean())


@pytest.mark.parametrize("prediction_type, snr_gamma", [("epsilon", None), ("epsilon", 5.0), ("v_prediction", 5.0)])
def test_diffusion_loss_matches_the_formula(prediction_type, snr_gamma):
    cfg = load_config(TINY, [f"noise.prediction_type={prediction_type}"])
    scheduler = build_noise_scheduler(cfg.noise)
    n = 16  # enough images that some timesteps are early, where min-SNR clips the weight
    latents = torch.randn(n, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    embeds = torch.full((n, 5, 16), 0.25)
    loss = diffusion_loss(_ShiftedInput(), scheduler, latents, embeds, torch.Generator().manual_seed(7), snr_gamma)

    # the same draws in the same order: noise first, then one timestep per image
    g = torch.Generator().manual_seed(7)
    eps = torch.randn(latents.shape, generator=g)
    t = torch.randint(0, 1000, (n,), generator=g)
    abar = scheduler.alphas_cumprod[t].view(n, 1, 1, 1)
    x_t = abar.sqrt() * latents + (1 - abar).sqrt() * eps
    target = eps if prediction_type == "epsilon" else abar.sqrt() * eps - (1 - abar).sqrt() * latents
    per_image = ((x_t + 0.25 - target) ** 2).mean(dim=(1, 2, 3))
    if snr_gamma:
        snr = (abar / (1 - abar)).flatten()
        assert (snr > snr_gamma).any()
        # min-SNR-gamma (Hang et al. 2023): min(snr, gamma) / snr for epsilon, / (snr + 1) for v
        per_image = per_image * snr.clamp(max=snr_gamma) / (snr + 1 if prediction_type == "v_prediction" else snr)
    assert float(loss) == pytest.approx(float(per_image.mean()), rel=1e-5)


def test_the_generator_alone_fixes_noise_and_timesteps():
    scheduler = build_noise_scheduler(load_config(TINY).noise)
    latents, embeds = torch.randn(4, 4, 8, 8), torch.zeros(4, 5, 16)

    def loss(seed, gamma):
        return float(diffusion_loss(_ShiftedInput(), scheduler, latents, embeds, torch.Generator().manual_seed(seed),
                                    gamma))

    assert loss(3, None) == loss(3, None) and loss(3, None) != loss(4, None)


@pytest.fixture(scope="module")
def tiny_vae():
    torch.manual_seed(0)
    cfg = load_config(TINY)
    return build_vae(cfg.vae, cfg.data.resolution).eval()


def test_vae_loss_is_reconstruction_plus_weighted_kl(tiny_vae):
    pixels = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    zero = torch.zeros(2, 4, 4, 4)
    with torch.no_grad():
        posterior = tiny_vae.encode(pixels).latent_dist
        decoded = tiny_vae.decode(posterior.mean).sample  # eps = 0 decodes the posterior mean
        loss, rec, kl = vae_loss(tiny_vae, pixels, zero, 0.5, "l1")
        assert float(rec) == pytest.approx(float(F.l1_loss(decoded, pixels)), rel=1e-5)
        assert float(kl) == pytest.approx(float(posterior.kl().mean()) / (3 * 16 * 16), rel=1e-5)
        assert float(loss) == pytest.approx(float(rec) + 0.5 * float(kl), rel=1e-6)
        _, rec_mse, _ = vae_loss(tiny_vae, pixels, zero, 0.5, "mse")
        assert float(rec_mse) == pytest.approx(float(F.mse_loss(decoded, pixels)), rel=1e-5)
        eps = torch.randn(2, 4, 4, 4, generator=torch.Generator().manual_seed(3))
        assert float(vae_loss(tiny_vae, pixels, eps, 0.5, "l1")[1]) != float(rec)  # eps samples the posterior
