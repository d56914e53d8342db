"""The tiny autoencoder that copies a VAE: its shape follows the VAE's, it learns the VAE's decode (and its
posterior means), the folder it writes loads in plain diffusers, and a resumed run ends where an unbroken one does."""

import shutil
from dataclasses import replace

import pytest
import torch
from diffusers import AutoencoderTiny
from safetensors.torch import load_file
from support import TINY, make_random_pipeline, same_state

from ldm.config import load_config
from ldm.data.dataset import build_dataset
from ldm.errors import LdmError
from ldm.folders import TINY_VAE
from ldm.models import build_vae, load_vae
from ldm.train.tiny_vae import build_tiny_vae, decode_psnr, teacher_targets, train_tiny_vae


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A random tiny pipeline folder: its VAE is the one copied."""
    return make_random_pipeline(tmp_path_factory.mktemp("tiny_vae_teacher") / "teacher")


def test_the_tiny_vae_reads_and_writes_the_vaes_latents_at_its_scale():
    cfg = load_config(TINY)
    vae = build_vae(cfg.vae, cfg.data.resolution)
    tiny = build_tiny_vae(vae, cfg.train_tiny_vae)
    pixels = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.mean
        assert tiny.encode(pixels).latents.shape == latents.shape
        assert tiny.decode(latents).sample.shape == pixels.shape
    assert tiny.config.scaling_factor == 1.0  # it takes the latents as the UNet sees them (scaled), as TAESD does
    assert sum(p.numel() for p in tiny.decoder.parameters()) < sum(p.numel() for p in vae.decoder.parameters())


@pytest.mark.parametrize("key, blocks", [("decoder_blocks", [3, 3]), ("decoder_blocks", [3, -1, 0]),
                                         ("encoder_blocks", [0, 1, 1])])
def test_block_counts_that_do_not_fit_the_vae_are_refused_in_one_line(key, blocks):
    cfg = load_config(TINY)
    with pytest.raises(LdmError, match=f"train_tiny_vae.{key}"):
        build_tiny_vae(build_vae(cfg.vae, cfg.data.resolution), replace(cfg.train_tiny_vae, **{key: blocks}))


def test_the_targets_are_the_vaes_decode_of_its_scaled_posterior_draws():
    cfg = load_config(TINY)
    torch.manual_seed(0)
    vae = build_vae(cfg.vae, cfg.data.resolution).eval()
    vae.register_to_config(scaling_factor=0.5)
    pixels, eps, noise = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(2, 4, 8, 8), 0.1 * torch.randn(2, 4, 8, 8)
    latents, decoded, means = teacher_targets(vae, pixels, eps, noise)
    with torch.no_grad():
        dist = vae.encode(pixels).latent_dist
        assert torch.allclose(latents, (dist.mean + dist.std * eps) * 0.5 + noise)
        assert torch.allclose(decoded, vae.decode(latents / 0.5).sample, atol=1e-6)
        assert torch.allclose(means, dist.mean * 0.5)


def test_it_learns_to_copy_the_vae_and_plain_diffusers_loads_it(teacher, tmp_path):
    cfg = load_config(TINY, ["train_tiny_vae.max_steps=60", "train_tiny_vae.eval_every=1000"])
    out = train_tiny_vae(cfg, tmp_path / "run", teacher / "vae")
    assert out == tmp_path / "run" / TINY_VAE
    vae = load_vae(teacher / "vae").eval()
    trained = AutoencoderTiny.from_pretrained(out, use_safetensors=True, local_files_only=True).eval()
    torch.manual_seed(cfg.train_tiny_vae.seed)
    untrained = build_tiny_vae(vae, cfg.train_tiny_vae).eval()
    heldout = build_dataset(cfg.data, "heldout")
    pixels = torch.stack([heldout.load(i) for i in range(len(heldout))])
    before, after = decode_psnr(vae, untrained, pixels)[0].mean(), decode_psnr(vae, trained, pixels)[0].mean()
    assert after > before + 3, (before, after)
    with torch.no_grad():  # the encoder learned the posterior means too
        means = vae.encode(pixels).latent_dist.mean * vae.config.scaling_factor
        err = [float((m.encode(pixels).latents - means).pow(2).mean()) for m in (untrained, trained)]
    assert err[1] < 0.5 * err[0], err


def test_a_run_resumed_from_its_middle_checkpoint_ends_where_the_unbroken_one_did(teacher, tmp_path):
    cfg = load_config(TINY, ["train_tiny_vae.max_steps=4", "train_tiny_vae.checkpoint_every=2",
                             "train_tiny_vae.eval_every=1000", "train_tiny_vae.batch_size=4"])
    whole = train_tiny_vae(cfg, tmp_path / "whole", teacher / "vae")
    middle = tmp_path / "whole" / "checkpoints" / "tiny_vae" / "checkpoint-2"
    shutil.copytree(middle, tmp_path / "broken" / "checkpoints" / "tiny_vae" / "checkpoint-2")
    resumed = train_tiny_vae(cfg, tmp_path / "broken", teacher / "vae", resume="latest")
    a, b = (AutoencoderTiny.from_pretrained(p).state_dict() for p in (whole, resumed))
    assert same_state(a, b)
    at_two = load_file(str(middle / "model.safetensors"))  # the objective's weights: "tiny." + the model's
    assert {"tiny." + k for k in a} == set(at_two)
    assert all(not torch.equal(a[k], at_two["tiny." + k]) for k in a if k.endswith("weight"))  # steps 3, 4 ran
